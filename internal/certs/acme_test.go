package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/testenv"
)

// pebble is a Pebble ACME server of a test's own on 127.0.0.1.
type pebble struct {
	directory string         // the ACME directory URL
	trust     *x509.CertPool // trusts Pebble's own HTTPS
	mgmt      string         // the management interface's base URL
}

// freePort returns a TCP port free on 127.0.0.1 now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startPebble runs Pebble (from .tools/bin) on free 127.0.0.1 ports,
// validating every challenge without checking it, until the test ends.
func startPebble(t *testing.T) *pebble {
	t.Helper()
	bin := testenv.Tool(t, "pebble")
	dir := t.TempDir()
	ca := testenv.NewCA(t)
	ca.Issue(t, "pebble", x509.ExtKeyUsageServerAuth, dir) // dir/cert.pem, dir/key.pem for 127.0.0.1
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	mgmt := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        mgmt,
		"certificate":                    filepath.Join(dir, "cert.pem"),
		"privateKey":                     filepath.Join(dir, "key.pem"),
		"httpPort":                       freePort(t),
		"tlsPort":                        freePort(t),
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
	var out testenv.Buffer
	cmd := exec.Command(bin, "-config", cfgFile, "-dnsserver", "127.0.0.1:"+strconv.Itoa(freePort(t)))
	cmd.Env = append(os.Environ(),
		"PEBBLE_VA_ALWAYS_VALID=1", // no challenge is checked: no DNS, no dial back
		"PEBBLE_VA_NOSLEEP=1",
		"PEBBLE_WFE_NONCEREJECT=0", // no random badNonce
		"PEBBLE_AUTHZREUSE=0",      // every order asks for its challenges anew
	)
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
	p := &pebble{directory: "https://" + listen + "/dir", trust: pool(t, ca.PEM()), mgmt: "https://" + mgmt}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := p.client().Get(p.directory)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble did not answer at %s: %v\n%s", p.directory, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *pebble) client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.trust}}}
}

// root returns the root Pebble's certificates chain to, from its
// management interface.
func (p *pebble) root(t *testing.T) *x509.CertPool {
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
	return pool(t, b)
}

func TestACME(t *testing.T) {
	t.Parallel()
	p := startPebble(t)
	var logs testenv.Buffer
	storage := filepath.Join(t.TempDir(), "acme")
	a, err := NewACME(storage, "ops@gantry.test",
		WithDirectory(p.directory), WithRootCAs(p.trust),
		WithChallengeListener("127.0.0.1", freePort(t), freePort(t)),
		WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Close()
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := a.Manage(ctx, "gantry.test", "contoso.gantry.test"); err != nil {
		t.Fatal(err)
	}
	addr := serve(t, a)
	roots := p.root(t)

	first, err := dial(addr, "contoso.gantry.test", roots)
	if err != nil {
		t.Fatalf("handshake for contoso.gantry.test against Pebble's root: %v", err)
	}
	if strings.Join(first.DNSNames, ",") != "contoso.gantry.test" {
		t.Errorf("served a certificate for %v", first.DNSNames)
	}
	if _, err := dial(addr, "gantry.test", roots); err != nil {
		t.Errorf("handshake for gantry.test: %v", err)
	}
	// No server name: the first name's certificate.
	noSNI, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := noSNI.ConnectionState().PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != "gantry.test" {
		t.Errorf("without a server name: served %v, want gantry.test", got)
	}
	noSNI.Close()
	// A name not managed gets no certificate (none is obtained for it).
	if _, err := dial(addr, "other.test", roots); err == nil {
		t.Error("a handshake for an unmanaged name succeeded")
	}
	if _, err := a.GetCertificate(&tls.ClientHelloInfo{ServerName: "other.test"}); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("GetCertificate(other.test): %v", err)
	}
	if infos := a.Certificates(); len(infos) != 2 || a.Expiry().IsZero() {
		t.Errorf("Certificates() = %+v", infos)
	}

	// Renewal: a new certificate, served from the next handshake on, still
	// chaining to Pebble's root.
	if err := a.Renew(ctx, "contoso.gantry.test"); err != nil {
		t.Fatal(err)
	}
	renewed, err := dial(addr, "contoso.gantry.test", roots)
	if err != nil {
		t.Fatalf("handshake after renewal: %v", err)
	}
	if renewed.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Errorf("serving serial %x after renewal, the one before it", renewed.SerialNumber)
	}
	if infos := a.Certificates(); len(infos) != 2 {
		t.Errorf("after renewal: Certificates() = %+v", infos)
	}

	// A second source on the same storage (a restart) reuses the stored
	// certificate.
	b, err := NewACME(storage, "ops@gantry.test", WithDirectory(p.directory), WithRootCAs(p.trust))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Manage(ctx, "contoso.gantry.test"); err != nil {
		t.Fatalf("restart on the same storage: %v", err)
	}
	if s := serial(t, b, "contoso.gantry.test"); s != renewed.SerialNumber.Text(16) {
		t.Errorf("restart serves %s, want the stored %x", s, renewed.SerialNumber)
	}
}
