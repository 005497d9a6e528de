package registry_test

import (
	"bytes"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/registry"
	"github.com/gantryhq/gantry/internal/testenv"
)

// TestDiskFull pushes a blob larger than the free space of the data
// directory (a 4 MiB tmpfs): 507 with an OCI error body, no blob stored;
// once the filesystem grows, the same push succeeds without a restart.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", data).CombinedOutput(); err != nil {
		testenv.Require(t, "mounting a small tmpfs (needs root): %v %s", err, out)
		return
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", data).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", data, err, out)
		}
	})
	st := testenv.Store(t, testenv.DB(t, dir), data)
	testenv.CreateRegistries(t, st, "test")
	var log testenv.Buffer
	mux := http.NewServeMux()
	mux.Handle("/v2/", registry.New("test", st, registry.WithAuthorizer(auth.AllowAll{}), registry.WithLogger(slog.New(slog.NewTextHandler(&log, nil)))))
	e := &env{st: st, srv: newServer(t, mux), root: data, name: "test"}

	blob := bytes.Repeat([]byte("full disk "), 600_000) // 6 MB
	d := digest.FromBytes(blob)
	push := func() response {
		loc := e.do(t, "POST", "/v2/app/blobs/uploads/", nil).Header.Get("Location")
		return e.do(t, "PUT", loc+"?digest="+d.String(), blob)
	}
	r := push()
	e.expect(t, r, http.StatusInsufficientStorage, "UNKNOWN")
	if !strings.Contains(string(r.body), "Insufficient Storage") {
		t.Errorf("body %s", r.body)
	}
	// No blob: the bytes that did arrive stay only in the upload session
	// (resumable, removed when it expires).
	var left []string
	_ = filepath.WalkDir(filepath.Join(data, "blobs"), func(p string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	if len(left) != 0 {
		t.Errorf("blob files after a refused push: %v", left)
	}
	e.expect(t, e.do(t, "HEAD", "/v2/app/blobs/"+d.String(), nil), http.StatusNotFound, "")
	if !strings.Contains(log.String(), "no space left on device") {
		t.Errorf("the disk-full error is not logged:\n%s", log.String())
	}

	if out, err := exec.Command("mount", "-o", "remount,size=32m", data).CombinedOutput(); err != nil {
		t.Fatalf("growing the tmpfs: %v %s", err, out)
	}
	e.expect(t, push(), http.StatusCreated, "")
	e.expect(t, e.do(t, "HEAD", "/v2/app/blobs/"+d.String(), nil), http.StatusOK, "")
}
