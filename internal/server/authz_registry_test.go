package server_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/testenv"
)

// outcome is the expected answer to a request.
type outcome byte

const (
	allow   outcome = 'A' // served: the operation's success status
	unauth  outcome = 'U' // 401 (registry: with a Bearer challenge; control API: UNAUTHENTICATED)
	deny    outcome = 'D' // 403 (registry: DENIED; control API: DENIED)
	noMount outcome = 'M' // registry mount: 202 upload session instead, the blob not linked
)

func (o outcome) String() string {
	switch o {
	case allow:
		return "allow"
	case unauth:
		return "401"
	case deny:
		return "403"
	case noMount:
		return "202 (no mount)"
	}
	return string(o)
}

// regRequest is one registry request.
type regRequest struct {
	method string
	path   string // with query
	body   []byte
	header map[string]string
	// mounted, for mount requests, is the blob path that must (or, for a
	// noMount outcome, must not) exist afterwards.
	mounted string
}

// regOp is a registry operation of the matrix.
type regOp struct {
	name   string
	status int // the success status
	// prepare sets up what the request acts on (as the admin) and returns it.
	prepare func(t *testing.T, w *world) regRequest
	// want holds one outcome per subject, in the order of subjects.
	want string
	// bearerWant overrides want for the bearer-token transport.
	bearerWant string
	// public: served to anonymous callers of an anonymous-pull registry.
	public bool
}

// Columns: anonymous, admin, pull map, push map, admin map, repo token,
// wildcard, disabled, expired, wrong password, other registry, run of reg1,
// run acrpull, run owner, run without roles.
const (
	rowBase      = "UAAAAAAUUUUAAAA"
	rowCatalog   = "UADDDDDUUUUAAAD"
	rowPullApp   = "UAAAAADUUUUAAAD"
	rowPushApp   = "UADAADDUUUUADAD"
	rowDeleteApp = "UADDADDUUUUADAD"
	rowPullWeb   = "UAAAADAUUUUAAAD"
	rowPushWeb   = "UADAADAUUUUADAD"
	rowDeleteWeb = "UADDADDUUUUADAD"
	// A mount into samples/web from app: the wildcard token may push there
	// but not read app, so it gets an upload session, not the blob.
	rowMountWeb = "UADAADMUUUUADAD"
)

func registryOps() []regOp {
	fresh := func() (digest.Digest, []byte) {
		b := []byte("fresh blob " + testenv.RandomHex(8))
		return digest.FromBytes(b), b
	}
	get := func(path string) func(*testing.T, *world) regRequest {
		return func(*testing.T, *world) regRequest {
			return regRequest{method: "GET", path: path, header: map[string]string{"Accept": mtManifest}}
		}
	}
	head := func(path string) func(*testing.T, *world) regRequest {
		return func(*testing.T, *world) regRequest {
			return regRequest{method: "HEAD", path: path, header: map[string]string{"Accept": mtManifest}}
		}
	}
	upload := func(method string, body bool) func(*testing.T, *world) regRequest {
		return func(t *testing.T, w *world) regRequest {
			loc := w.oci.startUpload("app")
			r := regRequest{method: method, path: loc}
			if body {
				d, b := fresh()
				r.body = b
				r.header = map[string]string{"Content-Type": "application/octet-stream"}
				if method == "PUT" {
					r.path += "?digest=" + d.String()
					r.mounted = "/v2/app/blobs/" + d.String()
				}
			}
			return r
		}
	}
	pushManifest := func(repo string) func(*testing.T, *world) regRequest {
		return func(t *testing.T, w *world) regRequest {
			note := testenv.RandomHex(8)
			cfg := []byte(`{"note":"` + note + `"}`)
			layer := []byte("layer " + note)
			w.oci.pushBlob(repo, cfg)
			w.oci.pushBlob(repo, layer)
			tag := "t" + note
			return regRequest{method: "PUT", path: "/v2/" + repo + "/manifests/" + tag,
				body: imageManifest(cfg, layer, note, nil), header: map[string]string{"Content-Type": mtManifest},
				mounted: "/v2/" + repo + "/manifests/" + tag}
		}
	}
	deleteManifest := func(repo string) func(*testing.T, *world) regRequest {
		return func(t *testing.T, w *world) regRequest {
			m, _ := w.oci.pushImage(repo, "del-"+testenv.RandomHex(4))
			return regRequest{method: "DELETE", path: "/v2/" + repo + "/manifests/" + m.String()}
		}
	}
	mount := func(into, from string, named bool) func(*testing.T, *world) regRequest {
		return func(t *testing.T, w *world) regRequest {
			_, b := fresh()
			d := w.oci.pushBlob(from, b)
			p := "/v2/" + into + "/blobs/uploads/?mount=" + d.String()
			if named {
				p += "&from=" + url.QueryEscape(from)
			}
			return regRequest{method: "POST", path: p, mounted: "/v2/" + into + "/blobs/" + d.String()}
		}
	}
	return []regOp{
		{name: "GET /v2/", status: 200, want: rowBase, prepare: get("/v2/")},
		{name: "GET /v2/_catalog", status: 200, want: rowCatalog, prepare: get("/v2/_catalog")},
		{name: "GET app tags/list", status: 200, public: true, want: rowPullApp, prepare: get("/v2/app/tags/list")},
		{name: "HEAD app manifest", status: 200, public: true, want: rowPullApp, prepare: head("/v2/app/manifests/v1")},
		{name: "GET app manifest", status: 200, public: true, want: rowPullApp, prepare: get("/v2/app/manifests/v1")},
		{name: "HEAD app blob", status: 200, public: true, want: rowPullApp, prepare: func(t *testing.T, w *world) regRequest {
			return regRequest{method: "HEAD", path: "/v2/app/blobs/" + w.appLayer}
		}},
		{name: "GET app blob", status: 200, public: true, want: rowPullApp, prepare: func(t *testing.T, w *world) regRequest {
			return regRequest{method: "GET", path: "/v2/app/blobs/" + w.appLayer}
		}},
		{name: "GET app referrers", status: 200, public: true, want: rowPullApp, prepare: func(t *testing.T, w *world) regRequest {
			return regRequest{method: "GET", path: "/v2/app/referrers/" + w.appDigest}
		}},
		{name: "POST app upload", status: 202, want: rowPushApp, prepare: func(*testing.T, *world) regRequest {
			return regRequest{method: "POST", path: "/v2/app/blobs/uploads/"}
		}},
		{name: "POST app monolithic upload", status: 201, want: rowPushApp, prepare: func(t *testing.T, w *world) regRequest {
			d, b := fresh()
			return regRequest{method: "POST", path: "/v2/app/blobs/uploads/?digest=" + d.String(), body: b,
				header: map[string]string{"Content-Type": "application/octet-stream"}, mounted: "/v2/app/blobs/" + d.String()}
		}},
		{name: "GET app upload status", status: 204, want: rowPushApp, prepare: upload("GET", false)},
		{name: "PATCH app upload", status: 202, want: rowPushApp, prepare: upload("PATCH", true)},
		{name: "PUT app upload", status: 201, want: rowPushApp, prepare: upload("PUT", true)},
		{name: "DELETE app upload", status: 204, want: rowPushApp, prepare: upload("DELETE", false)},
		{name: "POST app mount from samples/web", status: 201, want: rowPushApp, prepare: mount("app", "samples/web", true)},
		{name: "POST samples/web mount from app", status: 201, want: rowMountWeb, prepare: mount("samples/web", "app", true)},
		// Without from=, the registry looks for the blob in repositories the
		// caller can read. A bearer token only covers the scopes of the
		// challenge (push on the target), so it never mounts this way.
		{name: "POST samples/web mount, no from", status: 201, want: rowMountWeb, prepare: mount("samples/web", "app", false),
			bearerWant: "UMDMMDMUUUUMDMD"},
		{name: "PUT app manifest", status: 201, want: rowPushApp, prepare: pushManifest("app")},
		{name: "DELETE app manifest", status: 202, want: rowDeleteApp, prepare: deleteManifest("app")},
		{name: "DELETE app blob", status: 202, want: rowDeleteApp, prepare: func(t *testing.T, w *world) regRequest {
			_, b := fresh()
			d := w.oci.pushBlob("app", b)
			return regRequest{method: "DELETE", path: "/v2/app/blobs/" + d.String()}
		}},
		{name: "GET samples/web tags/list", status: 200, public: true, want: rowPullWeb, prepare: get("/v2/samples/web/tags/list")},
		{name: "GET samples/web manifest", status: 200, public: true, want: rowPullWeb, prepare: get("/v2/samples/web/manifests/v1")},
		{name: "PUT samples/web manifest", status: 201, want: rowPushWeb, prepare: pushManifest("samples/web")},
		{name: "DELETE samples/web manifest", status: 202, want: rowDeleteWeb, prepare: deleteManifest("samples/web")},
	}
}

// TestRegistryAuthorizationMatrix sends every registry operation as every
// subject to a real server, with HTTP Basic on each request and with the
// Docker token flow (challenge, /oauth2/token, Bearer), and checks the
// answer: the operation's success status when allowed, else 401 with a
// Bearer challenge or 403, each with an OCI error body, and the persisted
// state (every database row, every file of the data directory) unchanged.
func TestRegistryAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	w := newWorld(t, serverOptions{})
	ops := registryOps()
	for _, op := range ops {
		for _, want := range []string{op.want, op.bearerWant} {
			if want != "" && len(want) != len(subjects) {
				t.Fatalf("%s: %d outcomes for %d subjects", op.name, len(want), len(subjects))
			}
		}
	}
	for _, mode := range []string{"basic", "bearer"} {
		for _, op := range ops {
			want := op.want
			if mode == "bearer" && op.bearerWant != "" {
				want = op.bearerWant
			}
			for i, subject := range subjects {
				w.checkRegistry(t, mode, op, subject, outcome(want[i]))
			}
		}
	}
	w.checkLogClean(t)
}

// checkRegistry sends one operation as one subject and checks the outcome.
func (w *world) checkRegistry(t *testing.T, mode string, op regOp, subject string, want outcome) {
	t.Helper()
	label := mode + ": " + subject + " × " + op.name
	req := op.prepare(t, w)
	before := w.state.read(t)
	var r response
	if mode == "basic" {
		r = w.sendRegistry(t, req, subject, "")
	} else {
		var ok bool
		if r, ok = w.sendBearer(t, req, subject); !ok {
			return
		}
	}
	got := classifyRegistry(r, op.status)
	if got != want {
		t.Errorf("%s = %s (%s), want %s", label, got, r, want)
		return
	}
	switch got {
	case unauth, deny:
		w.checkRegistryDenial(t, label, r, got)
		if after := w.state.read(t); before.diff(after) != "" {
			t.Errorf("%s: denied, but the persisted state changed: %s", label, before.diff(after))
		}
	case noMount:
		if req.mounted == "" || w.oci.exists(req.mounted) {
			t.Errorf("%s: %s is readable after a refused mount", label, req.mounted)
		}
	case allow:
		if req.mounted != "" && req.method != "DELETE" && !w.oci.exists(req.mounted) {
			t.Errorf("%s: allowed, but %s does not exist", label, req.mounted)
		}
	}
}

// classifyRegistry maps an answer to an outcome.
func classifyRegistry(r response, success int) outcome {
	switch r.status {
	case success:
		return allow
	case http.StatusUnauthorized:
		return unauth
	case http.StatusForbidden:
		return deny
	case http.StatusAccepted:
		return noMount
	}
	return outcome('0' + r.status/100) // anything else, e.g. '4' or '5'
}

// checkRegistryDenial checks the error body and, for 401, the challenge.
func (w *world) checkRegistryDenial(t *testing.T, label string, r response, got outcome) {
	t.Helper()
	if r.header.Get("X-Token-Endpoint") != "" {
		// The token endpoint refused the credentials (bearer flow).
		if !strings.Contains(string(r.body), `"UNAUTHORIZED"`) {
			t.Errorf("%s: token endpoint refusal without an error body: %s", label, r)
		}
		return
	}
	var body struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if r.status != 0 && len(r.body) > 0 {
		if err := json.Unmarshal(r.body, &body); err != nil || len(body.Errors) == 0 {
			t.Errorf("%s: not an OCI error body: %s", label, r)
		}
	}
	wantCode := "UNAUTHORIZED"
	if got == deny {
		wantCode = "DENIED"
	}
	// HEAD answers have no body; their status and headers still count.
	if len(body.Errors) > 0 && body.Errors[0].Code != wantCode {
		t.Errorf("%s: error code %s, want %s", label, body.Errors[0].Code, wantCode)
	}
	if got == unauth {
		c := r.header.Get("WWW-Authenticate")
		if !strings.HasPrefix(c, `Bearer realm="http://`+w.reg1+`/oauth2/token"`) || !strings.Contains(c, `service="`+w.reg1+`"`) {
			t.Errorf("%s: WWW-Authenticate %q, want a Bearer challenge for this registry", label, c)
		}
	}
}

// sendRegistry sends req to reg1 from a fresh source address, with the
// subject's Basic credentials, or with bearer if set.
func (w *world) sendRegistry(t *testing.T, req regRequest, subject, bearer string) response {
	t.Helper()
	hr := newRequest(t, req.method, "http://"+w.reg1+req.path, req.body)
	for k, v := range req.header {
		hr.Header.Set(k, v)
	}
	c := w.creds[subject]
	switch {
	case bearer != "":
		hr.Header.Set("Authorization", "Bearer "+bearer)
	case c.user != "":
		hr.SetBasicAuth(c.user, c.pass)
	}
	return do(t, httpFrom(freshSource()), hr)
}

// sendBearer plays a Docker client: the request without credentials, the
// token endpoint named by the challenge with the subject's credentials and
// the challenge's scopes, the request again with the token. A refusal of
// the token endpoint is returned as the answer, marked with an
// X-Token-Endpoint header.
func (w *world) sendBearer(t *testing.T, req regRequest, subject string) (response, bool) {
	t.Helper()
	challenge := w.sendRegistry(t, req, sAnonymous, "")
	if challenge.status != http.StatusUnauthorized {
		// Served without credentials (anonymous pull): a client stops here.
		return challenge, true
	}
	realm, params := parseChallenge(challenge.header.Get("WWW-Authenticate"))
	if realm == "" {
		t.Errorf("%s %s: no Bearer challenge: %q", req.method, req.path, challenge.header.Get("WWW-Authenticate"))
		return challenge, false
	}
	q := url.Values{"service": {params["service"]}}
	for _, sc := range strings.Fields(params["scope"]) {
		q.Add("scope", sc)
	}
	tr := newRequest(t, "GET", realm+"?"+q.Encode(), nil)
	if c := w.creds[subject]; c.user != "" {
		tr.SetBasicAuth(c.user, c.pass)
	}
	tok := do(t, httpFrom(freshSource()), tr)
	if tok.status != http.StatusOK {
		tok.header.Set("X-Token-Endpoint", "refused")
		return tok, true
	}
	var body struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(tok.body, &body); err != nil || body.Token == "" {
		t.Fatalf("token endpoint answer %s", tok)
	}
	return w.sendRegistry(t, req, subject, body.Token), true
}

// parseChallenge parses `Bearer realm="...",service="...",scope="..."`.
func parseChallenge(h string) (realm string, params map[string]string) {
	rest, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return "", nil
	}
	params = map[string]string{}
	for rest != "" {
		k, v, ok := strings.Cut(rest, `="`)
		if !ok {
			break
		}
		end := strings.Index(v, `"`)
		if end < 0 {
			break
		}
		params[strings.TrimLeft(k, ", ")] = v[:end]
		rest = v[end+1:]
	}
	return params["realm"], params
}

// TestAnonymousPullRegistry checks a registry created with anonymous pull:
// anonymous callers may pull and list tags, with and without the token
// flow, and nothing else (no catalog, no push, no delete, no base check
// without a token so that docker login still verifies credentials); the
// admin keeps every right. Nothing is written on a refused request.
func TestAnonymousPullRegistry(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOptions{})
	host := srv.createRegistry("pub", true)
	w := &world{srv: srv, reg1: host, creds: map[string]credentials{
		sAnonymous: {},
		sAdmin:     {user: "admin", pass: srv.adminPassword},
	}}
	w.oci = newOCIClient(t, host, "admin", srv.adminPassword)
	m, l := w.oci.pushImage("app", "v1")
	w.appDigest, w.appLayer = m.String(), l.String()
	w.oci.pushImage("samples/web", "v1")
	w.state = newStateReader(t, srv.cfg.Data)
	ops := registryOps()
	served := 0
	for _, mode := range []string{"basic", "bearer"} {
		for _, op := range ops {
			want := unauth
			switch {
			case op.public:
				want = allow
				served++
			case op.name == "GET /v2/" && mode == "bearer":
				want = allow // an anonymous token passes the base check
			}
			w.checkRegistry(t, mode, op, sAnonymous, want)
			adminWant := outcome(op.want[1])
			if mode == "bearer" && op.bearerWant != "" {
				adminWant = outcome(op.bearerWant[1])
			}
			w.checkRegistry(t, mode, op, sAdmin, adminWant)
		}
	}
	if served < 8 {
		t.Fatalf("only %d public operations", served)
	}
	// The anonymous token carries pull only, whatever is asked.
	r := do(t, httpFrom(freshSource()), newRequest(t, "GET", "http://"+host+"/oauth2/token?service="+host+
		"&scope=repository:app:pull,push,delete&scope=registry:catalog:*", nil))
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(r.body, &tok); r.status != 200 || err != nil {
		t.Fatalf("anonymous token: %s", r)
	}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/v2/app/manifests/v1", 200},
		{"POST", "/v2/app/blobs/uploads/", 401},
		{"DELETE", "/v2/app/manifests/" + w.appDigest, 401},
		{"GET", "/v2/_catalog", 401},
	} {
		before := w.state.read(t)
		hr := newRequest(t, tc.method, "http://"+host+tc.path, nil)
		hr.Header.Set("Authorization", "Bearer "+tok.Token)
		hr.Header.Set("Accept", mtManifest)
		if got := do(t, httpFrom(freshSource()), hr); got.status != tc.want {
			t.Errorf("anonymous token: %s %s = %s, want %d", tc.method, tc.path, got, tc.want)
		}
		if d := before.diff(w.state.read(t)); d != "" {
			t.Errorf("anonymous token: %s %s changed the persisted state: %s", tc.method, tc.path, d)
		}
	}
}

// TestUploadSessionsStayInTheirRepository checks that an upload session
// opened in one repository cannot be continued, finished, inspected or
// canceled through another repository or registry, where the caller may
// have push rights that the session's repository does not give.
func TestUploadSessionsStayInTheirRepository(t *testing.T) {
	t.Parallel()
	w := newWorld(t, serverOptions{})
	loc := w.oci.startUpload("app") // /v2/app/blobs/uploads/<id>
	id := loc[strings.LastIndex(loc, "/")+1:]
	b := []byte("smuggled " + testenv.RandomHex(4))
	d := digest.FromBytes(b)
	for _, tc := range []struct {
		host, subject, method, path string
		body                        []byte
	}{
		{w.reg1, sWildcard, "GET", "/v2/samples/web/blobs/uploads/" + id, nil},
		{w.reg1, sWildcard, "PATCH", "/v2/samples/web/blobs/uploads/" + id, b},
		{w.reg1, sWildcard, "PUT", "/v2/samples/web/blobs/uploads/" + id + "?digest=" + d.String(), b},
		{w.reg1, sWildcard, "DELETE", "/v2/samples/web/blobs/uploads/" + id, nil},
		{w.reg2, sOtherReg, "PUT", "/v2/app/blobs/uploads/" + id + "?digest=" + d.String(), b},
		{w.reg2, sOtherReg, "DELETE", "/v2/app/blobs/uploads/" + id, nil},
	} {
		before := w.state.read(t)
		hr := newRequest(t, tc.method, "http://"+tc.host+tc.path, tc.body)
		c := w.creds[tc.subject]
		user := c.user
		if tc.subject == sOtherReg {
			user = "other-token" // its own registry
		}
		hr.SetBasicAuth(user, c.pass)
		r := do(t, httpFrom(freshSource()), hr)
		if r.status != http.StatusNotFound || !strings.Contains(string(r.body), "BLOB_UPLOAD_UNKNOWN") {
			t.Errorf("%s: %s %s = %s, want 404 BLOB_UPLOAD_UNKNOWN", tc.subject, tc.method, tc.path, r)
		}
		if diff := before.diff(w.state.read(t)); diff != "" {
			t.Errorf("%s: %s %s changed the persisted state: %s", tc.subject, tc.method, tc.path, diff)
		}
	}
	// The session still works where it was opened.
	if r := w.oci.do("PUT", loc+"?digest="+d.String(), b, nil); r.status != http.StatusCreated {
		t.Fatalf("finishing the session in app: %s", r)
	}
}

// TestStateFingerprint checks the harness: the fingerprint is stable when
// nothing happens and notices a write.
func TestStateFingerprint(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOptions{})
	host := srv.createRegistry("fp", false)
	st := newStateReader(t, srv.cfg.Data)
	a := st.read(t)
	if len(a.tables) < 20 || a.rows["registries"] != 1 || a.rows["users"] != 1 {
		t.Fatalf("fingerprint sees %d tables, %d registries, %d users", len(a.tables), a.rows["registries"], a.rows["users"])
	}
	if d := a.diff(st.read(t)); d != "" {
		t.Fatalf("fingerprint changed with nothing happening: %s", d)
	}
	newOCIClient(t, host, "admin", srv.adminPassword).pushBlob("x", []byte("a blob"))
	d := a.diff(st.read(t))
	if !strings.Contains(d, "table blobs changed") || !strings.Contains(d, "file blobs/") {
		t.Fatalf("fingerprint missed a blob push: %q", d)
	}
}
