package importer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/remote"
	"github.com/gantryhq/gantry/internal/testenv"
)

// privateCA is a certificate authority of the test's own, like a
// company's internal CA.
type privateCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newPrivateCA(t *testing.T) *privateCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gantry test private CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &privateCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// serverCert issues a certificate for 127.0.0.1.
func (ca *privateCA) serverCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key}
}

// TestImportPrivateCA: a registry served over HTTPS with a certificate
// from a private CA is refused, with a message that says so and how to fix
// it, until the CA bundle is configured; then the import succeeds.
func TestImportPrivateCA(t *testing.T) {
	t.Parallel()
	up := testenv.StartDistribution(t, true)
	img := index("private-ca", 8<<10)
	pushUp(t, up, "library/app", img, "1")

	ca := newPrivateCA(t)
	target, _ := url.Parse(up.URL())
	front := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(target))
	front.TLS = &tls.Config{Certificates: []tls.Certificate{ca.serverCert(t)}, MinVersion: tls.VersionTLS12}
	front.StartTLS()
	t.Cleanup(front.Close)
	source := "https://" + front.Listener.Addr().String() + "/library/app:1"
	req := ImportRequest{Source: source, Username: up.Username, Password: up.Password}

	// Without the CA: refused, naming the certificate problem and the fix.
	e := newEnv(t)
	e.registry(t, "contoso", nil)
	_, err := e.im.Import(context.Background(), e.admin, "contoso", req, nil)
	if !errors.Is(err, remote.ErrUntrusted) || !strings.Contains(err.Error(), "certificate") || !strings.Contains(err.Error(), "--upstream-ca") {
		t.Fatalf("import from a private-CA registry without its CA: %v", err)
	}
	t.Logf("without the CA: %v", err)
	if strings.Contains(err.Error(), up.Password) {
		t.Fatal("the error carries the password")
	}

	// With the CA bundle (as gantry server --upstream-ca loads it).
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bundle, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	roots, err := remote.LoadCAs(bundle)
	if err != nil {
		t.Fatal(err)
	}
	e = newEnv(t, WithRemote(remote.New(remote.WithRootCAs(roots))))
	e.registry(t, "contoso", nil)
	res, err := e.im.Import(context.Background(), e.admin, "contoso", req, nil)
	if err != nil {
		t.Fatalf("import with the CA configured: %v", err)
	}
	if res.Digest != img.root().d {
		t.Fatalf("imported %s, want %s", res.Digest, img.root().d)
	}
	checkStored(t, e.st, "contoso", "library/app", img)

	// A bundle without a certificate is an error naming the file.
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.LoadCAs(junk); err == nil || !strings.Contains(err.Error(), junk) {
		t.Fatalf("LoadCAs(junk) = %v", err)
	}
}
