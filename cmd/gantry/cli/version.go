package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/buildinfo"
)

func newVersionCmd(o *rootOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the client and server versions",
		Long: `Print the version of this gantry binary (client), the commit it was built
from and its build date, and, when the server answers, the server's version.
gantry --version prints the client's as one line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.printVersion(cmd.Context())
		},
	}
}

// printVersion prints the client's version, commit and build date and,
// when it answers, the server's version.
func (o *rootOpts) printVersion(ctx context.Context) error {
	info := buildinfo.Get()
	out := map[string]string{"client": info.Version, "commit": info.Commit, "date": info.Date}
	if c, err := o.client(); err == nil {
		if v, err := c.Version(ctx); err == nil {
			out["server"] = v.Version
		}
	}
	return o.print(out, tableView{
		{header: "Client", expr: "client"},
		{header: "Commit", expr: "commit"},
		{header: "Date", expr: "date"},
		{header: "Server", expr: "server"},
	})
}

// setVersionFlag gives root a --version flag that prints the client's
// build as one line: "gantry 0.14.0 (commit 1a2b3c4d5e6f, built ...)".
func setVersionFlag(root *cobra.Command) {
	root.Version = buildinfo.Get().String()
	root.SetVersionTemplate("{{.Version}}\n")
}
