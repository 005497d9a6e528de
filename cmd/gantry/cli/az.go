package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
	"github.com/gantryhq/gantry/internal/vault"
)

const azLong = `gantry's az is the part of the Azure CLI that ACR task files use, so their
cmd: steps run unchanged. The az image alias is the gantry binary installed as
az; a step gets GANTRY_SERVER and GANTRY_TOKEN (the run's identity).

Supported:
  az login --identity                   check the run's identity (GANTRY_TOKEN)
  az login -u USER -p PASSWORD          log in and save the login, as gantry login does
  az container create|show|list|logs|delete -n NAME ...
                                        container instances, with az's flags
  az acr import -n REGISTRY --source SRC [--image R:T]... [-u U -p P] [--force]
  az acr login -n REGISTRY [--expose-token]
                                        save the credential in ~/.docker/config.json,
                                        or print it as an access token
  az acr repository list -n REGISTRY
  az acr repository show-tags -n REGISTRY --repository R [--orderby O] [--top N]
  az keyvault secret show --vault-name V -n NAME | --id URI
  az version, az --version

Every command takes -o json|jsonc|table|tsv|yaml|none (default json) and
--query JMESPath. -g/--resource-group is accepted and ignored. Any other
command, and any unknown flag, fails with exit code 2.`

// ExecuteAz runs gantry's az command line (the binary called as az) with
// args and returns the process exit code: 0, 1 when a command fails, 2 for
// a command or flag gantry's az does not support.
func ExecuteAz(ctx context.Context, args []string, in io.Reader, out, errOut io.Writer) int {
	return exitStatus(runAz(ctx, &rootOpts{in: in, out: out, errOut: errOut}, args), errOut)
}

// newAzCmd is `gantry az ...`, the same as the az alias.
func newAzCmd(o *rootOpts) *cobra.Command {
	return &cobra.Command{
		Use:                "az",
		Short:              "Run gantry's az: the Azure CLI commands task files use",
		Long:               azLong,
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAz(cmd.Context(), o, args)
		},
	}
}

// runAz runs one az command line. Its errors are exitCodes whose messages
// hold no secret given on the command line or in the environment.
func runAz(ctx context.Context, parent *rootOpts, args []string) error {
	o := &rootOpts{server: parent.server, in: parent.in, out: parent.out, errOut: parent.errOut}
	args = joinNargs(args)
	err := executeAz(ctx, o, args)
	var ec exitCode
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ec):
		ec.msg = maskSecrets(ec.msg, args)
		return ec
	default:
		return exitCode{code: 1, msg: maskSecrets(err.Error(), args)}
	}
}

func executeAz(ctx context.Context, o *rootOpts, args []string) error {
	root := newAzRoot(o)
	root.InitDefaultHelpCmd() // `az help ...`, listed in the help
	if err := unsupported(root, args); err != nil {
		return err
	}
	root.SetArgs(args)
	root.SetIn(o.in)
	root.SetOut(o.out)
	root.SetErr(o.errOut)
	return executeCommandLine(ctx, root)
}

// usageError is a command-line error: exit code 2, as az's.
func usageError(format string, args ...any) error {
	return exitCode{code: 2, msg: fmt.Sprintf(format, args...)}
}

func newAzRoot(o *rootOpts) *cobra.Command {
	var version bool
	root := &cobra.Command{
		Use:               "az",
		Short:             "gantry's az: the Azure CLI commands ACR task files use",
		Long:              azLong,
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if version {
				return o.printVersion(cmd.Context())
			}
			return cmd.Help()
		},
	}
	o.addOutputFlags(root)
	root.PersistentFlags().Bool("only-show-errors", false, "accepted for compatibility with az")
	root.Flags().BoolVar(&version, "version", false, "print the versions of gantry and its server")

	imp := newImportCmd(o, azRegistry)
	imp.Example = `  az acr import -n contoso --source 127.0.0.1:5000/library/node:15-alpine --image node:15-alpine
  az acr import -n contosobaseartifacts --source gantry://publicregistry/node:15-alpine --force`
	ignoreResourceGroup(imp)
	repo := &cobra.Command{Use: "repository", Short: "List repositories and tags"}
	repo.AddCommand(newRepositoryListCmd(o, azRegistry), newRepositoryShowTagsCmd(o, azRegistry))
	acr := &cobra.Command{Use: "acr", Short: "Registries: import, login, repositories"}
	acr.AddCommand(imp, newAzACRLoginCmd(o), repo)

	secret := &cobra.Command{Use: "secret", Short: "Read key vault secrets"}
	secret.AddCommand(newAzSecretShowCmd(o))
	kv := &cobra.Command{Use: "keyvault", Short: "Key vaults"}
	kv.AddCommand(secret)

	root.AddCommand(newAzLoginCmd(o), newVersionCmd(o), newContainerCmd(o), acr, kv)
	return root
}

func ignoreResourceGroup(c *cobra.Command) {
	c.Flags().StringP("resource-group", "g", "", "accepted for compatibility with az; ignored")
}

// unsupported returns a usage error when args name a command gantry's az
// does not have: the deepest command they reach is a group and more words
// follow it ("az group create", "az acr build").
func unsupported(root *cobra.Command, args []string) error {
	c, rest, err := root.Find(args)
	if err == nil && !c.HasSubCommands() {
		return nil
	}
	words := commandWords(rest)
	if len(words) == 0 {
		return nil // a group alone or --help: cobra prints the help
	}
	for _, s := range c.Commands() {
		if s.Name() == words[0] {
			return nil // reached only past a misplaced flag: cobra says what is wrong
		}
	}
	given := strings.Join(append([]string{c.CommandPath()}, words...), " ")
	return usageError("'%s' is not supported by gantry's az; supported: %s", given, supportedCommands(root))
}

// commandWords returns the words at the start of args that name a command,
// skipping the global flags before them: "group create" in
// "-o json group create --name x".
func commandWords(args []string) []string {
	var words []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			if len(words) > 0 {
				break
			}
			switch a {
			case "-o", "--output", "--out", "--query":
				i++ // and its value
			}
			continue
		}
		words = append(words, a)
	}
	return words
}

// supportedCommands lists the commands of the az tree, siblings joined:
// "az login|version, az acr import|login, ...".
func supportedCommands(root *cobra.Command) string {
	var out []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		var leaves []string
		var groups []*cobra.Command
		for _, s := range c.Commands() {
			switch {
			case !s.IsAvailableCommand():
			case s.HasSubCommands():
				groups = append(groups, s)
			default:
				leaves = append(leaves, s.Name())
			}
		}
		if len(leaves) > 0 {
			out = append(out, c.CommandPath()+" "+strings.Join(leaves, "|"))
		}
		for _, g := range groups {
			walk(g)
		}
	}
	walk(root)
	return strings.Join(out, ", ")
}

// azSecretFlags take secrets: their values are masked in error messages.
var azSecretFlags = map[string]bool{
	"--registry-password": true, "--password": true, "-p": true, "--secure-environment-variables": true,
}

// maskSecrets replaces in msg the values given to azSecretFlags in args
// (and the values of their KEY=VALUE pairs), and the credentials in the
// environment, with "***".
func maskSecrets(msg string, args []string) string {
	secrets := []string{os.Getenv("GANTRY_TOKEN"), os.Getenv("GANTRY_PASSWORD")}
	for i, a := range args {
		name, val, inline := strings.Cut(a, "=")
		if strings.HasPrefix(a, "-p") && !strings.HasPrefix(a, "-p=") && len(a) > 2 {
			name, val, inline = "-p", a[2:], true // -pVALUE
		}
		if !azSecretFlags[name] {
			continue
		}
		if !inline {
			if i+1 >= len(args) {
				continue
			}
			val = args[i+1]
		}
		secrets = append(secrets, val)
		for _, kv := range strings.Split(val, ",") {
			if _, v, ok := strings.Cut(kv, "="); ok {
				secrets = append(secrets, v)
			}
		}
	}
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "***")
		}
	}
	return msg
}

// azAccount is an entry of what az login prints: the "subscription" is the
// gantry server, the tenant its URL.
type azAccount struct {
	EnvironmentName  string   `json:"environmentName"`
	HomeTenantID     string   `json:"homeTenantId"`
	ID               string   `json:"id"`
	IsDefault        bool     `json:"isDefault"`
	ManagedByTenants []string `json:"managedByTenants"`
	Name             string   `json:"name"`
	State            string   `json:"state"`
	TenantID         string   `json:"tenantId"`
	User             azUser   `json:"user"`
}

type azUser struct {
	AssignedIdentityInfo string `json:"assignedIdentityInfo,omitempty"`
	Name                 string `json:"name"`
	Type                 string `json:"type"`
}

func newAzLoginCmd(o *rootOpts) *cobra.Command {
	var identity bool
	var username, password string
	c := &cobra.Command{
		Use:   "login",
		Short: "Check the run's identity (--identity), or log in with -u and -p as gantry login does",
		Long: `With --identity (in a task step), check the run's identity in GANTRY_TOKEN as
gantry login --identity does; nothing is saved, later commands use the same
variable. With -u and -p (default $GANTRY_USERNAME, then admin, and
$GANTRY_PASSWORD), log in and save the login as gantry login does.
Interactive and service-principal logins are not supported.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var who *api.Whoami
			var err error
			user := azUser{AssignedIdentityInfo: "MSI", Name: "systemAssignedIdentity", Type: "servicePrincipal"}
			switch {
			case identity && username != "":
				return usageError("az login --identity: user-assigned identities (-u) are not supported; a run has its task's identity")
			case identity:
				who, err = o.loginIdentity(cmd.Context())
			case firstNonEmpty(password, os.Getenv("GANTRY_PASSWORD")) == "":
				return usageError("az login: give --identity (in a task step) or -u USER -p PASSWORD; interactive login is not supported")
			default:
				who, _, err = o.loginPassword(cmd.Context(), username, password)
			}
			if err != nil {
				return err
			}
			if !identity {
				user = azUser{Name: who.Name, Type: "user"}
			}
			server := o.loginServerURL()
			return o.print([]azAccount{{EnvironmentName: "gantry", HomeTenantID: server, ID: who.Principal, IsDefault: true,
				ManagedByTenants: []string{}, Name: who.Name, State: "Enabled", TenantID: server, User: user}}, nil)
		},
	}
	c.Flags().BoolVar(&identity, "identity", false, "log in with the run's identity (GANTRY_TOKEN)")
	c.Flags().StringVarP(&username, "username", "u", "", "user or token name (default $GANTRY_USERNAME, then admin)")
	c.Flags().StringVarP(&password, "password", "p", "", "password (default $GANTRY_PASSWORD)")
	return c
}

// azTokenUser is the user name az pairs with an access token (docker login
// -u 00000000-0000-0000-0000-000000000000); gantry's registries take a run
// credential as the password with any user name.
const azTokenUser = "00000000-0000-0000-0000-000000000000"

func newAzACRLoginCmd(o *rootOpts) *cobra.Command {
	var registry, username, password string
	var expose bool
	c := &cobra.Command{
		Use:   "login",
		Short: "Save a registry credential for docker, or print the run's access token",
		Long: `Save the credential in use (the run's identity in GANTRY_TOKEN, else the
gantry login or GANTRY_USERNAME/GANTRY_PASSWORD, or -u and -p) for the
registry's login server in $DOCKER_CONFIG/config.json (default
~/.docker/config.json), as docker login does, and print "Login Succeeded".
The credential is not tried against the registry.

With --expose-token, print {"accessToken", "loginServer"} instead: the access
token is the run credential, which every gantry registry accepts as the
password of any user name (az's 00000000-0000-0000-0000-000000000000).

-n takes the registry's name or its login server (host:port). Reading a
registry by name needs the owner role; a run without it gives the login
server, e.g. -n {{.Run.Registry}} in a task file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (username == "") != (password == "") {
				return usageError("az acr login: give both --username and --password, or neither")
			}
			if expose && username != "" {
				return usageError("az acr login: --expose-token prints the run's token; it takes no --username or --password")
			}
			cr, err := o.credential()
			if err != nil {
				return err
			}
			server, err := o.loginServer(cmd.Context(), registry)
			if err != nil {
				return err
			}
			if expose {
				if cr.token == "" {
					return errors.New("--expose-token: no run identity (GANTRY_TOKEN is set in task steps); outside a run, az acr login without --expose-token saves your login for docker")
				}
				fmt.Fprintf(o.errOut, "WARNING: You can perform manual login using the provided access token below, for example: 'docker login loginServer -u %s -p accessToken'\n", azTokenUser)
				return o.print(map[string]string{"accessToken": cr.token, "loginServer": server}, nil)
			}
			switch {
			case username != "":
			case cr.token != "":
				username, password = azTokenUser, cr.token
			case cr.username != "" || cr.password != "":
				username, password = cr.username, cr.password
			default:
				return errors.New("not logged in: run az login, or set GANTRY_TOKEN, or GANTRY_USERNAME and GANTRY_PASSWORD")
			}
			if err := saveDockerAuth(server, username, password); err != nil {
				return fmt.Errorf("saving the docker login: %w", err)
			}
			fmt.Fprintln(o.out, "Login Succeeded")
			return nil
		},
	}
	azRegistry.add(c, &registry)
	c.Flags().BoolVar(&expose, "expose-token", false, "print the access token instead of saving it for docker")
	c.Flags().StringVarP(&username, "username", "u", "", "user name to save instead of the current credential")
	c.Flags().StringVarP(&password, "password", "p", "", "password to save with --username")
	ignoreResourceGroup(c)
	return c
}

// loginServer returns the login server of registry: registry itself when it
// is one (registry names have no dots or colons), else the registry's.
func (o *rootOpts) loginServer(ctx context.Context, registry string) (string, error) {
	if strings.ContainsAny(registry, ".:") {
		return registry, nil
	}
	c, err := o.client()
	if err != nil {
		return "", err
	}
	reg, err := c.GetRegistry(ctx, registry)
	if errors.Is(err, api.ErrDenied) {
		return "", fmt.Errorf("%w (give the login server instead, e.g. -n {{.Run.Registry}} in a task file)", err)
	}
	if err != nil {
		return "", hint(err)
	}
	return reg.LoginServer, nil
}

// azSecret is a secret as az keyvault secret show prints it.
type azSecret struct {
	Attributes  azSecretAttributes `json:"attributes"`
	ContentType *string            `json:"contentType"`
	ID          string             `json:"id"`
	Kid         *string            `json:"kid"`
	Managed     *bool              `json:"managed"`
	Name        string             `json:"name"`
	Tags        map[string]string  `json:"tags"`
	Value       string             `json:"value"`
}

type azSecretAttributes struct {
	Created       time.Time  `json:"created"`
	Enabled       bool       `json:"enabled"`
	Expires       *time.Time `json:"expires"`
	NotBefore     *time.Time `json:"notBefore"`
	RecoveryLevel string     `json:"recoveryLevel"`
	Updated       time.Time  `json:"updated"`
}

func newAzSecretShowCmd(o *rootOpts) *cobra.Command {
	var vaultName, name, id string
	c := &cobra.Command{
		Use:   "show",
		Short: "Show a secret with its value, in az's shape",
		Example: `  az keyvault secret show --vault-name contoso-kv -n registry-user --query value -o tsv
  az keyvault secret show --id https://contoso-kv.vault.azure.net/secrets/registry-user`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var version string
			switch {
			case id != "" && (vaultName != "" || name != ""):
				return usageError("az keyvault secret show: give --id, or --vault-name and --name, not both")
			case id != "":
				u, err := vault.ParseURI(id)
				if err != nil {
					return usageError("--id: %v", err)
				}
				vaultName, name, version = u.Vault, u.Name, u.Version
			case vaultName == "" || name == "":
				return usageError("az keyvault secret show: give --id, or --vault-name and --name")
			}
			return o.call(func(c *client.Client) (any, error) {
				s, err := c.GetSecret(cmd.Context(), vaultName, name)
				if err != nil {
					return nil, err
				}
				if version != "" && version != s.Version {
					return nil, fmt.Errorf("secret %s version %s: only the current version (%s) can be shown", name, version, s.Version)
				}
				return azSecret{
					Attributes: azSecretAttributes{Created: s.CreatedAt, Enabled: true, RecoveryLevel: "Purgeable", Updated: s.UpdatedAt},
					ID:         "https://" + s.Vault + ".vault.azure.net/secrets/" + s.Name + "/" + s.Version,
					Name:       s.Name,
					Value:      s.Value,
				}, nil
			}, nil)
		},
	}
	c.Flags().StringVar(&vaultName, "vault-name", "", "vault name")
	c.Flags().StringVarP(&name, "name", "n", "", "secret name")
	c.Flags().StringVar(&id, "id", "", "secret URI: https://<vault>.vault.azure.net/secrets/<name>[/<version>] or vault://<vault>/secrets/<name>")
	return c
}
