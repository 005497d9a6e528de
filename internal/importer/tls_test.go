package importer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/remote"
	"github.com/gantryhq/gantry/internal/testenv"
)

// TestImportPrivateCA: a registry served over HTTPS with a certificate
// from a private CA is refused, with a message that says so and how to fix
// it, until the CA bundle is configured; then the import succeeds.
func TestImportPrivateCA(t *testing.T) {
	t.Parallel()
	up := testenv.StartDistribution(t, true)
	img := index("private-ca", 8<<10)
	pushUp(t, up, "library/app", img, "1")

	ca := testenv.NewCA(t)
	target, _ := url.Parse(up.URL())
	front := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(target))
	front.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "127.0.0.1", x509.ExtKeyUsageServerAuth, "")}, MinVersion: tls.VersionTLS12}
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
	if err := os.WriteFile(bundle, ca.PEM(), 0o600); err != nil {
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
