package cli

import (
	"archive/zip"
	"cmp"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
)

func newVulnDBCmd(o *rootOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vulndb",
		Short: "The offline vulnerability database (OSV advisories) scans match against",
	}
	cmd.AddCommand(newVulnDBImportCmd(o), newVulnDBShowCmd(o), newVulnDBUpdateCmd(o))
	return cmd
}

var vulndbImportView = tableView{
	{"FILES", "files", nil},
	{"ADDED", "added", nil},
	{"UPDATED", "updated", nil},
	{"UNCHANGED", "unchanged", nil},
	{"IGNORED", "ignored", func(v any) string {
		if l, ok := v.([]any); ok {
			return fmt.Sprint(len(l))
		}
		return "0"
	}},
	{"RESCANNED", "rescan.images", nil},
	{"NEWLY AFFECTED", "rescan.affected", func(v any) string {
		if l, ok := v.([]any); ok {
			return fmt.Sprint(len(l))
		}
		return "0"
	}},
}

func newVulnDBImportCmd(o *rootOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "import PATH",
		Short: "Import OSV advisories from a directory or a zip (admin only)",
		Long: `Import the OSV advisories (*.json, at any depth) of a directory or a zip
file — the layout of OSV's per-ecosystem all.zip exports and of the Go
vulnerability database (golang.org/x/vulndb's data/osv). Advisories are
merged by ID: a newer "modified" replaces the stored one. An import is
atomic: a file that does not parse or validate is named with the field, and
the database is left unchanged. Advisories of ecosystems the version
ordering does not know are listed as ignored.

After the import, every stored scan is matched again (no image is read):
the answer lists the images newly affected.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, size, err := openZip(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			abs, _ := filepath.Abs(args[0])
			return o.call(func(c *client.Client) (any, error) {
				return c.ImportVulnDB(cmd.Context(), f, size, abs)
			}, vulndbImportView)
		},
	}
}

// openZip opens PATH as a zip: the file itself, or a temporary zip of the
// directory's *.json files (symlinks are not followed).
func openZip(path string) (io.ReadCloser, int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, 0, usageError("%s: %v", path, err)
	}
	if !fi.IsDir() {
		f, err := os.Open(path)
		if err != nil {
			return nil, 0, err
		}
		return f, fi.Size(), nil
	}
	tmp, err := os.CreateTemp("", "gantry-vulndb-*.zip")
	if err != nil {
		return nil, 0, err
	}
	os.Remove(tmp.Name()) // gone when closed
	zw := zip.NewWriter(tmp)
	n := 0
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(d.Name(), ".json") {
			return nil
		}
		rel, err := filepath.Rel(path, p)
		if err != nil {
			return err
		}
		w, err := zw.Create(filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		n++
		_, err = io.Copy(w, src)
		return err
	})
	if err == nil {
		err = zw.Close()
	}
	if err == nil && n == 0 {
		err = usageError("%s holds no *.json file", path)
	}
	if err != nil {
		tmp.Close()
		return nil, 0, err
	}
	size, err := tmp.Seek(0, io.SeekEnd)
	if err == nil {
		_, err = tmp.Seek(0, io.SeekStart)
	}
	if err != nil {
		tmp.Close()
		return nil, 0, err
	}
	return tmp, size, nil
}

var vulndbView = tableView{
	{"ECOSYSTEM", "ecosystem", nil},
	{"ADVISORIES", "advisories", nil},
}

func newVulnDBShowCmd(o *rootOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Show the number of advisories per ecosystem and the last update",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			db, err := c.VulnDB(cmd.Context())
			if err != nil {
				return hint(err)
			}
			if o.output != "table" {
				return o.print(db, nil)
			}
			if err := render(o.out, "table", o.query, db.Ecosystems, vulndbView); err != nil {
				return err
			}
			last := "never"
			if !db.LastUpdate.IsZero() {
				last = db.LastUpdate.Format("2006-01-02 15:04:05 MST")
			}
			_, err = fmt.Fprintf(o.out, "%d advisories; last update %s from %s\n", db.Advisories, last, cmp.Or(db.Source, "-"))
			return err
		},
	}
}

func newVulnDBUpdateCmd(o *rootOpts) *cobra.Command {
	var source string
	c := &cobra.Command{
		Use:   "update",
		Short: "Import the database distributed as an OCI artifact (admin only)",
		Long: `Import the vulnerability database distributed as an OCI artifact: a
manifest whose layer is a zip of OSV files (application/zip), as pushed by
oras push REGISTRY/REPO:TAG all.zip:application/zip. The server pulls it
through its own registry client — from one of its own registries, or from
another with the credential your Docker configuration holds for it — so an
air-gapped site imports it like any other public content.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := api.VulnDBUpdateRequest{Source: source, Credential: dockerCredential(source)}
			return o.call(func(c *client.Client) (any, error) { return c.UpdateVulnDB(cmd.Context(), req) }, vulndbImportView)
		},
	}
	c.Flags().StringVar(&source, "source", "", "REGISTRY/REPO:TAG of the database artifact")
	_ = c.MarkFlagRequired("source")
	return c
}
