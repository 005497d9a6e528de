package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Pebble is a Pebble ACME server (github.com/letsencrypt/pebble, from
// .tools/bin) of a test's own on 127.0.0.1. By default it takes every
// challenge as passed without checking it (no DNS, no dial back); with
// ValidateChallenges it checks them.
type Pebble struct {
	// Directory is the ACME directory URL.
	Directory string
	// CAFile is a PEM file trusting Pebble's own HTTPS (its directory).
	CAFile string
	// Trust is CAFile as a pool.
	Trust *x509.CertPool
	// HTTPPort and TLSPort are where Pebble dials back on 127.0.0.1 to
	// check HTTP-01 and TLS-ALPN-01 challenges (with ValidateChallenges).
	HTTPPort, TLSPort int
	mgmt              string
}

// PebbleOption configures StartPebble.
type PebbleOption func(*pebbleOptions)

type pebbleOptions struct{ validate bool }

// ValidateChallenges makes Pebble check every challenge, as a real CA
// does: it resolves the names through a DNS server of the test's own,
// which answers 127.0.0.1 for every name, and dials back to HTTPPort
// (HTTP-01) and TLSPort (TLS-ALPN-01), where the ACME client under test
// must answer.
func ValidateChallenges() PebbleOption { return func(o *pebbleOptions) { o.validate = true } }

// startDNS serves DNS over UDP and TCP on one 127.0.0.1 port until t ends:
// an A record of 127.0.0.1 for every name, nothing else (no CAA: issuance
// is allowed).
func startDNS(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, qq := range q.Question {
			if qq.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IPv4(127, 0, 0, 1)})
			}
		}
		_ = w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}} {
		go func() { _ = srv.ActivateAndServe() }()
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return pc.LocalAddr().String()
}

// FreePort returns a TCP port free on 127.0.0.1 now.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// StartPebble runs Pebble on free 127.0.0.1 ports until t ends (the
// missing-tool rule applies: Tool).
func StartPebble(t testing.TB, opts ...PebbleOption) *Pebble {
	t.Helper()
	var o pebbleOptions
	for _, opt := range opts {
		opt(&o)
	}
	httpPort, tlsPort := FreePort(t), FreePort(t)
	bin := Tool(t, "pebble")
	dir := t.TempDir()
	ca := NewCA(t)
	ca.Issue(t, "pebble", x509.ExtKeyUsageServerAuth, dir) // dir/cert.pem, dir/key.pem for 127.0.0.1
	caFile := filepath.Join(dir, "pebble-ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := "127.0.0.1:" + strconv.Itoa(FreePort(t))
	mgmt := "127.0.0.1:" + strconv.Itoa(FreePort(t))
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        mgmt,
		"certificate":                    filepath.Join(dir, "cert.pem"),
		"privateKey":                     filepath.Join(dir, "key.pem"),
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
	}}
	b, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var out Buffer
	dnsServer := "127.0.0.1:" + strconv.Itoa(FreePort(t)) // nobody: never asked
	env := append(os.Environ(),
		"PEBBLE_VA_NOSLEEP=1",
		"PEBBLE_WFE_NONCEREJECT=0", // no random badNonce
		"PEBBLE_AUTHZREUSE=0",      // every order asks for its challenges anew
	)
	if o.validate {
		dnsServer = startDNS(t)
	} else {
		env = append(env, "PEBBLE_VA_ALWAYS_VALID=1") // no challenge is checked: no DNS, no dial back
	}
	cmd := exec.Command(bin, "-config", cfgFile, "-dnsserver", dnsServer)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("pebble output:\n%s", out.String())
		}
	})
	trust := x509.NewCertPool()
	trust.AppendCertsFromPEM(ca.PEM())
	p := &Pebble{Directory: "https://" + listen + "/dir", CAFile: caFile, Trust: trust, HTTPPort: httpPort, TLSPort: tlsPort, mgmt: "https://" + mgmt}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := p.client().Get(p.Directory)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble did not answer at %s: %v\n%s", p.Directory, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *Pebble) client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Trust}}}
}

// Root returns the root Pebble's certificates chain to, from its
// management interface.
func (p *Pebble) Root(t testing.TB) *x509.CertPool {
	t.Helper()
	resp, err := p.client().Get(p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble root: %d %v", resp.StatusCode, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble root: no certificate in %q", b)
	}
	return pool
}
