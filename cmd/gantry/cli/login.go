package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
)

// savedLogin is what `gantry login` keeps, in a 0600 file.
type savedLogin struct {
	Server   string `json:"server"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// loginPath is $GANTRY_CONFIG_DIR/login.json, else the user config
// directory's gantry/login.json.
func loginPath() (string, error) {
	return userFile("GANTRY_CONFIG_DIR", "the config directory", os.UserConfigDir, "gantry", "login.json")
}

func loadLogin() (savedLogin, error) {
	var s savedLogin
	p, err := loginPath()
	if err != nil {
		return s, nil // no config directory: no saved login
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("reading %s: %w", p, err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("reading %s: %w", p, err)
	}
	return s, nil
}

func saveLogin(s savedLogin) (string, error) {
	p, err := loginPath()
	if err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", err
	}
	return p, writePrivate(p, b)
}

// writePrivate replaces the file p with b, readable by its owner only
// (0600), creating its directory (0700) if needed.
func writePrivate(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), filepath.Base(p)+".*.tmp") // 0600
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a failure
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), p)
}

func newLoginCmd(o *rootOpts) *cobra.Command {
	var username, password string
	var passwordStdin, identity bool
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Log in to a gantry server and remember the credentials",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if identity {
				who, err := o.loginIdentity(cmd.Context())
				if err != nil {
					return err
				}
				return o.print(who, nil)
			}
			if passwordStdin {
				line, err := bufio.NewReader(o.in).ReadString('\n')
				if err != nil && line == "" {
					return fmt.Errorf("reading the password from stdin: %w", err)
				}
				password = strings.TrimRight(line, "\r\n")
			}
			if firstNonEmpty(password, os.Getenv("GANTRY_PASSWORD")) == "" {
				return errors.New("no password: use --password-stdin, -p or GANTRY_PASSWORD")
			}
			who, p, err := o.loginPassword(cmd.Context(), username, password)
			if err != nil {
				return err
			}
			fmt.Fprintf(o.errOut, "Login succeeded as %s; credentials saved in %s\n", who.Name, p)
			return nil
		},
	}
	cmd.Flags().StringVarP(&username, "username", "u", "", "user or token name (default admin)")
	cmd.Flags().StringVarP(&password, "password", "p", "", "password (prefer --password-stdin)")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from stdin")
	cmd.Flags().BoolVar(&identity, "identity", false, "inside a task step: check the run's identity (GANTRY_TOKEN), as az login --identity does")
	return cmd
}

// loginServerURL is the server a login is for: --server, GANTRY_SERVER or
// the default (never an earlier login's).
func (o *rootOpts) loginServerURL() string {
	return firstNonEmpty(o.server, os.Getenv("GANTRY_SERVER"), client.DefaultServer)
}

// loginPassword checks a user name (default $GANTRY_USERNAME, then admin)
// and password (default $GANTRY_PASSWORD) against the server and saves them
// as the login. It returns the caller and the file the login is saved in.
func (o *rootOpts) loginPassword(ctx context.Context, username, password string) (*api.Whoami, string, error) {
	server := o.loginServerURL()
	username = firstNonEmpty(username, os.Getenv("GANTRY_USERNAME"), "admin")
	password = firstNonEmpty(password, os.Getenv("GANTRY_PASSWORD"))
	c, err := newClient(server, client.WithBasicAuth(username, password))
	if err != nil {
		return nil, "", err
	}
	who, err := c.Whoami(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("logging in to %s: %w", server, err)
	}
	p, err := saveLogin(savedLogin{Server: c.Server(), Username: username, Password: password})
	if err != nil {
		return nil, "", fmt.Errorf("saving the login: %w", err)
	}
	return who, p, nil
}

// loginIdentity checks the run credential a task step gets in GANTRY_TOKEN
// and returns the caller; nothing is saved: every later command in the step
// uses the same variable.
func (o *rootOpts) loginIdentity(ctx context.Context) (*api.Whoami, error) {
	token := os.Getenv("GANTRY_TOKEN")
	if token == "" {
		return nil, errors.New("--identity: no GANTRY_TOKEN; it is set in task steps that run the gantry image")
	}
	c, err := newClient(o.loginServerURL(), client.WithBearer(token))
	if err != nil {
		return nil, err
	}
	who, err := c.Whoami(ctx)
	if err != nil {
		return nil, fmt.Errorf("logging in with the run identity: %w", err)
	}
	return who, nil
}

func newLogoutCmd(o *rootOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Forget the saved login",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			p, err := loginPath()
			if err != nil {
				return err
			}
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			fmt.Fprintln(o.errOut, "Logged out")
			return nil
		},
	}
}
