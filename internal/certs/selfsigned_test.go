package certs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/testenv"
)

// serve serves TLS handshakes with src on 127.0.0.1 until the test ends
// and returns the address.
func serve(t *testing.T, src Source) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", TLSConfig(src))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					_, _ = io.Copy(io.Discard, c)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// dial handshakes with addr as serverName, verifying against roots, and
// returns the leaf served.
func dial(addr, serverName string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: serverName, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

func pool(t *testing.T, pemCerts []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemCerts) {
		t.Fatalf("no certificate in %q", pemCerts)
	}
	return p
}

func TestSelfSignedCA(t *testing.T) {
	t.Parallel()
	keys := filepath.Join(t.TempDir(), "keys")
	if _, err := ReadCA(keys); !errors.Is(err, ErrNoCA) || !strings.Contains(err.Error(), filepath.Join(keys, CACertFile)) {
		t.Errorf("ReadCA before the first start: %v", err)
	}
	s, err := NewSelfSigned(keys, []string{"gantry.test"})
	if err != nil {
		t.Fatal(err)
	}
	for name, perm := range map[string]os.FileMode{".": 0o700, CAKeyFile: 0o600, CACertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(keys, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != perm {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), perm)
		}
	}
	entries, _ := os.ReadDir(keys)
	if len(entries) != 2 {
		t.Errorf("keys directory holds %d entries, want the 2 CA files (no temporary file left)", len(entries))
	}
	ca := s.CAPEM()
	c, err := x509.ParseCertificate(mustDecode(t, ca))
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsCA || c.Subject.CommonName != "Gantry local CA" || c.NotAfter.Before(time.Now().Add(9*365*24*time.Hour)) {
		t.Errorf("CA certificate: IsCA %v, CN %q, NotAfter %v", c.IsCA, c.Subject.CommonName, c.NotAfter)
	}
	if !s.Expiry().Equal(c.NotAfter) {
		t.Errorf("Expiry() = %v, want the CA's %v", s.Expiry(), c.NotAfter)
	}

	// A second start reuses it; ReadCA reads it without a source.
	again, err := NewSelfSigned(keys, []string{"other.test"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.CAPEM(), ca) {
		t.Error("a second start made another CA")
	}
	if got, err := ReadCA(keys); err != nil || !bytes.Equal(got, ca) {
		t.Errorf("ReadCA = %v, want the CA", err)
	}

	// A key left without its certificate (a first start stopped between
	// the two writes) gets a certificate; a certificate without its key is
	// an error.
	if err := os.Remove(filepath.Join(keys, CACertFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSelfSigned(keys, []string{"gantry.test"}); err != nil {
		t.Fatalf("CA key without certificate: %v", err)
	}
	if err := os.Remove(filepath.Join(keys, CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSelfSigned(keys, []string{"gantry.test"}); err == nil || !strings.Contains(err.Error(), "has no key") {
		t.Errorf("CA certificate without key: %v", err)
	}
}

func mustDecode(t *testing.T, pemBytes []byte) []byte {
	t.Helper()
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		t.Fatalf("not PEM: %q", pemBytes)
	}
	return blk.Bytes
}

func TestSelfSignedNames(t *testing.T) {
	t.Parallel()
	s, err := NewSelfSigned(t.TempDir(), []string{"Gantry.Test", "127.0.0.1", "*.gantry.test"},
		WithAllow(func(n string) bool { return n == "policy.test" }))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s)
	roots := pool(t, s.CAPEM())
	for _, c := range []struct {
		serverName string
		ok         bool
	}{
		{"gantry.test", true},
		{"GANTRY.TEST", true},
		{"contoso.gantry.test", true},
		{"127.0.0.1", true}, // no SNI: the default leaf, with the IP SAN
		{"policy.test", true},
		{"a.b.gantry.test", false},
		{"evil.test", false},
		{"gantry.test.evil", false},
		{"late.test", false},
	} {
		leaf, err := dial(addr, c.serverName, roots)
		switch {
		case c.ok && err != nil:
			t.Errorf("%s: %v", c.serverName, err)
		case !c.ok && err == nil:
			t.Errorf("%s: served %v, want the handshake refused", c.serverName, leaf.DNSNames)
		case c.ok && leaf.NotAfter.Sub(leaf.NotBefore) > 91*24*time.Hour:
			t.Errorf("%s: a leaf valid %v", c.serverName, leaf.NotAfter.Sub(leaf.NotBefore))
		}
	}
	_, err = s.GetCertificate(&tls.ClientHelloInfo{ServerName: "evil.test"})
	if !errors.Is(err, ErrNotAllowed) {
		t.Errorf("GetCertificate(evil.test): %v", err)
	}
	// The default leaf covers the hostnames and IPs given.
	leaf, err := dial(addr, "127.0.0.1", roots)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(leaf.DNSNames, ",") != "gantry.test" || len(leaf.IPAddresses) != 1 {
		t.Errorf("default leaf: DNS %v, IPs %v", leaf.DNSNames, leaf.IPAddresses)
	}

	// A name managed later is served.
	if err := s.Manage(context.Background(), "late.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(addr, "late.test", roots); err != nil {
		t.Errorf("late.test after Manage: %v", err)
	}
	if err := s.Manage(context.Background(), "bad name"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Manage(bad name): %v", err)
	}
	if _, err := NewSelfSigned(t.TempDir(), []string{"a.*.test"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewSelfSigned(a.*.test): %v", err)
	}
}

func TestSelfSignedRenewal(t *testing.T) {
	t.Parallel()
	start := time.Now()
	clock := testenv.NewClock(start)
	s, err := NewSelfSigned(t.TempDir(), []string{"gantry.test"}, WithClock(clock.Now), WithLeafLifetime(90*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	first := serial(t, s, "gantry.test")
	clock.Advance(59 * 24 * time.Hour)
	if got := serial(t, s, "gantry.test"); got != first {
		t.Errorf("renewed after 59 of 90 days")
	}
	clock.Advance(2 * 24 * time.Hour)
	renewed := serial(t, s, "gantry.test")
	if renewed == first {
		t.Fatal("not renewed after 61 of 90 days")
	}
	c, _ := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "gantry.test"})
	if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: "gantry.test", Roots: pool(t, s.CAPEM()), CurrentTime: clock.Now()}); err != nil {
		t.Errorf("renewed leaf: %v", err)
	}
	if want := clock.Now().Add(90 * 24 * time.Hour); c.Leaf.NotAfter.Sub(want).Abs() > time.Second {
		t.Errorf("renewed leaf expires %v, want %v", c.Leaf.NotAfter, want)
	}
}

func TestFingerprint(t *testing.T) {
	t.Parallel()
	s, err := NewSelfSigned(t.TempDir(), []string{"gantry.test"})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(mustDecode(t, s.CAPEM()))
	got := Fingerprint(s.CAPEM())
	if strings.ReplaceAll(got, ":", "") != strings.ToUpper(hex.EncodeToString(sum[:])) || len(got) != 95 {
		t.Errorf("Fingerprint = %q", got)
	}
	if Fingerprint([]byte("nothing")) != "" {
		t.Error("a fingerprint of no certificate")
	}
}
