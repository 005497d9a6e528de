package server_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/testenv"
)

// recorder is an upstream registry on a loopback port that records every
// request it gets. It serves one image, app:1; with user set it asks for
// Basic credentials; with blobsAt set it redirects blob requests there.
type recorder struct {
	srv      *httptest.Server
	host     string
	user     string
	pass     string
	blobsAt  string
	manifest []byte
	blobs    map[digest.Digest][]byte

	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	method, path, authorization string
}

// newRecorder makes a recorder with fresh content; start serves it.
func newRecorder(user, pass string) *recorder {
	note := testenv.RandomHex(8)
	cfg := []byte(`{"architecture":"amd64","os":"linux","note":"` + note + `"}`)
	layer := []byte("layer " + note)
	return &recorder{user: user, pass: pass, manifest: imageManifest(cfg, layer, note, nil),
		blobs: map[digest.Digest][]byte{digest.FromBytes(cfg): cfg, digest.FromBytes(layer): layer}}
}

func (r *recorder) start(t *testing.T) *recorder {
	t.Helper()
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	r.host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

func startRecorder(t *testing.T, user, pass string) *recorder {
	t.Helper()
	return newRecorder(user, pass).start(t)
}

func (r *recorder) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.seen = append(r.seen, seenRequest{req.Method, req.URL.Path, req.Header.Get("Authorization")})
	r.mu.Unlock()
	if r.user != "" {
		if u, p, ok := req.BasicAuth(); !ok || u != r.user || p != r.pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="recorder"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
	}
	md := digest.FromBytes(r.manifest)
	switch path := req.URL.Path; {
	case path == "/v2/":
	case path == "/v2/app/manifests/1" || path == "/v2/app/manifests/"+md.String():
		w.Header().Set("Content-Type", mtManifest)
		w.Header().Set("Docker-Content-Digest", md.String())
		if req.Method == http.MethodGet {
			w.Write(r.manifest)
		}
	case strings.HasPrefix(path, "/v2/app/blobs/"):
		if r.blobsAt != "" {
			http.Redirect(w, req, r.blobsAt+path, http.StatusTemporaryRedirect)
			return
		}
		b, ok := r.blobs[digest.Digest(strings.TrimPrefix(path, "/v2/app/blobs/"))]
		if !ok {
			http.NotFound(w, req)
			return
		}
		w.Write(b)
	default:
		http.NotFound(w, req)
	}
}

// requests returns what the recorder got.
func (r *recorder) requests() []seenRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seenRequest(nil), r.seen...)
}

// importFrom imports host/app:1 into reg1 as target with c.
func importFrom(c *client.Client, host, target string, user, pass string) error {
	_, err := c.Import(context.Background(), "reg1", api.ImportRequest{Source: host + "/app:1", TargetTags: []string{target},
		Username: user, Password: pass}, nil)
	return err
}

// wantRefused checks that err is the API's DENIED naming the reason.
func wantRefused(t *testing.T, label string, err error, reason string) {
	t.Helper()
	if !errors.Is(err, api.ErrDenied) || !strings.Contains(err.Error(), reason+" (refused)") {
		t.Errorf("%s: %v, want DENIED: ... %s (refused)", label, err, reason)
	}
}

// TestUpstreamNeverTheControlAPI (issue 12, S10): no import or cache rule
// fetches from the control API's own address, under any spelling, nor from
// link-local or metadata addresses, even for the admin.
func TestUpstreamNeverTheControlAPI(t *testing.T) {
	t.Parallel()
	srv, _ := startEngineServer(t, serverOptions{})
	srv.createRegistry("reg1", false)
	adm := srv.admin()
	port := srv.addr[strings.LastIndex(srv.addr, ":")+1:]

	for _, host := range []string{srv.addr, "localhost:" + port} {
		err := importFrom(adm, host, "app:1", "", "")
		wantRefused(t, "import from "+host, err, "is the gantry control API")
		if !strings.Contains(err.Error(), "import from "+host+"/app:1: upstream "+host) {
			t.Errorf("the refusal does not name the source: %v", err)
		}
	}
	for _, host := range []string{"169.254.169.254", "169.254.169.254:80", "[fe80::1]:5000", "metadata.google.internal"} {
		wantRefused(t, "import from "+host, importFrom(adm, host, "app:1", "", ""), "is link-local/metadata")
	}
	_, err := adm.CreateCacheRule(context.Background(), "reg1", api.CreateCacheRuleRequest{Name: "to-control",
		SourceRepository: srv.addr + "/app/*", TargetRepository: "mirror/*"})
	wantRefused(t, "cache rule to the control API", err, "is the gantry control API")
	_, err = adm.CreateCacheRule(context.Background(), "reg1", api.CreateCacheRuleRequest{Name: "to-metadata",
		SourceRepository: "169.254.169.254/latest/*", TargetRepository: "meta/*"})
	wantRefused(t, "cache rule to the metadata address", err, "is link-local/metadata")
}

// TestUpstreamLoopbackNeedsAdmin (S10): a repository-scoped token that may
// push app cannot make the server fetch from a loopback port (a recorder
// there gets nothing, not even its credentials); the admin can.
func TestUpstreamLoopbackNeedsAdmin(t *testing.T) {
	t.Parallel()
	srv, _ := startEngineServer(t, serverOptions{})
	srv.createRegistry("reg1", false)
	adm := srv.admin()
	tok, err := adm.CreateToken(context.Background(), "reg1", api.CreateTokenRequest{Name: "app-pusher",
		Repositories: []api.RepositoryActions{{Repository: "app", Actions: []string{auth.ContentRead, auth.ContentWrite, auth.MetadataRead, auth.MetadataWrite}}}})
	if err != nil {
		t.Fatal(err)
	}
	pusher := srv.client(client.WithBasicAuth("app-pusher", tok.Credentials.Passwords[0].Value))
	rec := startRecorder(t, "up-user", "up-s3cret-password")

	err = importFrom(pusher, rec.host, "app:1", "up-user", "up-s3cret-password")
	wantRefused(t, "token: import from a loopback port", err, "is on this machine (loopback): only the admin or a registry owner may fetch from it")
	if got := rec.requests(); len(got) != 0 {
		t.Errorf("the recorder got requests from a token's import: %+v", got)
	}
	if _, err := adm.ListTags(context.Background(), "reg1", "app"); err == nil {
		t.Errorf("the refused import created the repository")
	}

	if err := importFrom(adm, rec.host, "app:1", "up-user", "up-s3cret-password"); err != nil {
		t.Fatalf("admin: import from a loopback port: %v", err)
	}
	if len(rec.requests()) == 0 {
		t.Error("the admin's import did not reach the recorder")
	}
}

// TestUpstreamRedirectDropsAuthorization (S10): an upstream that asks for
// Basic credentials and redirects blobs to another port of the same host
// gets the credentials; the other port does not.
func TestUpstreamRedirectDropsAuthorization(t *testing.T) {
	t.Parallel()
	srv, _ := startEngineServer(t, serverOptions{})
	srv.createRegistry("reg1", false)
	up := newRecorder("up-user", "up-s3cret-password")
	blobs := newRecorder("", "")
	blobs.blobs = up.blobs
	blobs.start(t)
	up.blobsAt = blobs.srv.URL
	up.start(t)

	if err := importFrom(srv.admin(), up.host, "app:1", "up-user", "up-s3cret-password"); err != nil {
		t.Fatalf("import through a redirect: %v", err)
	}
	authorized := false
	for _, r := range up.requests() {
		authorized = authorized || strings.HasPrefix(r.authorization, "Basic ")
	}
	if !authorized {
		t.Errorf("the upstream never got the credentials: %+v", up.requests())
	}
	got := blobs.requests()
	if len(got) == 0 {
		t.Fatal("no blob was fetched from the redirect target")
	}
	for _, r := range got {
		if r.authorization != "" {
			t.Errorf("%s %s on the other port carried Authorization %q", r.method, r.path, r.authorization)
		}
	}
}

// TestUpstreamLists (S10): --upstream-deny refuses a host even for the
// admin; with --upstream-allow, hosts outside it are refused (the name or
// the address must match) and hosts in it fetched from.
func TestUpstreamLists(t *testing.T) {
	t.Parallel()
	denied := startRecorder(t, "", "")
	allowed := startRecorder(t, "", "")
	srv, _ := startEngineServer(t, serverOptions{security: config.Security{
		UpstreamAllow: []string{"localhost", "registry.example.com"},
		UpstreamDeny:  []string{denied.host},
	}})
	srv.createRegistry("reg1", false)
	adm := srv.admin()

	wantRefused(t, "import from a denied host", importFrom(adm, denied.host, "app:1", "", ""), "is in --upstream-deny")
	if got := denied.requests(); len(got) != 0 {
		t.Errorf("the denied host got requests: %+v", got)
	}
	wantRefused(t, "import from a host outside the allow list", importFrom(adm, "other.example.com", "app:1", "", ""), "is not in --upstream-allow")
	wantRefused(t, "import from an address outside the allow list", importFrom(adm, allowed.host, "app:1", "", ""), "is not in --upstream-allow")
	if got := allowed.requests(); len(got) != 0 {
		t.Errorf("a host outside the allow list got requests: %+v", got)
	}
	allowedPort := allowed.host[strings.LastIndex(allowed.host, ":")+1:]
	if err := importFrom(adm, "localhost:"+allowedPort, "app:1", "", ""); err != nil {
		t.Fatalf("import from an allowed host: %v", err)
	}
	_, err := adm.CreateCacheRule(context.Background(), "reg1", api.CreateCacheRuleRequest{Name: "to-denied",
		SourceRepository: denied.host + "/app/*", TargetRepository: "mirror/*"})
	wantRefused(t, "cache rule to a denied host", err, "is in --upstream-deny")
}
