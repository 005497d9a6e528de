package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/httpapi"
	"github.com/gantryhq/gantry/internal/importer"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
	"github.com/gantryhq/gantry/internal/testenv/stack"
	"github.com/gantryhq/gantry/internal/vault"
)

// executeImporter runs the real command line with the import, cache and
// credential-set commands (added here unless the root already has them).
func executeImporter(ctx context.Context, args []string, out, errOut io.Writer) int {
	o := &rootOpts{in: strings.NewReader(""), out: out, errOut: errOut}
	cmd := newRoot(o)
	for _, c := range []*cobra.Command{newImportCmd(o, gantryRegistry), newCacheCmd(o), newCredentialSetCmd(o)} {
		if found, _, err := cmd.Find([]string{c.Name()}); err != nil || found == cmd {
			cmd.AddCommand(c)
		}
	}
	cmd.SetArgs(joinNargs(args))
	cmd.SetIn(o.in)
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	if err := cmd.ExecuteContext(ctx); err != nil {
		var ec exitCode
		if errors.As(err, &ec) {
			return ec.code
		}
		fmt.Fprintln(errOut, "ERROR:", err)
		return 1
	}
	return 0
}

// putImage stores a one-layer image in reg/repo:tag and returns its digest.
func putImage(t *testing.T, st *store.Store, reg, repo, tag, seed string) string {
	t.Helper()
	ctx := context.Background()
	put := func(b []byte) map[string]any {
		d := fmt.Sprintf("sha256:%x", sha256sum(b))
		if _, err := st.PutBlob(ctx, reg, repo, digestOf(d), int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		return map[string]any{"digest": d, "size": len(b)}
	}
	cfg := put([]byte(`{"architecture":"amd64","os":"linux","seed":"` + seed + `"}`))
	cfg["mediaType"] = "application/vnd.oci.image.config.v1+json"
	lyr := put([]byte("layer " + seed))
	lyr["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
	body, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": cfg, "layers": []any{lyr}})
	m, err := st.PutManifest(ctx, reg, repo, store.PutManifestRequest{Reference: tag, MediaType: "application/vnd.oci.image.manifest.v1+json", Body: body})
	if err != nil {
		t.Fatal(err)
	}
	return m.Digest.String()
}

// TestImporterCommands runs `gantry import`, `gantry cache` and `gantry
// credential-set` through the real root command against an in-process
// control API with the importer.
func TestImporterCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sk := stack.New(t, "")
	admin := sk.Admin(t, "admin-password")
	d, st, au, vlt := sk.DB, sk.Store, sk.Auth, sk.Vault
	var serverLog testenv.Buffer
	log := slog.New(slog.NewTextHandler(&serverLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	im := importer.New(d, st, vlt, au, importer.WithLogger(log))
	ictx, stop := context.WithCancel(ctx)
	if err := im.Start(ictx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(); im.Wait() })
	srv := httptest.NewServer(httpapi.New(st, au, vlt, stack.NoRegistries{}, httpapi.WithImporter(im), httpapi.WithLogger(log)))
	t.Cleanup(srv.Close)
	testenv.CreateRegistries(t, st, "publicregistry", "contoso")
	v1 := putImage(t, st, "publicregistry", "node", "15-alpine", "green")

	useServer(t, srv.URL, auth.AdminUsername, "admin-password")
	run := func(wantCode int, args ...string) (string, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := executeImporter(ctx, args, &out, &errOut); code != wantCode {
			t.Fatalf("gantry %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s\nserver log:\n%s", strings.Join(args, " "), code, wantCode,
				out.String(), errOut.String(), serverLog.String())
		}
		return out.String(), errOut.String()
	}

	out, progress := run(0, "import", "-r", "contoso", "--source", "gantry://publicregistry/node:15-alpine", "--image", "node:15-alpine", "-o", "table")
	for _, want := range []string{"SOURCE", "DIGEST", "BLOBS COPIED", "LINKED", v1} {
		if !strings.Contains(out, want) {
			t.Errorf("import table lacks %q:\n%s", want, out)
		}
	}
	for _, want := range []string{"Importing gantry://publicregistry/node:15-alpine into contoso", "Linked  blob sha256:", "Stored manifest", "Imported"} {
		if !strings.Contains(progress, want) {
			t.Errorf("progress lacks %q:\n%s", want, progress)
		}
	}
	// The upstream tag moves: refused without --force, done with it.
	v2 := putImage(t, st, "publicregistry", "node", "15-alpine", "orange")
	_, errOut := run(1, "import", "-r", "contoso", "--source", "gantry://publicregistry/node:15-alpine", "--no-progress")
	if !strings.Contains(errOut, "--force") {
		t.Errorf("import over a tag: %s", errOut)
	}
	// The same error arriving in the progress stream.
	_, errOut = run(1, "import", "-r", "contoso", "--source", "gantry://publicregistry/node:15-alpine")
	if !strings.Contains(errOut, "Importing") || !strings.Contains(errOut, "ERROR:") || !strings.Contains(errOut, "--force") {
		t.Errorf("streamed import over a tag: %s", errOut)
	}
	out, _ = run(0, "import", "-r", "contoso", "--source", "gantry://publicregistry/node:15-alpine", "--force", "--no-progress", "--query", "digest", "-o", "tsv")
	if strings.TrimSpace(out) != v2 {
		t.Errorf("forced import digest %q, want %s", out, v2)
	}
	out, _ = run(0, "import", "-r", "contoso", "--source", "gantry://publicregistry/node@"+v1, "--repository", "pinned", "--no-progress", "-o", "json")
	var res struct {
		Untagged []string `json:"untaggedTargetRepositories"`
		Same     bool     `json:"sameServer"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Untagged) != 1 || res.Untagged[0] != "pinned" || !res.Same {
		t.Errorf("untagged import: %s %v", out, err)
	}

	// Credential sets and cache rules.
	if _, err := vlt.CreateVault(ctx, admin, "hub-kv"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"user", "token"} {
		if _, err := vlt.SetSecret(ctx, admin, "hub-kv", n, "secret-"+n); err != nil {
			t.Fatal(err)
		}
	}
	out, _ = run(0, "credential-set", "create", "-r", "contoso", "-n", "hub-creds", "-l", "docker.io",
		"-u", "https://hub-kv.vault.azure.net/secrets/user", "-p", "vault://hub-kv/secrets/token", "-o", "json")
	var cs struct {
		Identity struct {
			PrincipalID string `json:"principalId"`
		} `json:"identity"`
		AuthCredentials []struct {
			CredentialHealth struct {
				Status    string `json:"status"`
				ErrorCode string `json:"errorCode"`
			} `json:"credentialHealth"`
		} `json:"authCredentials"`
	}
	if err := json.Unmarshal([]byte(out), &cs); err != nil || cs.Identity.PrincipalID == "" || cs.AuthCredentials[0].CredentialHealth.ErrorCode != "AccessDenied" {
		t.Fatalf("credential set: %s %v", out, err)
	}
	if _, err := vlt.SetPolicy(ctx, admin, "hub-kv", cs.Identity.PrincipalID, []vault.Permission{vault.PermGet}); err != nil {
		t.Fatal(err)
	}
	out, _ = run(0, "credential-set", "list", "-r", "contoso", "-o", "table")
	if !strings.Contains(out, "HEALTH") || !strings.Contains(out, "Healthy") || !strings.Contains(out, "docker.io") {
		t.Errorf("credential-set list:\n%s", out)
	}
	out, _ = run(0, "cache", "create", "-r", "contoso", "-n", "node-rule", "--source-repo", "docker.io/library/node", "--target-repo", "hub/node",
		"--cred-set", "hub-creds", "-o", "table")
	if !strings.Contains(out, "SOURCE REPO") || !strings.Contains(out, "docker.io/library/node") || !strings.Contains(out, "hub-creds") {
		t.Errorf("cache create:\n%s", out)
	}
	run(0, "cache", "create", "-r", "contoso", "-n", "hub-wild", "-s", "docker.io/library/*", "-t", "library/*")
	_, errOut = run(1, "cache", "create", "-r", "contoso", "-n", "hub-wild2", "-s", "docker.io/*", "-t", "*")
	if !strings.Contains(errOut, "overlaps") {
		t.Errorf("overlapping wildcard: %s", errOut)
	}
	out, _ = run(0, "cache", "list", "-r", "contoso", "--query", "[].name", "-o", "tsv")
	if strings.Fields(out)[0] != "hub-wild" || len(strings.Fields(out)) != 2 {
		t.Errorf("cache list: %q", out)
	}
	_, errOut = run(1, "import", "-r", "contoso", "--source", "gantry://publicregistry/node:15-alpine", "--image", "hub/node:15", "--no-progress")
	if !strings.Contains(errOut, "cache rule") {
		t.Errorf("import into a cache target: %s", errOut)
	}
	_, errOut = run(1, "credential-set", "delete", "-r", "contoso", "-n", "hub-creds")
	if !strings.Contains(errOut, "node-rule") {
		t.Errorf("deleting a used credential set: %s", errOut)
	}
	out, _ = run(0, "cache", "update", "-r", "contoso", "-n", "node-rule", "--remove-cred-set", "-o", "json")
	if strings.Contains(out, "hub-creds") {
		t.Errorf("update --remove-cred-set: %s", out)
	}
	run(0, "credential-set", "delete", "-r", "contoso", "-n", "hub-creds")
	run(0, "cache", "delete", "-r", "contoso", "-n", "node-rule")
	_, errOut = run(1, "cache", "show", "-r", "contoso", "-n", "node-rule")
	if !strings.Contains(errOut, "not found") {
		t.Errorf("show after delete: %s", errOut)
	}
	if strings.Contains(serverLog.String(), "secret-token") || strings.Contains(serverLog.String(), "secret-user") {
		t.Error("a secret reached the server log")
	}
}

func sha256sum(b []byte) [32]byte { return sha256.Sum256(b) }

func digestOf(s string) digest.Digest { return digest.Digest(s) }
