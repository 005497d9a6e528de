package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/demo"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/standin"
)

func newDemoCmd(o *rootOpts) *cobra.Command {
	var data string
	var keep, overTLS bool
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run the walkthrough end to end: public base, gated import, automatic rebuilds and redeploys",
		Long: `Runs the ACR Tasks tutorial "consume and maintain public content" on this
machine with a gantry server started in-process: three registries and a
simulated Docker Hub, a key vault, tokens, three local git repositories and
the node-public, hello-world and base-import-node tasks; then the Orange,
Green and Red commits. It prints the runs and the site's color after each
stage and exits non-zero if a stage does not end as the tutorial says.

Needs a Docker Engine (DOCKER_HOST) and a static gantry binary; the README's
first command (scripts/demo.sh) provides both.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := slog.New(slog.DiscardHandler)
			if o.verbose {
				logger = slog.New(slog.NewTextHandler(o.errOut, &slog.HandlerOptions{Level: slog.LevelDebug}))
			}
			bin, _ := os.Executable()
			return demo.Run(cmd.Context(), demo.Options{
				Data:         data,
				Engine:       docker.EndpointFromEnv(os.Getenv),
				GantryBinary: bin,
				Keep:         keep,
				TLS:          overTLS,
				Out:          o.out,
				Logger:       logger,
				PrintRuns: func(w io.Writer, runs []api.Run) error {
					return render(w, "table", "", runs, runView)
				},
			})
		},
	}
	c.Flags().StringVar(&data, "data", "", "directory for the server data and git repositories (default: a temporary one)")
	c.Flags().BoolVar(&keep, "keep", false, "leave everything running for exploration until Ctrl-C")
	c.Flags().BoolVar(&overTLS, "tls", false, "over TLS with a local CA and registry hostnames <name>.gantry.test (they must resolve to 127.0.0.1; the engine is made to trust the CA, as root)")
	c.AddCommand(newStandinCmd(o))
	return c
}

// newStandinCmd pushes the node:15-alpine stand-in, for following the
// walkthrough by hand (the README's "simulated Docker Hub" step).
func newStandinCmd(o *rootOpts) *cobra.Command {
	var image, username, password string
	c := &cobra.Command{
		Use:   "push-standin",
		Short: "Build the local node:15-alpine stand-in and push it, e.g. to a registry playing Docker Hub",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := docker.New(docker.EndpointFromEnv(os.Getenv))
			if err != nil {
				return fmt.Errorf("container engine (DOCKER_HOST): %w", err)
			}
			defer d.Close()
			src, err := standin.NodeImage(cmd.Context(), d, "")
			if err != nil {
				return err
			}
			host, _, _ := strings.Cut(image, "/")
			auth := &docker.AuthConfig{
				Username:      firstNonEmpty(username, os.Getenv("GANTRY_USERNAME")),
				Password:      firstNonEmpty(password, os.Getenv("GANTRY_PASSWORD")),
				ServerAddress: host,
			}
			dgst, err := standin.Push(cmd.Context(), d, src, image, auth)
			if err != nil {
				return err
			}
			return o.print(map[string]string{"image": image, "digest": dgst}, nil)
		},
	}
	c.Flags().StringVar(&image, "image", "", "where to push it, e.g. 127.0.0.1:5000/node:15-alpine")
	c.Flags().StringVarP(&username, "username", "u", "", "registry user (default $GANTRY_USERNAME)")
	c.Flags().StringVarP(&password, "password", "p", "", "registry password (default $GANTRY_PASSWORD)")
	_ = c.MarkFlagRequired("image")
	return c
}
