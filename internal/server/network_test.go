package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/testenv"
)

// hostsClient is an HTTP client that reaches every *.gantry.test name on
// 127.0.0.1 (the port kept), as an /etc/hosts entry would, without
// redirects.
func hostsClient() *http.Client {
	var d net.Dialer
	return &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err == nil && strings.HasSuffix(host, ".gantry.test") {
				addr = net.JoinHostPort("127.0.0.1", port)
			}
			return d.DialContext(ctx, network, addr)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// TestRegistryHostnames serves registries by hostname on the shared
// listener (--domain, plain HTTP): login servers in hostname form, routing
// by Host, realms and token services from the configuration and never from
// the Host header, and paths with ".." refused after authentication.
func TestRegistryHostnames(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{network: config.Network{Domain: "gantry.test", RegistryListen: "127.0.0.1:0"}})
	ctx := context.Background()
	admin := s.admin()

	// No --listen: served by hostname only.
	contoso, err := admin.CreateRegistry(ctx, api.CreateRegistryRequest{Name: "contoso"})
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(contoso.LoginServer)
	if err != nil || host != "contoso.gantry.test" || port == "0" {
		t.Fatalf("login server %q, want contoso.gantry.test:<shared port>", contoso.LoginServer)
	}
	// With --listen: its own port too; the login server stays the hostname.
	fabrikam, err := admin.CreateRegistry(ctx, api.CreateRegistryRequest{Name: "fabrikam", Listen: freeAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	if fabrikam.LoginServer != "fabrikam.gantry.test:"+port {
		t.Fatalf("fabrikam's login server %q, want fabrikam.gantry.test:%s", fabrikam.LoginServer, port)
	}
	got, err := admin.ListRegistries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if !r.Running {
			t.Errorf("registry %s is not running", r.Name)
		}
	}

	c := hostsClient()
	get := func(url, hostHeader string, basic bool) response {
		t.Helper()
		req := newRequest(t, "GET", url, nil)
		if hostHeader != "" {
			req.Host = hostHeader
		}
		if basic {
			req.SetBasicAuth("admin", s.adminPassword)
		}
		return do(t, c, req)
	}
	base := "http://contoso.gantry.test:" + port

	// The challenge names the hostname's token endpoint; the port in Host
	// does not matter for routing, and a foreign Host reaches no registry.
	r := get(base+"/v2/", "", false)
	wantRealm := `Bearer realm="http://contoso.gantry.test:` + port + `/oauth2/token",service="contoso.gantry.test:` + port + `"`
	if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != wantRealm {
		t.Errorf("GET /v2/ by hostname = %d %q, want 401 %q", r.status, r.header.Get("WWW-Authenticate"), wantRealm)
	}
	if r := get(base+"/v2/", "contoso.gantry.test", false); r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != wantRealm {
		t.Errorf("GET /v2/ with Host without port = %d %q, want 401 %q", r.status, r.header.Get("WWW-Authenticate"), wantRealm)
	}
	if r := get(base+"/v2/", "attacker.example:"+port, false); r.status != http.StatusNotFound || strings.Contains(r.header.Get("WWW-Authenticate"), "attacker") {
		t.Errorf("GET /v2/ with Host attacker.example = %d %q, want 404 and no challenge naming it", r.status, r.header.Get("WWW-Authenticate"))
	}
	if r := get(base+"/v2/", "nosuch.gantry.test", false); r.status != http.StatusNotFound || !strings.Contains(string(r.body), `no registry is served as "nosuch.gantry.test"`) {
		t.Errorf("GET /v2/ of an unknown registry = %d %s, want 404 naming it", r.status, r.body)
	}
	// fabrikam's own port: its realm is that port's configured address,
	// whatever the Host header says.
	own := "127.0.0.1:" + strings.TrimPrefix(s.ownPort(t, "fabrikam"), ":")
	r = get("http://"+own+"/v2/", "attacker.example", false)
	if want := `Bearer realm="http://` + own + `/oauth2/token",service="` + own + `"`; r.header.Get("WWW-Authenticate") != want {
		t.Errorf("challenge on fabrikam's port with Host attacker.example = %q, want %q", r.header.Get("WWW-Authenticate"), want)
	}

	// Tokens: for the registry's own services only.
	for _, tt := range []struct {
		service string
		status  int
	}{
		{"contoso.gantry.test:" + port, http.StatusOK},
		{"fabrikam.gantry.test:" + port, http.StatusBadRequest},
		{own, http.StatusBadRequest},
	} {
		if r := get(base+"/oauth2/token?scope=repository:app:pull&service="+tt.service, "", true); r.status != tt.status {
			t.Errorf("contoso's token endpoint for service %q = %d %s, want %d", tt.service, r.status, r.body, tt.status)
		}
	}
	if r := get("http://"+own+"/oauth2/token?scope=repository:app:pull&service=fabrikam.gantry.test:"+port, "", true); r.status != http.StatusOK {
		t.Errorf("fabrikam's own port: token for its hostname = %d %s, want 200", r.status, r.body)
	}

	// ".." is refused after authentication, never redirected before it.
	for _, p := range []string{"/v2/../v2/app/manifests/1", "/v2/app/../other/manifests/1", "/v2/./app/tags/list"} {
		if r := get(base+p, "", false); r.status != http.StatusUnauthorized {
			t.Errorf("anonymous GET %s = %d (Location %q), want 401", p, r.status, r.header.Get("Location"))
		}
		if r := get(base+p, "", true); r.status < 400 || r.status >= 500 || r.header.Get("Location") != "" {
			t.Errorf("admin GET %s = %d (Location %q), want a 4xx refusal", p, r.status, r.header.Get("Location"))
		}
	}

	// Deleting a registry stops its hostname.
	if err := admin.DeleteRegistry(ctx, "contoso"); err != nil {
		t.Fatal(err)
	}
	if r := get(base+"/v2/", "", false); r.status != http.StatusNotFound {
		t.Errorf("GET /v2/ of a deleted registry = %d, want 404", r.status)
	}
}

// freeAddr is a 127.0.0.1 address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// ownPort is the port of a registry's own listener, from the server log.
func (s *testServer) ownPort(t *testing.T, name string) string {
	t.Helper()
	for _, line := range strings.Split(s.log.String(), "\n") {
		if strings.Contains(line, "registry serving") && strings.Contains(line, "registry="+name) && strings.Contains(line, "listen=") {
			f := line[strings.Index(line, "listen=")+len("listen="):]
			f, _, _ = strings.Cut(f, " ")
			_, p, err := net.SplitHostPort(f)
			if err == nil {
				return p
			}
		}
	}
	t.Fatalf("no listener of %s in the log", name)
	return ""
}

// TestACMEHostnames starts a server with ACME against Pebble and registry
// hostnames: the control host (from --external-url) and a registry's
// hostname get certificates that a client verifying against Pebble's root
// accepts.
func TestACMEHostnames(t *testing.T) {
	t.Parallel()
	p := testenv.StartPebble(t)
	ext := "https://ctl.gantry.test:8443"
	s := startServer(t, serverOptions{network: config.Network{
		TLS:    config.TLS{ACMEEmail: "ops@gantry.test", ACMEDirectory: p.Directory, ACMECA: p.CAFile},
		Domain: "gantry.test", RegistryListen: "127.0.0.1:0", ExternalURL: ext,
	}})
	root := p.Root(t)
	// handshake dials addr as name, verifying against Pebble's root, until
	// the certificate is there (ACME runs in the background).
	handshake := func(addr, name string) *x509.Certificate {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: root, ServerName: name})
			if err == nil {
				defer conn.Close()
				return conn.ConnectionState().PeerCertificates[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("TLS to %s as %s: %v", addr, name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	leaf := handshake(s.addr, "ctl.gantry.test")
	if leaf.Subject.CommonName != "ctl.gantry.test" && !slices.Contains(leaf.DNSNames, "ctl.gantry.test") {
		t.Errorf("control certificate for %v", leaf.DNSNames)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: root, ServerName: "ctl.gantry.test"}}
	admin, err := client.New("https://"+s.addr, client.WithHTTPClient(&http.Client{Transport: tr}), client.WithBasicAuth("admin", s.adminPassword))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := admin.CreateRegistry(context.Background(), api.CreateRegistryRequest{Name: "contoso"})
	if err != nil {
		t.Fatal(err)
	}
	// --external-url's port applies to the hostnames.
	if reg.LoginServer != "contoso.gantry.test:8443" {
		t.Errorf("login server %q, want contoso.gantry.test:8443", reg.LoginServer)
	}
	shared := "127.0.0.1:" + s.sharedPort(t)
	leaf = handshake(shared, "contoso.gantry.test")
	if !slices.Contains(leaf.DNSNames, "contoso.gantry.test") {
		t.Errorf("registry certificate for %v", leaf.DNSNames)
	}
	// A name no registry has is refused at the handshake.
	if conn, err := tls.Dial("tcp", shared, &tls.Config{RootCAs: root, ServerName: "nosuch.gantry.test"}); err == nil {
		conn.Close()
		t.Error("TLS as nosuch.gantry.test: a certificate was served")
	}
}

// sharedPort is the port of the shared registry listener, from the log.
func (s *testServer) sharedPort(t *testing.T) string {
	t.Helper()
	for _, line := range strings.Split(s.log.String(), "\n") {
		if strings.Contains(line, "registries serving by hostname") {
			f := line[strings.Index(line, "listen=")+len("listen="):]
			f, _, _ = strings.Cut(f, " ")
			if _, p, err := net.SplitHostPort(f); err == nil {
				return p
			}
		}
	}
	t.Fatal("no shared registry listener in the log")
	return ""
}
