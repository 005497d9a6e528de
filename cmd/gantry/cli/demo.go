package cli

import (
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/demo"
)

func newDemoCmd(o *rootOpts) *cobra.Command {
	var data string
	var keep bool
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
				EngineHost:   os.Getenv("DOCKER_HOST"),
				GantryBinary: bin,
				Keep:         keep,
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
	return c
}
