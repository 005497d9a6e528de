package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

var fsckView = tableView{
	{header: "CHECKED", expr: "checked"},
	{header: "BYTES", expr: "bytes"},
	{header: "DAMAGED", expr: "length(damaged)"},
	{header: "SECONDS", expr: "durationSeconds"},
}

// newFsckCmd is `gantry fsck [-r REG]`.
func newFsckCmd(o *rootOpts) *cobra.Command {
	var registry string
	c := &cobra.Command{
		Use:   "fsck",
		Short: "Verify every blob against its digest; quarantine and report damaged ones",
		Long: `Read every blob of a registry (-r), or of the whole server, and every manifest,
and verify each against its digest. A damaged blob file (missing, of the wrong
size, or with other content) is moved to DATA/quarantine, so it is never
served again, and reported with the manifests that reference it; pushing the
blob again stores a good copy. Exits 1 when anything is damaged. Needs the
right to manage every registry (the admin).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			rep, err := c.Fsck(cmd.Context(), registry)
			if err != nil {
				return hint(err)
			}
			if err := o.print(rep, fsckView); err != nil {
				return err
			}
			if len(rep.Damaged) > 0 {
				for _, d := range rep.Damaged {
					fmt.Fprintf(o.errOut, "damaged: %s: %s; manifests %v\n", d.Digest, d.Problem, d.Manifests)
				}
				return exitCode{code: 1}
			}
			return nil
		},
	}
	c.Flags().StringVarP(&registry, "registry", "r", "", "the registry to check (default: every blob of the server)")
	return c
}
