package importer

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

// TestImportFromDistribution imports a two-platform index with a referrer
// (attached with oras, which uses the referrers tag schema on Distribution
// 2.8) from Debian's docker-registry with htpasswd auth: by tag, again
// (nothing transferred), a moved tag without and with --force, and by
// digest, untagged and tagged; credentials come from the vault.
func TestImportFromDistribution(t *testing.T) {
	t.Parallel()
	up := testenv.StartDistribution(t, true)
	oras := testenv.Tool(t, "oras")
	e := newEnv(t)
	ctx := context.Background()
	e.registry(t, "contoso", nil)

	img := index("v1", 64<<10)
	pushUp(t, up, "library/node", img, "15-alpine")
	root := img.root()
	sbom := filepath.Join(t.TempDir(), "sbom.json")
	if err := os.WriteFile(sbom, []byte(`{"spdxVersion":"SPDX-2.3"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, nil, oras, "attach", "--plain-http", "-u", up.Username, "-p", up.Password, "--artifact-type", "application/spdx+json",
		"--disable-path-validation", up.Host+"/library/node@"+root.d.String(), sbom+":application/spdx+json")

	userURI := e.secret(t, "upstream-kv", "user", up.Username)
	passURI := e.secret(t, "upstream-kv", "pass", up.Password)
	var events []Progress
	res, err := e.im.Import(ctx, e.admin, "contoso", ImportRequest{
		Source: up.Host + "/library/node:15-alpine", Targets: []string{"node:15-alpine"},
		Username: userURI, Password: passURI,
	}, func(p Progress) { events = append(events, p) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != root.d || res.Manifests != 4 || res.Referrers != 1 || res.BlobsCopied != 5+1 || res.BlobsSkipped != 0 {
		// 2 configs + 2 layers + the referrer's payload and its empty config.
		t.Fatalf("first import: %+v", res)
	}
	checkStored(t, e.st, "contoso", "node", img)
	if d, err := e.st.ResolveTag(ctx, "contoso", "node", "15-alpine"); err != nil || d != root.d {
		t.Fatalf("tag: %s %v", d, err)
	}
	refs, err := e.st.Referrers(ctx, "contoso", "node", root.d, "")
	if err != nil || len(refs) != 1 || refs[0].ArtifactType != "application/spdx+json" {
		t.Fatalf("referrers: %+v %v", refs, err)
	}
	var copying int
	for _, ev := range events {
		if ev.Action == ActionCopied && ev.Kind == "blob" {
			copying++
		}
	}
	if copying != res.BlobsCopied {
		t.Fatalf("progress reported %d copied blobs, result %d", copying, res.BlobsCopied)
	}

	// Again: same digest, nothing to transfer.
	res, err = e.im.Import(ctx, e.admin, "contoso", ImportRequest{
		Source: up.Host + "/library/node:15-alpine", Targets: []string{"node:15-alpine"}, Username: up.Username, Password: up.Password,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.BlobsCopied != 0 || res.BytesCopied != 0 || res.BlobsSkipped != 6 {
		t.Fatalf("second import transferred: %+v", res)
	}

	// The upstream tag moves: without --force the target tag stays.
	img2 := index("v2", 32<<10)
	pushUp(t, up, "library/node", img2, "15-alpine")
	_, err = e.im.Import(ctx, e.admin, "contoso", ImportRequest{
		Source: up.Host + "/library/node:15-alpine", Targets: []string{"node:15-alpine"}, Username: up.Username, Password: up.Password,
	}, nil)
	if !errors.Is(err, ErrTagExists) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("import over an existing tag: %v", err)
	}
	if d, _ := e.st.ResolveTag(ctx, "contoso", "node", "15-alpine"); d != root.d {
		t.Fatalf("tag moved without --force: %s", d)
	}
	res, err = e.im.Import(ctx, e.admin, "contoso", ImportRequest{
		Source: up.Host + "/library/node:15-alpine", Targets: []string{"node:15-alpine"}, Username: up.Username, Password: up.Password, Force: true,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := e.st.ResolveTag(ctx, "contoso", "node", "15-alpine"); d != img2.root().d || res.BlobsCopied != 4 {
		t.Fatalf("forced import: tag %s, %+v", d, res)
	}

	// By digest: untagged, then tagged in another repository (whose blobs
	// are linked from the readable copy, not transferred).
	res, err = e.im.Import(ctx, e.admin, "contoso", ImportRequest{
		Source: up.Host + "/library/node@" + root.d.String(), Repositories: []string{"pinned/node"}, Username: up.Username, Password: up.Password,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkStored(t, e.st, "contoso", "pinned/node", img)
	if tags, _ := e.st.ListTags(ctx, "contoso", "pinned/node", store.Page{}); len(tags) != 0 {
		t.Fatalf("untagged import created tags %v", tags)
	}
	if res.BlobsCopied != 0 || res.BlobsLinked != 6 {
		t.Fatalf("digest import should link what the registry holds: %+v", res)
	}
	res, err = e.im.Import(ctx, e.admin, "contoso", ImportRequest{
		Source: up.Host + "/library/node@" + root.d.String(), Targets: []string{"node:15-pinned"}, Username: up.Username, Password: up.Password,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := e.st.ResolveTag(ctx, "contoso", "node", "15-pinned"); d != root.d {
		t.Fatalf("digest import tag: %s", d)
	}

	// Wrong credentials and a missing image say so.
	_, err = e.im.Import(ctx, e.admin, "contoso", ImportRequest{
		Source: up.Host + "/library/node:15-alpine", Targets: []string{"other:1"}, Username: up.Username, Password: "wrong",
	}, nil)
	if !errors.Is(err, ErrUpstreamAuth) || !errors.Is(err, auth.ErrDenied) {
		t.Fatalf("wrong password: %v", err)
	}
	_, err = e.im.Import(ctx, e.admin, "contoso", ImportRequest{
		Source: up.Host + "/library/node:nope", Username: up.Username, Password: up.Password,
	}, nil)
	if !errors.Is(err, ErrSourceUnknown) {
		t.Fatalf("missing tag: %v", err)
	}
}

// TestImportArtifact imports an OCI artifact with its own config media type
// (a Helm chart) from a gantry registry served over HTTP with Docker token
// auth: the Bearer challenge, the token endpoint and the cached token.
func TestImportArtifact(t *testing.T) {
	t.Parallel()
	upstream := newEnv(t)
	host := upstream.registry(t, "charts", upstream.au)
	chart := artifact("application/vnd.cncf.helm.config.v1+json", []byte("chart bytes"), nil)
	pushStore(t, upstream.st, "charts", "helm/hello", chart, "1.0.0")

	e := newEnv(t)
	e.registry(t, "contoso", nil)
	ctx := context.Background()
	_, err := e.im.Import(ctx, e.admin, "contoso", ImportRequest{Source: host + "/helm/hello:1.0.0"}, nil)
	if !errors.Is(err, ErrUpstreamAuth) {
		t.Fatalf("anonymous import from a private registry: %v", err)
	}
	res, err := e.im.Import(ctx, e.admin, "contoso", ImportRequest{
		Source: host + "/helm/hello:1.0.0", Username: auth.AdminUsername, Password: "admin-password",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkStored(t, e.st, "contoso", "helm/hello", chart)
	m, err := e.st.GetManifest(ctx, "contoso", "helm/hello", "1.0.0")
	if err != nil || m.ArtifactType != "application/vnd.cncf.helm.config.v1+json" || res.Manifests != 1 {
		t.Fatalf("chart: %+v %v (%+v)", m, err, res)
	}
}

// TestImportSameServer copies between two registries of one server: no
// blob bytes move, so it takes milliseconds whatever the size, and the
// caller needs read access to the source.
func TestImportSameServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	src := e.registry(t, "publicregistry", nil)
	e.registry(t, "contoso", nil)
	img := index("big", 24<<20)
	pushStore(t, e.st, "publicregistry", "node", img, "15-alpine")
	blobFiles := func() int {
		n := 0
		filepath.Walk(filepath.Join(e.dir, "blobs"), func(_ string, fi os.FileInfo, _ error) error {
			if fi != nil && !fi.IsDir() {
				n++
			}
			return nil
		})
		return n
	}
	before := blobFiles()
	start := time.Now()
	res, err := e.im.Import(ctx, e.admin, "contoso", ImportRequest{Source: src + "/node:15-alpine", Targets: []string{"base/node:15-alpine"}}, nil)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("same-server import of %d manifests, %d blobs (48 MiB of layers): %s", res.Manifests, res.BlobsLinked, took)
	if !res.SameServer || res.BytesCopied != 0 || res.BlobsCopied != 0 || res.BlobsLinked != 4 || res.Manifests != 3 {
		t.Fatalf("same-server import: %+v", res)
	}
	if after := blobFiles(); after != before {
		t.Fatalf("blob files %d -> %d: bytes were copied", before, after)
	}
	checkStored(t, e.st, "contoso", "base/node", img)
	if took > time.Second {
		t.Errorf("same-server import took %s", took)
	}

	// gantry://registry/... names the registry directly.
	if _, err := e.im.Import(ctx, e.admin, "contoso", ImportRequest{Source: "gantry://publicregistry/node:15-alpine", Targets: []string{"node:15"}}, nil); err != nil {
		t.Fatal(err)
	}

	// An identity that may write contoso but not read publicregistry.
	p, err := e.au.CreateIdentity(ctx, "importer-test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.au.CreateRoleAssignment(ctx, p.ID, auth.RoleAcrPush, auth.RegistryScope("contoso")); err != nil {
		t.Fatal(err)
	}
	id := auth.Identity{Principal: p.ID, Name: "importer-test", Kind: auth.KindIdentity}
	_, err = e.im.Import(ctx, id, "contoso", ImportRequest{Source: src + "/node:15-alpine", Targets: []string{"stolen:1"}}, nil)
	if !errors.Is(err, auth.ErrDenied) {
		t.Fatalf("import without read access to the source: %v", err)
	}
	_, err = e.im.Import(ctx, id, "publicregistry", ImportRequest{Source: "gantry://contoso/node:15", Targets: []string{"x:1"}}, nil)
	if !errors.Is(err, auth.ErrDenied) {
		t.Fatalf("import without write access to the target: %v", err)
	}
}

// TestImportRetries: the upstream answers 429 with Retry-After, then 503,
// then serves; the import waits as told and succeeds, and reports the
// rate-limit headers it saw.
func TestImportRetries(t *testing.T) {
	t.Parallel()
	img := index("retry", 16<<10)
	up, px := proxiedUpstream(t, img, "1", "library/app")
	var throttled, failed atomic.Int32
	layerPath := ""
	for d, b := range img.blobs {
		if len(b) > 1000 {
			layerPath = "/v2/library/app/blobs/" + d.String()
			break
		}
	}
	px.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/manifests/1") && throttled.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.Header().Set("RateLimit-Remaining", "0;w=21600")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		}
		if r.URL.Path == layerPath && failed.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		w.Header().Set("RateLimit-Remaining", "99;w=21600")
		return false
	})
	e := newEnv(t)
	e.registry(t, "contoso", nil)
	start := time.Now()
	res, err := e.im.Import(context.Background(), e.admin, "contoso", ImportRequest{
		Source: px.Host + "/library/app:1", Username: up.Username, Password: up.Password,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < time.Second {
		t.Fatalf("Retry-After ignored: took %s", took)
	}
	if throttled.Load() < 2 || failed.Load() < 2 {
		t.Fatalf("retries: manifest %d, layer %d", throttled.Load(), failed.Load())
	}
	if res.RateLimitRemaining != 99 {
		t.Fatalf("rate limit remaining %d", res.RateLimitRemaining)
	}
	checkStored(t, e.st, "contoso", "library/app", img)

	// A Retry-After beyond the policy's patience fails at once.
	px.setFault(throttle("3600"))
	start = time.Now()
	_, err = e.im.Import(context.Background(), e.admin, "contoso", ImportRequest{
		Source: px.Host + "/library/app:1", Targets: []string{"other:1"}, Username: up.Username, Password: up.Password,
	}, nil)
	if !errors.Is(err, ErrRateLimited) || time.Since(start) > 10*time.Second {
		t.Fatalf("long Retry-After: %v after %s", err, time.Since(start))
	}
}
