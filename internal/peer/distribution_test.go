package peer_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/peer"
	"github.com/gantryhq/gantry/internal/testenv"
)

// TestStart runs Debian's docker-registry with and without htpasswd
// authentication, and stops it.
func TestStart(t *testing.T) {
	t.Parallel()
	bin := testenv.Tool(t, "docker-registry")
	ctx := context.Background()

	dir := t.TempDir()
	d, err := peer.Start(ctx, peer.Options{Bin: bin, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if code := status(t, d.URL()+"/v2/"); code != http.StatusOK {
		t.Errorf("GET /v2/ without authentication: %d, want 200", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "config.yml")); err != nil {
		t.Errorf("configuration not in Dir: %v", err)
	}
	d.Stop()
	d.Stop() // a second Stop is harmless
	if _, err := http.Get(d.URL() + "/v2/"); err == nil {
		t.Error("the registry still answers after Stop")
	}

	htpasswd := testenv.Tool(t, "htpasswd")
	out, err := exec.Command(htpasswd, "-Bbn", "gantry", testenv.RandomHex(8)).Output()
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	file := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(file, out, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err = peer.Start(ctx, peer.Options{Bin: bin, Dir: dir, Htpasswd: file})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	if code := status(t, d.URL()+"/v2/"); code != http.StatusUnauthorized {
		t.Errorf("GET /v2/ with htpasswd: %d, want 401", code)
	}
}

// TestStartFails names the binary that could not start, and the registry
// that exited before answering.
func TestStartFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	missing := filepath.Join(t.TempDir(), "no-such-registry")
	if _, err := peer.Start(ctx, peer.Options{Bin: missing, Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("a missing binary: %v", err)
	}
	if _, err := peer.Start(ctx, peer.Options{Bin: "/bin/false", Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "did not start") {
		t.Errorf("a registry that exits at once: %v", err)
	}
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
