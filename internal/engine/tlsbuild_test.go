package engine_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/testenv"
)

// TestBuildFromRegistryTrustedSinceStart: a registry whose CA the engine
// was given after dockerd started (/etc/docker/certs.d/HOST:PORT, as gantry
// demo --tls and the TLS tests do) is trusted by dockerd's pulls, which
// read the directory at each connection, but not by dockerd's BuildKit,
// which reads it when dockerd starts. A build that must ask that registry
// (--pull) then falls back to the classic builder, saying why, and builds.
func TestBuildFromRegistryTrustedSinceStart(t *testing.T) {
	e := newEnv(t, []string{"publictls", "contoso"})
	if dockertest.IsPodman(e.d) {
		t.Skip("Podman builds with its classic builder only")
	}
	bb := busybox(t, e.d)
	name := "tlsbuild-" + testenv.RandomHex(4) + ".gantry.test"
	testenv.Hosts(t, name)
	ca := testenv.NewCA(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	// The TLS front of the anonymous-pull registry publictls.
	backend, _ := url.Parse("http://" + e.hosts["publictls"])
	front := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(backend))
	front.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key}}}
	front.StartTLS()
	t.Cleanup(front.Close)
	host := name + ":" + strings.Split(front.Listener.Addr().String(), ":")[1]
	testenv.DockerTrust(t, host, ca.PEM())

	base := e.hosts["publictls"] + "/base:" + randomID()
	if err := e.d.TagImage(t.Context(), bb, base); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.d.RemoveImage(context.Background(), base, true) })
	if _, err := e.d.PushImage(t.Context(), base, e.dockerAuth("publictls"), nil); err != nil {
		t.Fatal(err)
	}
	from := host + "/" + strings.SplitN(base, "/", 2)[1]
	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "Dockerfile"), []byte("FROM "+from+"\nRUN echo built\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	j, log := e.job("contoso", "version: v1.1.0\nsteps:\n  - id: build\n    build: --pull -t {{.Run.Registry}}/tlsbuild:{{.Run.ID}} .\n", ws, nil)
	_, err = e.execute(j)
	t.Cleanup(func() {
		_ = e.d.RemoveImage(context.Background(), e.hosts["contoso"]+"/tlsbuild:"+j.RunID, true)
		_ = e.d.RemoveImage(context.Background(), from, true)
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	checkLines(t, log.String(), `.*Step ID: build: BuildKit does not trust a registry's certificate .*; building with the classic builder`)
}
