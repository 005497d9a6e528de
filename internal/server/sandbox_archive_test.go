package server_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
)

// archiveEntry is a member of a crafted context archive: a file (body) or a
// symlink (link).
type archiveEntry struct{ name, body, link string }

// contextArchive returns entries as a gzipped tar, the form `gantry run`
// uploads a context in.
func contextArchive(t *testing.T, entries []archiveEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(e.body)), ModTime: time.Unix(0, 0)}
		if e.link != "" {
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.link, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// finishedRun waits (up to 2 minutes) until a run is no longer queued or
// running and returns it.
func finishedRun(t *testing.T, c *client.Client, registry, id string) *api.Run {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		run, err := c.GetRun(context.Background(), registry, id)
		if err != nil {
			t.Fatal(err)
		}
		if run.Status != "Queued" && run.Status != "Running" {
			return run
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s still %s after 2 minutes", id, run.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSandboxArchiveEscape (S4): a quick run whose uploaded context holds a
// chain of symlinks climbing out of the work directory (each one harmless
// to a lexical check) and a file written through it fails, naming the
// archive entry, before any step runs; no file appears outside the work
// directory, which is left empty; the server keeps serving. A context whose
// symlinks stay inside still runs, and its steps read through them.
func TestSandboxArchiveEscape(t *testing.T) {
	srv, base := startEngineServer(t, serverOptions{})
	host := srv.createRegistry("archives", false)
	adm := srv.admin()
	ctx := context.Background()
	const proof = "ARCHIVE-ESCAPE-PROOF.txt"
	taskFile := []byte("version: v1.1.0\nsteps:\n  - id: show\n    cmd: " + base + " cat /workspace/link\n")

	// The work directory is DATA/work/archives/<run>: a is the work
	// directory, b its parent, c DATA/work, d DATA.
	escape := contextArchive(t, []archiveEntry{
		{name: "a", link: "."},
		{name: "b", link: "a/.."},
		{name: "c", link: "b/.."},
		{name: "d", link: "c/.."},
		{name: "d/" + proof, body: "written outside the work directory\n"},
		{name: "link", link: "d/" + proof},
	})
	run, err := adm.QuickRun(ctx, "archives", api.QuickRunRequest{File: "acr-task.yaml", FileContent: taskFile}, bytes.NewReader(escape))
	if err != nil {
		t.Fatal(err)
	}
	run = finishedRun(t, adm, "archives", run.RunID)
	want := `archive entry "b": symlink to "a/.." leads outside the work directory`
	if run.Status != "Failed" || !strings.Contains(run.Error, want) {
		t.Errorf("run %s: %s %q; want Failed with %q", run.RunID, run.Status, run.Error, want)
	}
	if len(run.Steps) > 0 && run.Steps[0].Status == "Succeeded" {
		t.Errorf("a step ran: %+v", run.Steps)
	}
	filepath.WalkDir(filepath.Dir(srv.cfg.Data), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == proof {
			t.Errorf("the archive wrote %s", p)
		}
		return nil
	})
	work := filepath.Join(srv.cfg.Data, "work", "archives", run.RunID)
	if left, err := os.ReadDir(work); err == nil && len(left) > 0 {
		t.Errorf("the refused archive left %d entries in %s", len(left), work)
	}

	// The server still answers, on the control API and the registry.
	if _, err := adm.Version(ctx); err != nil {
		t.Errorf("GET /v1/version: %v", err)
	}
	if r := newOCIClient(t, host, "admin", srv.adminPassword).do("GET", "/v2/", nil, nil); r.status != 200 {
		t.Errorf("GET /v2/: %s", r)
	}

	// Symlinks that stay inside are kept: the step reads through one.
	inside := contextArchive(t, []archiveEntry{
		{name: "data/" + proof, body: "read through an inside symlink\n"},
		{name: "dir", link: "data"},
		{name: "link", link: "dir/../data/./" + proof},
	})
	run, err = adm.QuickRun(ctx, "archives", api.QuickRunRequest{File: "acr-task.yaml", FileContent: taskFile}, bytes.NewReader(inside))
	if err != nil {
		t.Fatal(err)
	}
	run = finishedRun(t, adm, "archives", run.RunID)
	logs, err := adm.RunLogs(ctx, "archives", run.RunID, false)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(logs)
	logs.Close()
	if run.Status != "Succeeded" || !strings.Contains(string(out), "read through an inside symlink") {
		t.Errorf("run %s: %s %q\n%s", run.RunID, run.Status, run.Error, out)
	}
}
