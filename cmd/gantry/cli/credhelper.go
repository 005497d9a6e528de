package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"

	"github.com/docker/docker-credential-helpers/credentials"
	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/buildinfo"
)

// CredentialHelperName is the name the gantry binary answers the Docker
// credential-helper protocol under (a symlink on PATH); the Docker config's
// credHelpers name it "gantry".
const CredentialHelperName = "docker-credential-gantry"

// tokenUsername is the user name of an identity token in the
// credential-helper protocol: Docker, go-containerregistry, oras and
// containers/image then present the secret as a refresh token
// (grant_type=refresh_token) instead of a password.
const tokenUsername = "<token>"

// ExecuteCredentialHelper runs the gantry binary called as
// docker-credential-gantry: args[0] is the action (get, store, erase, list,
// version). It answers as credentials.Serve does (errors on stdout, where
// Docker reads them, and exit code 1), with a diagnostic that holds no
// secret on stderr, and returns the process exit code.
func ExecuteCredentialHelper(ctx context.Context, args []string, in io.Reader, out, errOut io.Writer) int {
	return runCredentialHelper(ctx, &rootOpts{in: in, out: out, errOut: errOut}, args)
}

func runCredentialHelper(ctx context.Context, o *rootOpts, args []string) int {
	credentials.Name = CredentialHelperName
	credentials.Package = "github.com/gantryhq/gantry"
	credentials.Version = buildinfo.Version()
	usage := "Usage: " + CredentialHelperName + " <store|get|erase|list|version>"
	if len(args) != 1 {
		fmt.Fprintln(o.out, usage)
		return 1
	}
	switch args[0] {
	case "--version", "-v":
		_ = credentials.PrintVersion(o.out)
		return 0
	case "--help", "-h":
		fmt.Fprintln(o.out, usage)
		return 0
	}
	if err := credentials.HandleCommand(credentialHelper{ctx: ctx, o: o}, args[0], o.in, o.out); err != nil {
		fmt.Fprintln(o.out, err)
		return 1
	}
	return 0
}

// newCredentialHelperCmd is `gantry credential-helper ACTION`, the same
// as the binary called as docker-credential-gantry.
func newCredentialHelperCmd(o *rootOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "credential-helper get|store|erase|list|version",
		Short: "Answer Docker's credential-helper protocol (the binary called as " + CredentialHelperName + ")",
		Long: `The Docker credential helper for gantry's registries, as the gantry binary
answers it when called as ` + CredentialHelperName + ` (gantry registry login
configures Docker to use it). get reads a server URL on stdin and answers a
refresh token of that registry, 3 hours long, issued for the gantry login
(gantry login, or GANTRY_USERNAME/GANTRY_PASSWORD or GANTRY_TOKEN); a server
that is not one of the gantry server's registries, or one the login may not
pull from, is answered "credentials not found" so Docker goes on without.
Nothing is ever stored: store and erase do nothing, list names the
registries' login servers.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := runCredentialHelper(cmd.Context(), o, args); code != 0 {
				return exitCode{code: code}
			}
			return nil
		},
	}
}

// credentialHelper implements the credential-helper protocol over the
// control API. The protocol's interface takes no context: one helper serves
// one invocation, with that invocation's context.
type credentialHelper struct {
	ctx context.Context
	o   *rootOpts
}

var _ credentials.Helper = credentialHelper{}

// Get answers a fresh refresh token of the registry serverURL names.
func (h credentialHelper) Get(serverURL string) (string, string, error) {
	host := registryHost(serverURL)
	if host == "" {
		fmt.Fprintf(h.o.errOut, "%s: %q is not a registry login server\n", CredentialHelperName, serverURL)
		return "", "", credentials.NewErrCredentialsNotFound()
	}
	cr, err := h.o.credential()
	if err != nil {
		return "", "", err
	}
	if cr.token == "" && cr.username == "" && cr.password == "" {
		return "", "", fmt.Errorf("%s: not logged in to the gantry server %s: run gantry login, or set GANTRY_USERNAME and GANTRY_PASSWORD", CredentialHelperName, cr.server)
	}
	c, err := h.o.client()
	if err != nil {
		return "", "", err
	}
	tok, err := c.RegistryToken(h.ctx, host)
	switch {
	case errors.Is(err, api.ErrNotFound):
		fmt.Fprintf(h.o.errOut, "%s: %s is not a registry of the gantry server %s\n", CredentialHelperName, host, cr.server)
		return "", "", credentials.NewErrCredentialsNotFound()
	case errors.Is(err, api.ErrDenied):
		fmt.Fprintf(h.o.errOut, "%s: %s: %v\n", CredentialHelperName, host, err)
		return "", "", credentials.NewErrCredentialsNotFound()
	case err != nil:
		return "", "", fmt.Errorf("%s: %s: %w", CredentialHelperName, host, hint(err))
	}
	return tokenUsername, tok.RefreshToken, nil
}

// Add stores nothing: the helper hands out short-lived tokens for the
// gantry login, never passwords (docker login's password is not kept).
func (credentialHelper) Add(*credentials.Credentials) error { return nil }

// Delete has nothing to delete.
func (credentialHelper) Delete(string) error { return nil }

// List maps the login servers of the gantry server's registries to
// tokenUsername; a login that may not list registries gets none.
func (h credentialHelper) List() (map[string]string, error) {
	out := map[string]string{}
	c, err := h.o.client()
	if err != nil {
		return nil, err
	}
	regs, err := c.ListRegistries(h.ctx)
	if errors.Is(err, api.ErrDenied) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", CredentialHelperName, hint(err))
	}
	for _, r := range regs {
		if r.LoginServer != "" {
			out[r.LoginServer] = tokenUsername
		}
	}
	return out, nil
}

// registryHost returns the login server a server URL from a Docker client
// names: host:port, lower-cased, from a bare "host:port" or a URL with a
// scheme and perhaps a path ("https://host:port/v2/"); the scheme's default
// port is dropped ("https://host:443" is "host"). It returns "" for what
// cannot be a gantry login server: no host, or a bare word without a port
// or a dot (a registry name, which the control API would take as one).
func registryHost(serverURL string) string {
	s := strings.TrimSpace(serverURL)
	scheme := ""
	if i := strings.Index(s, "://"); i >= 0 {
		scheme = strings.ToLower(s[:i])
	} else {
		s = "//" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil {
		return ""
	}
	host := strings.ToLower(u.Host)
	if p := u.Port(); scheme == "https" && p == "443" || scheme == "http" && p == "80" {
		host = u.Hostname()
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
	}
	if !strings.ContainsAny(host, ".:") {
		return ""
	}
	if h, _, err := net.SplitHostPort(host); err == nil && h == "" {
		return ""
	}
	return host
}
