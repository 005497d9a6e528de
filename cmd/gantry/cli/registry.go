package cli

import (
	"errors"
	"fmt"
	"math"
	"os/exec"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/api"
)

var registryView = tableView{
	{"NAME", "name", nil},
	{"LOGIN SERVER", "loginServer", nil},
	{"ANONYMOUS PULL", "anonymousPullEnabled", nil},
	{"RUNNING", "running", nil},
	{"CREATION DATE", "creationDate", nil},
	{"QUOTA", "quotaBytes", func(v any) string {
		if n := toInt64(v); n > 0 {
			return humanBytes(n)
		}
		return ""
	}},
}

// gib is the unit of --quota-gb: sizes are binary gigabytes, as az acr
// reports them.
const gib = 1 << 30

// quotaBytes converts a --quota-gb value to bytes.
func quotaBytes(gb float64) (int64, error) {
	if gb < 0 || math.IsNaN(gb) || gb*gib > math.MaxInt64/2 {
		return 0, usageError("--quota-gb %v: must be 0 (no quota) or a positive number of GiB", gb)
	}
	return int64(gb * gib), nil
}

func newRegistryCmd(o *rootOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "registry", Short: "Manage registries (each is its own login server)"}
	var name, listen string
	var anon bool
	var quotaGB float64
	var scanOnPush bool
	var quarantine string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a registry and start serving it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			quota, err := quotaBytes(quotaGB)
			if err != nil {
				return err
			}
			r, err := c.CreateRegistry(cmd.Context(), api.CreateRegistryRequest{Name: name, Listen: listen, AnonymousPull: anon,
				QuotaBytes: quota})
			if err != nil {
				return hint(err)
			}
			return o.print(r, registryView)
		},
	}
	create.Flags().StringVarP(&name, "name", "n", "", "registry name")
	create.Flags().StringVar(&listen, "listen", "", "host:port the registry serves on, e.g. 127.0.0.1:5001 (default: a free loopback port)")
	create.Flags().BoolVar(&anon, "anonymous-pull", false, "let anyone pull without credentials")
	create.Flags().Float64Var(&quotaGB, "quota-gb", 0, "most the registry may store, in GiB (0: no quota)")
	_ = create.MarkFlagRequired("name")

	update := &cobra.Command{
		Use:   "update",
		Short: "Change a registry's anonymous pull, storage quota or scan policy (admin only)",
		Long: `Change a registry's settings; flags not given stay as they are.

--scan-on-push scans every image pushed to the registry in the background
(gantry scan show prints the report). --quarantine-severity SEV refuses the
pull of an image with a finding at or above SEV that is not allowlisted, or
that has not been scanned (yet), with DENIED and the number of findings;
task runs pull under the same policy. none lifts the quarantine.

--quota-gb N limits what the registry stores (the Size that show-usage
reports: its manifests and every blob its repositories hold, each counted
once) to N GiB; 0 removes the quota. A push that would go beyond it is
refused (DENIED) with the usage and the quota; a quota below the current
usage is accepted and refuses pushes until content is deleted and collected
(gantry gc run).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var req api.UpdateRegistryRequest
			if cmd.Flags().Changed("quota-gb") {
				q, err := quotaBytes(quotaGB)
				if err != nil {
					return err
				}
				req.QuotaBytes = &q
			}
			if cmd.Flags().Changed("anonymous-pull") {
				req.AnonymousPull = &anon
			}
			if cmd.Flags().Changed("scan-on-push") {
				req.ScanOnPush = &scanOnPush
			}
			if cmd.Flags().Changed("quarantine-severity") {
				switch quarantine {
				case "critical", "high", "medium", "low", "none":
				default:
					return usageError("--quarantine-severity %q: want critical, high, medium, low or none", quarantine)
				}
				req.QuarantineSeverity = &quarantine
			}
			if req.QuotaBytes == nil && req.AnonymousPull == nil && req.ScanOnPush == nil && req.QuarantineSeverity == nil {
				return usageError("nothing to update: give --quota-gb, --anonymous-pull, --scan-on-push or --quarantine-severity")
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			r, err := c.UpdateRegistry(cmd.Context(), name, req)
			if err != nil {
				return hint(err)
			}
			return o.print(r, registryView)
		},
	}
	update.Flags().StringVarP(&name, "name", "n", "", "registry name")
	update.Flags().BoolVar(&anon, "anonymous-pull", false, "let anyone pull without credentials (--anonymous-pull=false to stop)")
	update.Flags().Float64Var(&quotaGB, "quota-gb", 0, "most the registry may store, in GiB (0: no quota)")
	update.Flags().BoolVar(&scanOnPush, "scan-on-push", false, "scan every pushed image in the background: --scan-on-push [true], --scan-on-push false to stop")
	update.Flags().StringVar(&quarantine, "quarantine-severity", "", "refuse pulls of images with a finding at or above this severity, or not scanned: critical, high, medium, low, or none to stop")
	_ = update.MarkFlagRequired("name")

	show := &cobra.Command{
		Use:   "show",
		Short: "Show a registry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			r, err := c.GetRegistry(cmd.Context(), name)
			if err != nil {
				return hint(err)
			}
			return o.print(r, registryView)
		},
	}
	show.Flags().StringVarP(&name, "name", "n", "", "registry name")
	_ = show.MarkFlagRequired("name")

	list := &cobra.Command{
		Use:   "list",
		Short: "List registries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			rs, err := c.ListRegistries(cmd.Context())
			if err != nil {
				return hint(err)
			}
			return o.print(rs, registryView)
		},
	}

	del := &cobra.Command{
		Use:   "delete",
		Short: "Delete a registry with its repositories, tokens and tasks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			return hint(c.DeleteRegistry(cmd.Context(), name))
		},
	}
	del.Flags().StringVarP(&name, "name", "n", "", "registry name")
	_ = del.MarkFlagRequired("name")

	cmd.AddCommand(create, show, update, list, del, newRegistryLoginCmd(o), newRegistryShowUsageCmd(o))
	return cmd
}

func newRegistryLoginCmd(o *rootOpts) *cobra.Command {
	var name string
	var storePassword, expose bool
	c := &cobra.Command{
		Use:   "login",
		Short: "Let docker, crane, oras and skopeo use a registry with your gantry login (as az acr login)",
		Long: `Configure the Docker client for the registry -n (its name or login server),
as az acr login does, and print "Login Succeeded". The gantry login in use
(gantry login, or GANTRY_USERNAME/GANTRY_PASSWORD, or GANTRY_TOKEN) must be
allowed to pull from the registry.

By default the registry's login server gets the credential helper in
$DOCKER_CONFIG/config.json (default ~/.docker/config.json):
"credHelpers": {"<login server>": "gantry"}. Docker, crane, oras and skopeo
then run docker-credential-gantry, which answers each use with a fresh
refresh token of the registry, 3 hours long; no password is stored. The
helper is the gantry binary under that name; install it with

  ln -s "$(command -v gantry)" /usr/local/bin/docker-credential-gantry

With --store-password, save the login's user name and password (or the run
credential) in the config's auths instead, as docker login and az acr login
do: no helper is needed, and the password stays in the file (0600).

With --expose-token, change nothing and print {"accessToken", "loginServer"}:
the access token is the registry's refresh token, 3 hours long; it is an
identity token (oras login --identity-token, or "identitytoken" in a Docker
config), not a password.`,
		Example: `  gantry registry login -n contoso
  gantry registry login -n 127.0.0.1:5001 --store-password
  gantry registry login -n contoso --expose-token --query accessToken -o tsv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if storePassword && expose {
				return usageError("gantry registry login: give --store-password or --expose-token, not both")
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			// Issuing a token checks the login and the right to pull.
			tok, err := c.RegistryToken(cmd.Context(), name)
			if err != nil {
				return hint(err)
			}
			switch {
			case expose:
				return o.print(map[string]string{"accessToken": tok.RefreshToken, "loginServer": tok.LoginServer}, nil)
			case storePassword:
				cr, err := o.credential()
				if err != nil {
					return err
				}
				user, password := cr.username, cr.password
				if cr.token != "" {
					user, password = azTokenUser, cr.token
				}
				if err := saveDockerAuth(tok.LoginServer, user, password); err != nil {
					return fmt.Errorf("saving the docker login: %w", err)
				}
			default:
				if _, err := exec.LookPath(CredentialHelperName); err != nil {
					return errors.New(CredentialHelperName + ` is not on PATH; Docker runs it for the registry. Install it with
  ln -s "$(command -v gantry)" /usr/local/bin/` + CredentialHelperName + `
or save the password instead with --store-password`)
				}
				if err := saveDockerHelper(tok.LoginServer); err != nil {
					return fmt.Errorf("configuring the docker credential helper: %w", err)
				}
			}
			fmt.Fprintln(o.out, "Login Succeeded")
			return nil
		},
	}
	c.Flags().StringVarP(&name, "name", "n", "", "registry name or login server")
	_ = c.MarkFlagRequired("name")
	c.Flags().BoolVar(&storePassword, "store-password", false, "save the login's password in the Docker config instead of using the credential helper")
	c.Flags().BoolVar(&expose, "expose-token", false, "print a refresh token of the registry instead of configuring Docker")
	return c
}

var usageView = tableView{
	{"NAME", "name", nil},
	{"LIMIT", "limit", nil},
	{"CURRENT VALUE", "currentValue", nil},
	{"UNIT", "unit", nil},
}

var repositoryUsageView = tableView{
	{"REPOSITORY", "name", nil},
	{"SIZE", "size", nil},
	{"MANIFESTS", "manifests", nil},
}

func newRegistryShowUsageCmd(o *rootOpts) *cobra.Command {
	var name string
	var repos bool
	c := &cobra.Command{
		Use:   "show-usage",
		Short: "Show what a registry holds: size, repositories, manifests (as az acr show-usage)",
		Long: `Show the registry's usage as az acr show-usage does: Size (bytes of the
distinct manifests and blobs it stores, each counted once),
Repositories and Manifests (counts). Size counts every blob the
registry's repositories hold, including uploads no manifest references yet
(until gc collects them); its limit is the registry's quota (gantry registry
update --quota-gb), if any. With --repositories, the answer also lists each repository's size
(counted the same way: a blob shared by several repositories counts in
each) and manifest count, and the table shows that list. Needs the owner
role on the registry.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			get := c.RegistryUsage
			if repos {
				get = c.RegistryUsageByRepository
			}
			u, err := get(cmd.Context(), name)
			if err != nil {
				return hint(err)
			}
			if o.output == "table" && o.query == "" {
				if repos {
					return o.print(u.Repositories, repositoryUsageView)
				}
				return o.print(u.Value, usageView) // az's table lists the values
			}
			return o.print(u, nil)
		},
	}
	c.Flags().StringVarP(&name, "name", "n", "", "registry name")
	c.Flags().BoolVar(&repos, "repositories", false, "also show the size and manifest count of each repository (the table lists the repositories)")
	_ = c.MarkFlagRequired("name")
	return c
}
