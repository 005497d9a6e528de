package importer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/testenv"
	"github.com/gantryhq/gantry/internal/vault"
)

// cacheSetup creates a credential set for the upstream from vault secrets
// (granting its identity get on the vault) and a cache rule.
func (e *env) cacheSetup(t testing.TB, reg string, up *testenv.Distribution, loginServer, rule, source, target string) {
	t.Helper()
	ctx := context.Background()
	cs, err := e.im.CreateCredentialSet(ctx, CredentialSet{Registry: reg, Name: "upstream-creds", LoginServer: loginServer,
		UsernameSecret: e.secret(t, "cache-kv", "user", up.Username), PasswordSecret: e.secret(t, "cache-kv", "pass", up.Password)})
	if err != nil && !errors.Is(err, ErrExists) {
		t.Fatal(err)
	}
	if err == nil {
		if cs.Health.Status != HealthUnhealthy || cs.Health.ErrorCode != "AccessDenied" {
			t.Fatalf("credential set without a vault policy: %+v", cs.Health)
		}
		if _, err := e.vlt.SetPolicy(ctx, e.admin, "cache-kv", cs.PrincipalID, []vault.Permission{vault.PermGet}); err != nil {
			t.Fatal(err)
		}
		if cs, err = e.im.GetCredentialSet(ctx, reg, "upstream-creds"); err != nil || cs.Health.Status != HealthHealthy {
			t.Fatalf("credential set with a policy: %+v %v", cs.Health, err)
		}
	}
	if _, err := e.im.CreateCacheRule(ctx, CacheRule{Registry: reg, Name: rule, SourceRepository: source, TargetRepository: target,
		CredentialSet: "upstream-creds"}); err != nil {
		t.Fatal(err)
	}
}

// get fetches a URL and returns status, body and headers.
func get(t testing.TB, method, u string, hdr map[string]string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, u, err)
	}
	return resp.StatusCode, b, resp.Header
}

const acceptAll = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"

// TestCachePullThroughDocker pulls through a cache rule with the Docker
// engine: the first pull fills the cache with the whole index (both
// platforms), then the upstream is stopped and pulls keep working, also
// after the tag's TTL has expired (the cached copy is served and the log
// says so). Pushes and imports into the target are refused.
func TestCachePullThroughDocker(t *testing.T) {
	testenv.DockerHost(t)
	docker := testenv.Tool(t, "docker")
	up := testenv.StartDistribution(t, true)
	img := index("docker", 256<<10)
	pushUp(t, up, "library/hello", img, "v1")

	e := newEnv(t, WithTagTTL(time.Minute))
	host := e.registry(t, "contoso", nil)
	e.cacheSetup(t, "contoso", up, up.Host, "hello-rule", up.Host+"/library/*", "library/*")
	ref := host + "/library/hello:v1"
	t.Cleanup(func() { _ = exec.Command(docker, "rmi", "-f", ref).Run() })

	t.Log(testenv.Run(t, nil, docker, "pull", "--platform", "linux/amd64", ref))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.im.WaitFills(ctx); err != nil {
		t.Fatal(err)
	}
	checkStored(t, e.st, "contoso", "library/hello", img) // both platforms
	if d, err := e.st.ResolveTag(ctx, "contoso", "library/hello", "v1"); err != nil || d != img.root().d {
		t.Fatalf("cached tag: %s %v", d, err)
	}

	up.Stop()
	testenv.Run(t, nil, docker, "rmi", ref)
	testenv.Run(t, nil, docker, "pull", "--platform", "linux/amd64", ref)

	e.clock.advance(2 * time.Minute) // the tag is due for revalidation
	testenv.Run(t, nil, docker, "rmi", ref)
	testenv.Run(t, nil, docker, "pull", "--platform", "linux/amd64", ref)
	if !strings.Contains(e.logs.String(), "upstream unavailable; serving the cached copy") {
		t.Fatal("no log line about serving the cached copy")
	}
	// A digest pull of the other platform works from the cache too.
	arm := img.manifests[1]
	if st, body, _ := get(t, "GET", "http://"+host+"/v2/library/hello/manifests/"+arm.d.String(), map[string]string{"Accept": acceptAll}); st != 200 || !bytes.Equal(body, arm.body) {
		t.Fatalf("arm64 manifest by digest: %d", st)
	}

	// The target is reserved.
	st, body, _ := get(t, "POST", "http://"+host+"/v2/library/hello/blobs/uploads/", nil)
	if st != http.StatusForbidden || !strings.Contains(string(body), "cache rule") {
		t.Fatalf("push into a cache target: %d %s", st, body)
	}
	_, err := e.im.Import(ctx, e.admin, "contoso", ImportRequest{Source: "gantry://contoso/library/hello:v1", Targets: []string{"library/copy:v1"}}, nil)
	if !errors.Is(err, ErrCacheTarget) || !errors.Is(err, auth.ErrDenied) {
		t.Fatalf("import into a cache target: %v", err)
	}
	// Outside the rule's prefix, imports work.
	if _, err := e.im.Import(ctx, e.admin, "contoso", ImportRequest{Source: "gantry://contoso/library/hello:v1", Targets: []string{"mirror/hello:v1"}}, nil); err != nil {
		t.Fatal(err)
	}
}

// TestCacheSingleflight: N clients pull the same uncached image at once;
// every blob is fetched from upstream exactly once (counted by a proxy in
// front of it) and streamed to all of them while it is stored.
func TestCacheSingleflight(t *testing.T) {
	t.Parallel()
	img := index("sf", 8<<20)
	up, px := proxiedUpstream(t, img, "v1", "library/big")
	px.reset()
	// Slow the layers down so that the clients overlap with the fetch.
	px.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/blobs/") {
			select {
			case <-time.After(100 * time.Millisecond):
			case <-r.Context().Done():
			}
		}
		return false
	})

	e := newEnv(t)
	host := e.registry(t, "contoso", nil)
	e.cacheSetup(t, "contoso", up, px.Host, "big-rule", px.Host+"/library/big", "big")
	amd := img.manifests[0]
	am := parse(t, amd)
	const clients = 8
	var g errgroup.Group
	for range clients {
		g.Go(func() error { return pullImage(host, "big", "v1", img, amd, am.Blobs()) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.im.WaitFills(ctx); err != nil {
		t.Fatal(err)
	}
	for d := range img.blobs {
		if n := px.count("GET", "/v2/library/big/blobs/"+d.String()); n != 1 {
			t.Errorf("blob %s fetched %d times from upstream", d, n)
		}
	}
	for _, m := range img.manifests {
		if n := px.count("GET", "/v2/library/big/manifests/"+m.d.String()); n > 1 {
			t.Errorf("manifest %s fetched %d times", m.d, n)
		}
	}
	if n := px.count("HEAD", "/v2/library/big/manifests/v1") + px.count("GET", "/v2/library/big/manifests/v1"); n > 2 {
		t.Errorf("tag resolved %d times upstream (one 401 allowed)", n)
	}
	checkStored(t, e.st, "contoso", "big", img)
	t.Logf("upstream requests: %d", px.total("/v2/"))
}

// pullImage pulls an image like a client: the tag, the platform manifest,
// then every blob, checking digests.
func pullImage(host, repo, tag string, img *content, platform mf, blobs []ocispec.Descriptor) error {
	st, body, _ := getE("GET", "http://"+host+"/v2/"+repo+"/manifests/"+tag, acceptAll)
	if st != 200 || digest.FromBytes(body) != img.root().d {
		return fmt.Errorf("tag: %d %s", st, body)
	}
	st, body, _ = getE("GET", "http://"+host+"/v2/"+repo+"/manifests/"+platform.d.String(), acceptAll)
	if st != 200 || !bytes.Equal(body, platform.body) {
		return fmt.Errorf("platform manifest: %d %s", st, body)
	}
	for _, b := range blobs {
		st, body, _ := getE("GET", "http://"+host+"/v2/"+repo+"/blobs/"+b.Digest.String(), "")
		if st != 200 {
			return fmt.Errorf("blob %s: %d %s", b.Digest, st, body)
		}
		if got := fmt.Sprintf("sha256:%x", sha256.Sum256(body)); got != b.Digest.String() {
			return fmt.Errorf("blob %s: got %s (%d bytes)", b.Digest, got, len(body))
		}
	}
	return nil
}

func getE(method, u, accept string) (int, []byte, error) {
	req, _ := http.NewRequest(method, u, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// TestCacheRevalidation: a cached tag is served without asking upstream
// within the TTL; after it, a HEAD revalidates it, a moved tag is fetched
// anew, and a throttling (429) or unreachable upstream leaves the cached
// copy served. A cold pull while throttled is answered 429.
func TestCacheRevalidation(t *testing.T) {
	t.Parallel()
	img := index("r1", 4<<10)
	up, px := proxiedUpstream(t, img, "1", "library/app")
	e := newEnv(t, WithTagTTL(time.Minute))
	host := e.registry(t, "contoso", nil)
	e.cacheSetup(t, "contoso", up, px.Host, "app-rule", px.Host+"/library/app", "app")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tagURL := "http://" + host + "/v2/app/manifests/1"
	fetchTag := func() digest.Digest {
		t.Helper()
		st, body, hd := get(t, "GET", tagURL, map[string]string{"Accept": acceptAll})
		if st != 200 {
			t.Fatalf("tag: %d %s", st, body)
		}
		if e.im.WaitFills(ctx) != nil {
			t.Fatal("fills did not finish")
		}
		return digest.Digest(hd.Get("Docker-Content-Digest"))
	}
	if d := fetchTag(); d != img.root().d {
		t.Fatalf("first pull %s", d)
	}
	px.reset()
	fetchTag()
	if n := px.total("/manifests/"); n != 0 {
		t.Fatalf("pull within the TTL asked upstream %d times", n)
	}

	// The tag moves upstream; after the TTL the new content is served.
	img2 := index("r2", 4<<10)
	pushUp(t, up, "library/app", img2, "1")
	e.clock.advance(2 * time.Minute)
	px.reset()
	if d := fetchTag(); d != img2.root().d {
		t.Fatalf("after the TTL: %s, want %s", d, img2.root().d)
	}
	if px.count("HEAD", "/v2/library/app/manifests/1") != 1 {
		t.Fatalf("revalidation HEADs: %v", px.counts)
	}
	checkStored(t, e.st, "contoso", "app", img2)

	// Throttled: the cached copy is served.
	px.setFault(throttle("1"))
	e.clock.advance(2 * time.Minute)
	if d := fetchTag(); d != img2.root().d {
		t.Fatalf("throttled: %s", d)
	}
	if !strings.Contains(e.logs.String(), "serving the cached copy") || !strings.Contains(e.logs.String(), "429") {
		t.Fatal("no log line about serving the cached copy on 429")
	}
	// A cold pull has nothing to fall back on.
	st, body, _ := get(t, "GET", "http://"+host+"/v2/app/manifests/2", map[string]string{"Accept": acceptAll})
	if st != http.StatusTooManyRequests {
		t.Fatalf("cold pull while throttled: %d %s", st, body)
	}
	// Unreachable: the cached copy again; a cold pull is 503.
	up.Stop()
	px.setFault(nil)
	e.clock.advance(2 * time.Minute)
	if d := fetchTag(); d != img2.root().d {
		t.Fatalf("upstream down: %s", d)
	}
	st, _, _ = get(t, "GET", "http://"+host+"/v2/app/manifests/3", map[string]string{"Accept": acceptAll})
	if st != http.StatusServiceUnavailable {
		t.Fatalf("cold pull with the upstream down: %d", st)
	}
	// A missing blob of an uncached image: 503, not 404.
	st, _, _ = get(t, "GET", "http://"+host+"/v2/app/blobs/"+digest.FromString("nope").String(), nil)
	if st != http.StatusServiceUnavailable {
		t.Fatalf("blob with the upstream down: %d", st)
	}
}

// gatedWriter passes the first `after` bytes of a response through, then
// blocks until gate is closed.
type gatedWriter struct {
	http.ResponseWriter
	after int
	n     int
	gate  <-chan struct{}
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	if g.n < g.after && g.n+len(p) > g.after {
		k := g.after - g.n
		m, err := g.Write(p[:k])
		if err != nil {
			return m, err
		}
		n, err := g.Write(p[k:])
		return m + n, err
	}
	if g.n >= g.after {
		<-g.gate
	}
	n, err := g.ResponseWriter.Write(p)
	g.n += n
	if f, ok := g.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	return n, err
}

// TestCacheStreamsWhileStoring: a client pulling a blob through the cache
// receives its bytes while the upstream is still sending it, not after the
// whole blob is stored.
func TestCacheStreamsWhileStoring(t *testing.T) {
	t.Parallel()
	img := index("stream", 4<<20)
	up, px := proxiedUpstream(t, img, "1", "library/app")
	amd := parse(t, img.manifests[0])
	layer := amd.Layers[0]
	gate := make(chan struct{})
	released := false
	defer func() {
		if !released {
			close(gate)
		}
	}()
	upURL, _ := url.Parse(up.URL())
	rp := httputil.NewSingleHostReverseProxy(upURL)
	px.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+layer.Digest.String()) {
			rp.ServeHTTP(&gatedWriter{ResponseWriter: w, after: 1 << 20, gate: gate}, r)
			return true
		}
		return false
	})
	e := newEnv(t)
	host := e.registry(t, "contoso", nil)
	e.cacheSetup(t, "contoso", up, px.Host, "app-rule", px.Host+"/library/app", "app")

	resp, err := http.Get("http://" + host + "/v2/app/blobs/" + layer.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != layer.Size {
		t.Fatalf("status %d, length %d", resp.StatusCode, resp.ContentLength)
	}
	first := make([]byte, 512<<10)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatalf("reading while the upstream is held: %v", err)
	}
	if _, err := e.st.StatBlob(context.Background(), "contoso", "app", layer.Digest); err == nil {
		t.Fatal("blob stored before the upstream finished")
	}
	close(gate)
	released = true
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got := digest.FromBytes(append(first, rest...)); got != layer.Digest {
		t.Fatalf("streamed content %s, want %s", got, layer.Digest)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.im.WaitFills(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.StatBlob(ctx, "contoso", "app", layer.Digest); err != nil {
		t.Fatalf("blob not stored: %v", err)
	}
}

// TestCacheSharedLayers: two images under one wildcard rule share their
// layers; the second fill links them from the first, without upstream
// requests for them.
func TestCacheSharedLayers(t *testing.T) {
	t.Parallel()
	img := index("shared", 64<<10)
	up, px := proxiedUpstream(t, img, "v1", "library/a", "library/b")
	e := newEnv(t)
	host := e.registry(t, "contoso", nil)
	e.cacheSetup(t, "contoso", up, px.Host, "lib-rule", px.Host+"/library/*", "library/*")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, repo := range []string{"library/a", "library/b"} {
		if st, body, _ := get(t, "GET", "http://"+host+"/v2/"+repo+"/manifests/v1", map[string]string{"Accept": acceptAll}); st != 200 {
			t.Fatalf("%s: %d %s", repo, st, body)
		}
		if err := e.im.WaitFills(ctx); err != nil {
			t.Fatal(err)
		}
		checkStored(t, e.st, "contoso", repo, img)
	}
	if n := px.total("/v2/library/a/blobs/"); n != len(img.blobs) {
		t.Errorf("first image: %d blob requests, want %d", n, len(img.blobs))
	}
	if n := px.total("/v2/library/b/blobs/"); n != 0 {
		t.Errorf("second image fetched %d shared blobs again", n)
	}
}
