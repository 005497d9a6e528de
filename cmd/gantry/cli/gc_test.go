package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/config"
)

// uploadBlob uploads b to repo without any manifest referencing it and
// returns its digest.
func uploadBlob(t *testing.T, registry, repo string, b []byte) string {
	t.Helper()
	s := sha256.Sum256(b)
	d := "sha256:" + hex.EncodeToString(s[:])
	req, _ := http.NewRequest(http.MethodPost, "http://"+registry+"/v2/"+repo+"/blobs/uploads/?digest="+d, bytes.NewReader(b))
	req.SetBasicAuth("admin", "cli-test-admin")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("blob upload: %s", resp.Status)
	}
	return d
}

func blobExists(t *testing.T, registry, repo, d string) bool {
	t.Helper()
	req, _ := http.NewRequest(http.MethodHead, "http://"+registry+"/v2/"+repo+"/blobs/"+d, nil)
	req.SetBasicAuth("admin", "cli-test-admin")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// TestGCRun: a dry run reports without deleting, the default grace keeps
// young blobs, --grace 0 deletes them, -r limits a pass to what one
// registry alone holds, and show-usage --repositories lists each
// repository.
func TestGCRun(t *testing.T) {
	url := startServer(t)
	useServer(t, url, "admin", "cli-test-admin")
	a, b := freeAddr(t), freeAddr(t)
	must(t, "registry", "create", "-n", "contoso", "--listen", a)
	must(t, "registry", "create", "-n", "fabrikam", "--listen", b)
	pushImage(t, a, "app", "v1", "live layer")
	orphan := uploadBlob(t, a, "app", []byte("never referenced"))
	theirs := uploadBlob(t, b, "web", []byte("fabrikam's orphan"))

	run := func(args ...string) api.GCResult {
		t.Helper()
		var res api.GCResult
		out := must(t, append([]string{"gc", "run", "-o", "json"}, args...)...)
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return res
	}
	if res := run("--dry-run", "--grace", "0"); !res.DryRun || res.Blobs != 2 || res.Grace != "0s" ||
		res.Bytes != int64(len("never referenced")+len("fabrikam's orphan")) {
		t.Fatalf("dry run: %+v", res)
	}
	if !blobExists(t, a, "app", orphan) || !blobExists(t, b, "web", theirs) {
		t.Fatal("a dry run deleted blobs")
	}
	if res := run(); res.Blobs != 0 || res.Grace != "1h0m0s" {
		t.Fatalf("the default grace window collected young blobs: %+v", res)
	}
	res := run("-r", "contoso", "--grace", "0")
	if res.Blobs != 1 || res.Digests[0] != orphan || res.Bytes != int64(len("never referenced")) || res.Registry != "contoso" {
		t.Fatalf("gc run -r contoso: %+v", res)
	}
	if blobExists(t, a, "app", orphan) || !blobExists(t, b, "web", theirs) {
		t.Fatal("gc run -r contoso: wrong blobs deleted")
	}
	out := must(t, "gc", "run", "--grace", "0", "-o", "table")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "BLOBS") || !strings.Contains(lines[0], "BYTES") || !strings.Contains(lines[0], "SECONDS") {
		t.Fatalf("gc run -o table:\n%s", out)
	}
	if blobExists(t, b, "web", theirs) {
		t.Fatal("a full pass kept fabrikam's orphan")
	}
	if !blobExists(t, a, "app", pushImageLayerDigest("live layer")) {
		t.Fatal("a referenced layer was collected")
	}
	if code, _, errOut := gantry(t, "", "gc", "run", "-r", "nosuch"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("unknown registry: exit %d, %q", code, errOut)
	}
	if code, _, errOut := gantry(t, "", "gc", "run", "--grace", "-1s"); code != 2 || !strings.Contains(errOut, "--grace") {
		t.Fatalf("negative grace: exit %d, %q", code, errOut)
	}

	// show-usage --repositories
	pushImage(t, a, "other", "v1", "other layer")
	var u api.RegistryUsage
	if err := json.Unmarshal([]byte(must(t, "registry", "show-usage", "-n", "contoso", "--repositories")), &u); err != nil {
		t.Fatal(err)
	}
	if len(u.Value) != 3 || len(u.Repositories) != 2 || u.Repositories[0].Name != "app" || u.Repositories[0].Manifests != 1 ||
		u.Repositories[0].Size <= int64(len("live layer")) || u.Repositories[1].Name != "other" {
		t.Fatalf("show-usage --repositories: %+v", u)
	}
	var plain api.RegistryUsage
	if err := json.Unmarshal([]byte(must(t, "registry", "show-usage", "-n", "contoso")), &plain); err != nil || plain.Repositories != nil {
		t.Fatalf("show-usage without --repositories: %+v %v", plain, err)
	}
	out = must(t, "registry", "show-usage", "-n", "contoso", "--repositories", "-o", "table")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 || !strings.HasPrefix(lines[0], "REPOSITORY") || !strings.HasPrefix(lines[2], "app") {
		t.Fatalf("show-usage --repositories -o table:\n%s", out)
	}
}

func pushImageLayerDigest(layer string) string {
	s := sha256.Sum256([]byte(layer))
	return "sha256:" + hex.EncodeToString(s[:])
}

// TestServerGCFlags: --gc-interval, --gc-grace and --upload-ttl win over
// the defaults; a negative interval is refused.
func TestServerGCFlags(t *testing.T) {
	cmd := newServerCmd(&rootOpts{})
	if err := cmd.ParseFlags([]string{"--data", t.TempDir(), "--gc-interval", "5m", "--gc-grace", "0", "--upload-ttl", "2h"}); err != nil {
		t.Fatal(err)
	}
	var sec config.Security
	var up config.Upstream
	var nw config.Network
	st := config.Storage{GCInterval: 5 * time.Minute, UploadTTL: 2 * time.Hour}
	cfg, err := loadServerConfig(cmd, "", t.TempDir(), "127.0.0.1:0", sec, up, nw, st, config.Log{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Storage.GCInterval != 5*time.Minute || cfg.Storage.GCGrace != 0 || cfg.Storage.UploadTTL != 2*time.Hour {
		t.Fatalf("storage = %+v", cfg.Storage)
	}
	def, err := loadServerConfig(newServerCmd(&rootOpts{}), "", t.TempDir(), "127.0.0.1:0", sec, up, nw, config.Storage{}, config.Log{})
	if err != nil || def.Storage.GCInterval != time.Hour || def.Storage.GCGrace != time.Hour || def.Storage.UploadTTL != 24*time.Hour {
		t.Fatalf("defaults = %+v %v", def.Storage, err)
	}
	if code, _, errOut := gantry(t, "", "server", "--data", t.TempDir(), "--gc-interval", "-1s"); code == 0 || !strings.Contains(errOut, "gcInterval") {
		t.Fatalf("negative interval: exit %d, %q", code, errOut)
	}
}
