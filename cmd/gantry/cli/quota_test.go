package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/api"
)

// TestRegistryQuota: gantry registry update --quota-gb sets a quota that
// show and show-usage report, a push beyond it is refused over the OCI API
// with 403 DENIED and a message giving the usage and the quota, and
// --quota-gb 0 removes it.
func TestRegistryQuota(t *testing.T) {
	url := startServer(t)
	useServer(t, url, "admin", "cli-test-admin")
	addr := freeAddr(t)
	must(t, "registry", "create", "-n", "contoso", "--listen", addr)
	pushImage(t, addr, "app", "v1", "layer one")

	// 0.000001 GiB is 1073 bytes.
	var r api.Registry
	if err := json.Unmarshal([]byte(must(t, "registry", "update", "-n", "contoso", "--quota-gb", "0.000001")), &r); err != nil {
		t.Fatal(err)
	}
	if r.QuotaBytes != 1073 {
		t.Fatalf("update: quota %d, want 1073", r.QuotaBytes)
	}
	if out := must(t, "registry", "show", "-n", "contoso", "-o", "table"); !strings.Contains(out, "QUOTA") || !strings.Contains(out, "1.0 KiB") {
		t.Fatalf("show -o table:\n%s", out)
	}
	var u api.RegistryUsage
	if err := json.Unmarshal([]byte(must(t, "registry", "show-usage", "-n", "contoso")), &u); err != nil {
		t.Fatal(err)
	}
	if u.Value[0].Name != "Size" || u.Value[0].Limit == nil || *u.Value[0].Limit != 1073 || u.Value[1].Limit != nil {
		t.Fatalf("show-usage: %+v", u.Value)
	}

	body := bytes.Repeat([]byte("x"), 2000)
	sum := sha256.Sum256(body)
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v2/app/blobs/uploads/?digest=sha256:"+hex.EncodeToString(sum[:]), bytes.NewReader(body))
	req.SetBasicAuth("admin", "cli-test-admin")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(msg), `"DENIED"`) ||
		!strings.Contains(string(msg), "quota exceeded: registry contoso holds") || !strings.Contains(string(msg), "of its 1.0 KiB quota") {
		t.Fatalf("push beyond the quota: %s %s", resp.Status, msg)
	}

	if code, _, errOut := gantry(t, "", "registry", "update", "-n", "contoso"); code != 2 || !strings.Contains(errOut, "nothing to update") {
		t.Fatalf("update without flags: exit %d, %q", code, errOut)
	}
	if code, _, errOut := gantry(t, "", "registry", "update", "-n", "contoso", "--quota-gb", "-1"); code != 2 || !strings.Contains(errOut, "--quota-gb") {
		t.Fatalf("negative quota: exit %d, %q", code, errOut)
	}
	if code, _, errOut := gantry(t, "", "registry", "update", "-n", "nosuch", "--quota-gb", "1"); code != 1 || !strings.Contains(errOut, "registry nosuch not found") {
		t.Fatalf("unknown registry: exit %d, %q", code, errOut)
	}

	must(t, "registry", "update", "-n", "contoso", "--quota-gb", "0")
	uploadBlob(t, addr, "app", body)
	var after api.RegistryUsage
	if err := json.Unmarshal([]byte(must(t, "registry", "show-usage", "-n", "contoso")), &after); err != nil || after.Value[0].Limit != nil {
		t.Fatalf("show-usage without a quota: %+v %v", after.Value, err)
	}
}
