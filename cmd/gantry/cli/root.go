// Package cli is the gantry command line: one cobra command per verb, each a
// thin layer of flags → one client (or server) call → printed result.
package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
)

// rootOpts holds the global flags and the I/O of one invocation.
type rootOpts struct {
	server  string
	output  string
	query   string
	verbose bool
	in      io.Reader
	out     io.Writer
	errOut  io.Writer
}

// Execute runs the gantry command line with args and returns the process
// exit code.
func Execute(ctx context.Context, args []string, in io.Reader, out, errOut io.Writer) int {
	o := &rootOpts{in: in, out: out, errOut: errOut}
	cmd := newRoot(o)
	cmd.SetArgs(joinNargs(args))
	cmd.SetIn(in)
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	groupsRefuseUnknown(cmd)
	return exitStatus(executeCommandLine(ctx, cmd), errOut)
}

// executeCommandLine runs root. Errors before the first PersistentPreRunE
// are about the command line (an unknown command or flag, a missing
// argument or required flag): usage errors, exit code 2 as az's; a failed
// operation exits 1. The command's path prefixes a message that does not
// already name it.
func executeCommandLine(ctx context.Context, root *cobra.Command) error {
	parsed := false
	root.PersistentPreRunE = func(c *cobra.Command, _ []string) error {
		if err := c.ValidateRequiredFlags(); err != nil {
			return err
		}
		parsed = true
		return nil
	}
	c, err := root.ExecuteContextC(ctx)
	switch {
	case err == nil || parsed:
		return err
	case strings.Contains(err.Error(), c.CommandPath()):
		return usageError("%v", err)
	default:
		return usageError("%s: %v", c.CommandPath(), err)
	}
}

// groupsRefuseUnknown makes every command group (gantry task, gantry
// registry, ...) refuse an unknown subcommand as a usage error; cobra would
// print the group's help and succeed. Without arguments a group prints its
// help.
func groupsRefuseUnknown(c *cobra.Command) {
	for _, sub := range c.Commands() {
		groupsRefuseUnknown(sub)
	}
	if c.Runnable() || !c.HasSubCommands() || !c.HasParent() {
		return
	}
	c.Args = cobra.ArbitraryArgs
	c.RunE = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageError("unknown command %q for %q; see %s --help", args[0], c.CommandPath(), c.CommandPath())
		}
		return c.Help()
	}
}

// exitStatus prints err (if any) and returns the process exit code for it.
func exitStatus(err error, errOut io.Writer) int {
	if err == nil {
		return 0
	}
	var ec exitCode
	if errors.As(err, &ec) {
		if ec.msg != "" {
			fmt.Fprintln(errOut, "ERROR:", ec.msg)
		}
		return ec.code
	}
	fmt.Fprintln(errOut, "ERROR:", err)
	return 1
}

// exitCode lets a command choose the process exit code (e.g. `task run`
// exits non-zero when the run fails) without printing a second error.
type exitCode struct {
	code int
	msg  string
}

func (e exitCode) Error() string { return fmt.Sprintf("exit code %d", e.code) }

func newRoot(o *rootOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:           "gantry",
		Short:         "A self-hosted container registry with a task engine",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.PersistentFlags().StringVar(&o.server, "server", "", "control API address (default $GANTRY_SERVER, the login, or "+client.DefaultServer+")")
	o.addOutputFlags(cmd)
	setVersionFlag(cmd)
	cmd.AddCommand(
		newServerCmd(o),
		newLoginCmd(o),
		newLogoutCmd(o),
		newVersionCmd(o),
		newCheckHealthCmd(o),
		newFsckCmd(o),
		newRegistryCmd(o),
		newRepositoryCmd(o, gantryRegistry),
		newGCCmd(o),
		newScopeMapCmd(o),
		newTokenCmd(o),
		withResourceGroup(newRoleCmd(o)),
		withResourceGroup(newKeyVaultCmd(o)),
		newTaskCmd(o),
		newQuickRunCmd(o),
		newBuildCmd(o),
		newContainerCmd(o),
		newDemoCmd(o),
		newImportCmd(o, gantryRegistry),
		newCacheCmd(o),
		newCredentialSetCmd(o),
		newAzCmd(o),
		newACRCmd(o),
		newGroupCmd(o),
		newCredentialHelperCmd(o),
		newScanCmd(o),
		newVulnDBCmd(o),
	)
	return cmd
}

// registryFlag is the flag that names a command's registry: gantry's
// -r/--registry, or az acr's -n/--name.
type registryFlag struct{ long, short string }

var (
	gantryRegistry = registryFlag{"registry", "r"}
	azRegistry     = registryFlag{"name", "n"}
)

// add adds the (required) registry flag to c.
func (f registryFlag) add(c *cobra.Command, p *string) {
	c.Flags().StringVarP(p, f.long, f.short, "", "registry name")
	_ = c.MarkFlagRequired(f.long)
}

// addOutputFlags adds the global output flags gantry shares with az.
func (o *rootOpts) addOutputFlags(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringVarP(&o.output, "output", "o", "json", "output format: json, jsonc, table, tsv, yaml, none")
	// az also accepts --out.
	pf.StringVar(&o.output, "out", "json", "")
	_ = pf.MarkHidden("out")
	pf.StringVar(&o.query, "query", "", "JMESPath query applied to the result")
	pf.BoolVar(&o.verbose, "verbose", false, "log requests and details to stderr")
}

// client builds an API client from, in order of precedence: --server and
// GANTRY_SERVER; GANTRY_TOKEN (a run credential), GANTRY_USERNAME and
// GANTRY_PASSWORD; the saved login.
func (o *rootOpts) client() (*client.Client, error) {
	cr, err := o.credential()
	if err != nil {
		return nil, err
	}
	var opts []client.Option
	switch {
	case cr.token != "":
		opts = append(opts, client.WithBearer(cr.token))
	case cr.username != "" || cr.password != "":
		opts = append(opts, client.WithBasicAuth(cr.username, cr.password))
	}
	return newClient(cr.server, opts...)
}

// newClient is client.New trusting GANTRY_CA_FILE and GANTRY_CA_CERT.
func newClient(server string, opts ...client.Option) (*client.Client, error) {
	hc, err := trustingClient()
	if err != nil {
		return nil, err
	}
	if hc != nil {
		opts = append(opts, client.WithHTTPClient(hc))
	}
	return client.New(server, opts...)
}

// credential is the server and the credential the CLI uses: a run
// credential (token) or a user name and password; neither when none is
// configured.
type credential struct {
	server             string
	token              string
	username, password string
}

// credential resolves the server and credential in the order client
// documents.
func (o *rootOpts) credential() (credential, error) {
	saved, err := loadLogin()
	if err != nil {
		return credential{}, err
	}
	cr := credential{server: firstNonEmpty(o.server, os.Getenv("GANTRY_SERVER"), saved.Server, client.DefaultServer)}
	switch {
	case os.Getenv("GANTRY_TOKEN") != "":
		cr.token = os.Getenv("GANTRY_TOKEN")
	case os.Getenv("GANTRY_USERNAME") != "" || os.Getenv("GANTRY_PASSWORD") != "":
		cr.username, cr.password = os.Getenv("GANTRY_USERNAME"), os.Getenv("GANTRY_PASSWORD")
	case saved.Username != "" && sameServer(saved.Server, cr.server):
		cr.username, cr.password = saved.Username, saved.Password
	}
	return cr, nil
}

// call makes one client call and prints its result; a nil result prints
// nothing (deletes).
func (o *rootOpts) call(fn func(c *client.Client) (any, error), view tableView) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	v, err := fn(c)
	if err != nil {
		return hint(err)
	}
	if v == nil {
		return nil
	}
	return o.print(v, view)
}

// print renders a command's result with the global -o and --query flags.
func (o *rootOpts) print(v any, view tableView) error {
	return render(o.out, o.output, o.query, v, view)
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func sameServer(a, b string) bool {
	norm := func(s string) string {
		s = strings.TrimRight(s, "/")
		if !strings.Contains(s, "://") {
			s = "http://" + s
		}
		return s
	}
	return norm(a) == norm(b)
}

// notFoundHint adds a hint to authentication errors, the most common
// first-use problem.
func hint(err error) error {
	if errors.Is(err, api.ErrUnauthenticated) {
		return fmt.Errorf("%w (run `gantry login` or set GANTRY_USERNAME and GANTRY_PASSWORD)", err)
	}
	return err
}

// trustingClient is an HTTP client that trusts, besides the system's CAs,
// the certificates in GANTRY_CA_FILE (a PEM file, e.g. from gantry server
// ca) and GANTRY_CA_CERT (PEM text: task steps get the server's local CA
// this way); nil when neither is set.
func trustingClient() (*http.Client, error) {
	file, text := os.Getenv("GANTRY_CA_FILE"), os.Getenv("GANTRY_CA_CERT")
	if file == "" && text == "" {
		return nil, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("GANTRY_CA_FILE: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("GANTRY_CA_FILE: %s holds no PEM certificate", file)
		}
	}
	if text != "" && !pool.AppendCertsFromPEM([]byte(text)) {
		return nil, errors.New("GANTRY_CA_CERT holds no PEM certificate")
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: t}, nil
}
