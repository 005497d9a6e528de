package cli

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/api"
)

func newGCCmd(o *rootOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Garbage collection of blobs and upload sessions",
	}
	cmd.AddCommand(newGCRunCmd(o))
	return cmd
}

var gcView = tableView{
	{"REGISTRY", "registry", nil},
	{"DRY RUN", "dryRun", nil},
	{"GRACE", "grace", nil},
	{"BLOBS", "blobs", nil},
	{"BYTES", "bytes", nil},
	{"UPLOADS", "uploads", nil},
	{"SECONDS", "seconds", nil},
}

func newGCRunCmd(o *rootOpts) *cobra.Command {
	var req api.GCRequest
	var grace time.Duration
	c := &cobra.Command{
		Use:   "run",
		Short: "Run a garbage collection pass now and show what it removed",
		Long: `Run a garbage collection pass now (the server also runs one every
storage.gcInterval, --gc-interval of gantry server) and show the blobs and
bytes it freed, the upload sessions it expired and how long it took. A pass
waits for one already running to end. Admin only.

A pass removes the blobs that no manifest of any registry references and
that nobody uploaded, linked or checked within the grace window, the upload
sessions idle for longer than storage.uploadTTL, and files nothing owns.
It never removes manifests or tags: delete them first (gantry repository
delete) to free what only they referenced.

-r REG limits the pass to one registry: the blobs no manifest of any
registry references that only REG's repositories link (blobs are stored
once for every registry; one another registry also links is left to a full
pass), and REG's expired upload sessions.

--grace 0 also collects blobs uploaded a moment ago: use it only when
nothing is being pushed (a push whose blobs go before its manifest arrives
is refused and must be retried). --dry-run reports without removing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("grace") {
				if grace < 0 {
					return usageError("--grace %s: must not be negative", grace)
				}
				req.Grace = grace.String()
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			res, err := c.RunGC(cmd.Context(), req)
			if err != nil {
				return hint(err)
			}
			return o.print(res, gcView)
		},
	}
	c.Flags().StringVarP(&req.Registry, "registry", "r", "", "collect only what this registry alone holds")
	c.Flags().BoolVar(&req.DryRun, "dry-run", false, "report what the pass would remove, remove nothing")
	c.Flags().DurationVar(&grace, "grace", 0, "keep blobs uploaded, linked or checked within this window (default the server's storage.gcGrace, 1h)")
	return c
}
