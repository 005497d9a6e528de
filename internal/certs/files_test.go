package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/testenv"
)

// pair issues a certificate for gantry.test (and 127.0.0.1) from ca into
// a new directory and returns its cert.pem and key.pem.
func pair(t *testing.T, ca *testenv.CA) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	ca.Issue(t, "gantry.test", x509.ExtKeyUsageServerAuth, dir)
	return filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
}

// replace writes data to path atomically (as a deploy tool would).
func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serial is the serial number of the certificate src serves for name.
func serial(t *testing.T, src Source, name string) string {
	t.Helper()
	c, err := src.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
	if err != nil {
		t.Fatalf("GetCertificate(%q): %v", name, err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.Text(16)
}

func TestNewFiles(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	good, goodKey := pair(t, ca)
	other, otherKey := pair(t, ca)
	dir := t.TempDir()
	chain := filepath.Join(dir, "chain.pem")
	if err := os.WriteFile(chain, append(read(t, good), ca.PEM()...), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	now := time.Now()
	for _, c := range []struct {
		name       string
		cert, key  string
		now        time.Time
		wantErr    string // substrings, "|"-separated
		wantChainN int
	}{
		{name: "good pair", cert: good, key: goodKey, wantChainN: 1},
		{name: "chain", cert: chain, key: goodKey, wantChainN: 2},
		{name: "mismatch", cert: good, key: otherKey, wantErr: "certificate " + good + " does not match key " + otherKey},
		{name: "mismatch other way", cert: other, key: goodKey, wantErr: "certificate " + other + " does not match key " + goodKey},
		{name: "expired", cert: good, key: goodKey, now: now.Add(2 * time.Hour), wantErr: "certificate " + good + " expired on " + strconv.Itoa(now.UTC().Add(time.Hour).Year())},
		{name: "not yet valid", cert: good, key: goodKey, now: now.Add(-2 * time.Hour), wantErr: "certificate " + good + " is not valid before "},
		{name: "missing certificate", cert: missing, key: goodKey, wantErr: "certificate " + missing + ": no such file or directory"},
		{name: "missing key", cert: good, key: missing, wantErr: "key " + missing + ": no such file or directory"},
		{name: "certificate not PEM", cert: notPEM, key: goodKey, wantErr: "certificate " + notPEM + " is not PEM"},
		{name: "key not PEM", cert: good, key: notPEM, wantErr: "key " + notPEM + " is not PEM"},
		{name: "no certificate in the file", cert: goodKey, key: goodKey, wantErr: "certificate " + goodKey + " holds no CERTIFICATE block"},
		{name: "no key in the file", cert: good, key: good, wantErr: "key " + good + " holds no PRIVATE KEY block"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			opts := []Option{WithPollInterval(0)}
			if !c.now.IsZero() {
				opts = append(opts, WithClock(func() time.Time { return c.now }))
			}
			f, err := NewFiles(c.cert, c.key, opts...)
			if c.wantErr != "" {
				if err == nil {
					f.Close()
					t.Fatal("no error")
				}
				if !strings.Contains(err.Error(), c.wantErr) {
					t.Errorf("error %q, want it to contain %q", err, c.wantErr)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("error %q does not match ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, _ := f.GetCertificate(&tls.ClientHelloInfo{})
			if len(got.Certificate) != c.wantChainN {
				t.Errorf("chain of %d certificates, want %d", len(got.Certificate), c.wantChainN)
			}
			infos := f.Certificates()
			if len(infos) != 1 || infos[0].Names[0] != "127.0.0.1" || !f.Expiry().Equal(got.Leaf.NotAfter) {
				t.Errorf("Certificates() = %+v, Expiry() = %v", infos, f.Expiry())
			}
		})
	}
}

func TestFilesReloadOnChange(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	certFile, keyFile := pair(t, ca)
	var logs testenv.Buffer
	f, err := NewFiles(certFile, keyFile, WithPollInterval(10*time.Millisecond),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	first := serial(t, f, "")

	// A new pair is picked up.
	newCert, newKey := pair(t, ca)
	replace(t, keyFile, read(t, newKey))
	replace(t, certFile, read(t, newCert))
	second := waitSerial(t, f, first)

	// A bad rewrite keeps the certificate in use and is logged as an error.
	replace(t, certFile, []byte("not a certificate\n"))
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), certFile+" is not PEM") {
		if time.Now().After(deadline) {
			t.Fatalf("no error saying what is wrong logged; logs:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := serial(t, f, ""); got != second {
		t.Errorf("serving %s after a bad rewrite, want the previous %s", got, second)
	}
	if err := f.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), certFile) {
		t.Errorf("Reload of a bad file: %v", err)
	}
	if got := serial(t, f, ""); got != second {
		t.Errorf("serving %s after a failed Reload, want the previous %s", got, second)
	}

	// Fixed: picked up again.
	third, _ := pair(t, ca)
	newKey2 := filepath.Join(filepath.Dir(third), "key.pem")
	replace(t, keyFile, read(t, newKey2))
	replace(t, certFile, read(t, third))
	waitSerial(t, f, second)
}

// waitSerial waits until f serves another certificate than old, and
// returns its serial.
func waitSerial(t *testing.T, f *Files, old string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if s := serial(t, f, ""); s != old {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatal("the changed files were not reloaded")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFilesReload(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	certFile, keyFile := pair(t, ca)
	f, err := NewFiles(certFile, keyFile, WithPollInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	first := serial(t, f, "")
	newCert, newKey := pair(t, ca)
	replace(t, certFile, read(t, newCert))
	// Half-replaced: the new certificate with the old key.
	if err := f.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "does not match key") {
		t.Fatalf("Reload with a mismatched pair: %v", err)
	}
	if got := serial(t, f, ""); got != first {
		t.Fatalf("serving %s after a failed reload, want %s", got, first)
	}
	replace(t, keyFile, read(t, newKey))
	if err := f.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := certSerial(t, read(t, newCert))
	if got := serial(t, f, ""); got != want {
		t.Errorf("serving %s after Reload, want %s", got, want)
	}
}

func certSerial(t *testing.T, certPEM []byte) string {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.Text(16)
}
