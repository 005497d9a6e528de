package cli

import (
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
)

var containerView = tableView{
	{"NAME", "name", nil},
	{"STATE", "state", nil},
	{"IMAGE", "image", nil},
	{"URL", "ipAddress.url", nil},
	{"RESTARTS", "restartCount", nil},
	{"UPDATED", "updatedAt", shortTime},
}

const containerLong = `Container instances are long-running containers started from a registry
image, like Azure Container Instances.

Addresses: every declared port (--ports, default 80) is served at a stable
front address, 127.0.0.1:<front port>, chosen when the instance is first
created and kept across replacements and server restarts:

    gantry container show -n NAME --query ipAddress.url -o tsv

The container itself runs with the host network and must listen on the port
gantry gives it in $PORT (and $PORT_<declared port> for each declared port);
an app that listens on ${PORT:-80} works unchanged.

Creating an existing instance again with another image, command, environment
or ports replaces its container without downtime: the new container must
answer on its ports before traffic moves to it, otherwise it is removed and
the old one keeps serving.`

func newContainerCmd(o *rootOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "container",
		Short: "Manage container instances (long-running deployments)",
		Long:  containerLong,
	}
	cmd.AddCommand(newContainerCreateCmd(o), newContainerShowCmd(o), newContainerListCmd(o),
		newContainerLogsCmd(o), newContainerDeleteCmd(o))
	return cmd
}

func newContainerCreateCmd(o *rootOpts) *cobra.Command {
	var (
		name, image, commandLine         string
		ports, env, secureEnv            []string
		server, username, password       string
		cpu, memory                      float64
		restartPolicy, ipAddress, rgroup string
		startupTimeout                   int
	)
	c := &cobra.Command{
		Use:   "create",
		Short: "Create a container instance, or replace its container without downtime",
		Long: containerLong + `

-g/--resource-group and --ip-address Public are accepted for compatibility
with az container create and ignored: the front address is always on
127.0.0.1.`,
		Example: `  gantry container create -n hello --image 127.0.0.1:5003/hello-world:cb1 \
      --registry-username u --registry-password p --ports 80
  gantry container create -n hello --image 127.0.0.1:5003/hello-world:cb2 -e COLOR=green
  gantry container create -n web --image 127.0.0.1:5003/web:1 --ports 8080:80   # front port 8080`,
		Args: keyValueArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := api.CreateContainerRequest{
				Image:                 image,
				RegistryLoginServer:   server,
				RegistryUsername:      username,
				RegistryPassword:      password,
				CPU:                   cpu,
				MemoryInGB:            memory,
				RestartPolicy:         restartPolicy,
				StartupTimeoutSeconds: startupTimeout,
			}
			if ipAddress != "" && !strings.EqualFold(ipAddress, "public") {
				return fmt.Errorf("--ip-address %q: only Public is supported (the front address on 127.0.0.1)", ipAddress)
			}
			var err error
			if req.Ports, err = parsePorts(ports); err != nil {
				return err
			}
			if req.Environment, err = envVars("--environment-variables", env); err != nil {
				return err
			}
			if req.SecureEnvironment, err = envVars("--secure-environment-variables", secureEnv); err != nil {
				return err
			}
			if commandLine != "" {
				if req.Command, err = splitCommandLine(commandLine); err != nil {
					return fmt.Errorf("--command-line: %w", err)
				}
			}
			return o.call(func(c *client.Client) (any, error) {
				return c.CreateContainer(cmd.Context(), name, req)
			}, containerView)
		},
	}
	f := c.Flags()
	f.StringVarP(&name, "name", "n", "", "container instance name")
	f.StringVar(&image, "image", "", "image to run, e.g. 127.0.0.1:5003/hello-world:cb1")
	f.StringSliceVar(&ports, "ports", nil, "ports the container serves: PORT or FRONTPORT:PORT (default 80)")
	f.StringArrayVarP(&env, "environment-variables", "e", nil, "environment variable KEY=VALUE (repeatable)")
	f.StringArrayVar(&secureEnv, "secure-environment-variables", nil, "environment variable KEY=VALUE whose value is stored encrypted and never shown (repeatable)")
	f.StringVar(&commandLine, "command-line", "", "command to run instead of the image's entrypoint and command, e.g. \"sh -c 'exec httpd -f -p $PORT'\"")
	f.StringVar(&server, "registry-login-server", "", "registry the credentials are for (default: the image's)")
	f.StringVar(&username, "registry-username", "", "user name to pull the image with")
	f.StringVar(&password, "registry-password", "", "password to pull the image with (stored encrypted, never shown)")
	f.Float64Var(&cpu, "cpu", 0, "CPU cores (default: unlimited)")
	f.Float64Var(&memory, "memory", 0, "memory in GB (default: unlimited)")
	f.StringVar(&restartPolicy, "restart-policy", "", "Always (default), OnFailure or Never")
	f.IntVar(&startupTimeout, "startup-timeout", 0, "seconds the new container may take to answer on its ports (default 60)")
	f.StringVar(&ipAddress, "ip-address", "", "Public (accepted for compatibility; the front address is on 127.0.0.1)")
	f.StringVarP(&rgroup, "resource-group", "g", "", "accepted for compatibility with az; ignored")
	_ = c.MarkFlagRequired("name")
	_ = c.MarkFlagRequired("image")
	return c
}

func newContainerShowCmd(o *rootOpts) *cobra.Command {
	var name, rgroup string
	c := &cobra.Command{
		Use:   "show",
		Short: "Show a container instance: state, address, environment",
		Example: `  gantry container show -n hello
  gantry container show -n hello --query ipAddress.url -o tsv
  gantry container show -n hello --query "ipAddress.ports[0].frontPort"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) {
				return c.GetContainer(cmd.Context(), name)
			}, containerView)
		},
	}
	c.Flags().StringVarP(&name, "name", "n", "", "container instance name")
	c.Flags().StringVarP(&rgroup, "resource-group", "g", "", "accepted for compatibility with az; ignored")
	_ = c.MarkFlagRequired("name")
	return c
}

func newContainerListCmd(o *rootOpts) *cobra.Command {
	var rgroup string
	c := &cobra.Command{
		Use:   "list",
		Short: "List container instances",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) {
				list, err := c.ListContainers(cmd.Context())
				if list == nil {
					list = []api.Container{}
				}
				return list, err
			}, containerView)
		},
	}
	c.Flags().StringVarP(&rgroup, "resource-group", "g", "", "accepted for compatibility with az; ignored")
	return c
}

func newContainerLogsCmd(o *rootOpts) *cobra.Command {
	var name, rgroup string
	var opts client.ContainerLogsOptions
	c := &cobra.Command{
		Use:   "logs",
		Short: "Print the output of a container instance's current container",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := o.client()
			if err != nil {
				return err
			}
			body, err := cl.ContainerLogs(cmd.Context(), name, opts)
			if err != nil {
				return hint(err)
			}
			defer body.Close()
			_, err = io.Copy(o.out, body)
			if err != nil && cmd.Context().Err() != nil {
				return nil // interrupted while following
			}
			return err
		},
	}
	c.Flags().StringVarP(&name, "name", "n", "", "container instance name")
	c.Flags().BoolVar(&opts.Follow, "follow", false, "keep printing new output until interrupted")
	c.Flags().IntVar(&opts.Tail, "tail", 0, "only the last N lines")
	c.Flags().BoolVar(&opts.Timestamps, "timestamps", false, "prefix lines with their time")
	c.Flags().StringVarP(&rgroup, "resource-group", "g", "", "accepted for compatibility with az; ignored")
	_ = c.MarkFlagRequired("name")
	return c
}

func newContainerDeleteCmd(o *rootOpts) *cobra.Command {
	var name, rgroup string
	var yes bool
	c := &cobra.Command{
		Use:   "delete",
		Short: "Stop and delete a container instance and its front address",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) {
				return nil, c.DeleteContainer(cmd.Context(), name)
			}, nil)
		},
	}
	c.Flags().StringVarP(&name, "name", "n", "", "container instance name")
	c.Flags().BoolVarP(&yes, "yes", "y", false, "do not prompt for confirmation (gantry never prompts)")
	c.Flags().StringVarP(&rgroup, "resource-group", "g", "", "accepted for compatibility with az; ignored")
	_ = c.MarkFlagRequired("name")
	return c
}

// keyValueArgs rejects positional arguments, with a hint for az's
// space-separated form `--environment-variables A=1 B=2`.
func keyValueArgs(_ *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if strings.Contains(args[0], "=") {
		return fmt.Errorf("unexpected argument %q: give one KEY=VALUE per -e (or --secure-environment-variables) flag", args[0])
	}
	if _, err := strconv.Atoi(strings.Split(args[0], ":")[0]); err == nil {
		return fmt.Errorf("unexpected argument %q: give one port per --ports flag, e.g. --ports 80 --ports 443", args[0])
	}
	return fmt.Errorf("unexpected argument %q", args[0])
}

// parsePorts parses --ports values: PORT, FRONTPORT:PORT, each optionally
// with /tcp.
func parsePorts(vals []string) ([]api.ContainerPortRequest, error) {
	var out []api.ContainerPortRequest
	for _, v := range vals {
		spec, proto, _ := strings.Cut(v, "/")
		front, port, hasFront := strings.Cut(spec, ":")
		if !hasFront {
			port, front = front, ""
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("--ports %q: want PORT or FRONTPORT:PORT, e.g. 80 or 8080:80", v)
		}
		req := api.ContainerPortRequest{Port: p, Protocol: strings.ToUpper(proto)}
		if hasFront {
			if req.FrontPort, err = strconv.Atoi(front); err != nil {
				return nil, fmt.Errorf("--ports %q: front port %q is not a number", v, front)
			}
		}
		out = append(out, req)
	}
	return out, nil
}

// envName starts a KEY=VALUE pair.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// envVars parses KEY=VALUE flag values. A value joined from az's
// space-separated form ("A=1,B=2") is split again where a comma starts a
// new KEY=; other commas stay in the value.
func envVars(flag string, vals []string) (map[string]string, error) {
	var pairs []string
	for _, v := range vals {
		parts := strings.Split(v, ",")
		cur := parts[0]
		for _, p := range parts[1:] {
			if envName.MatchString(p) {
				pairs = append(pairs, cur)
				cur = p
			} else {
				cur += "," + p
			}
		}
		pairs = append(pairs, cur)
	}
	return keyValues(flag, pairs)
}

// splitCommandLine splits a command line into words as a POSIX shell
// would, without expansions: 'single' and "double" quotes, and backslash
// escapes outside single quotes.
func splitCommandLine(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case ch == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated single quote in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case ch == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`\n", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated double quote in %q", s)
			}
			inWord = true
		case ch == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("empty command line")
	}
	return words, nil
}
