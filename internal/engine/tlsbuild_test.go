package engine_test

import (
	"context"
	"crypto/tls"
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
// read the directory at each connection (the test pulls from it), but not
// by dockerd's BuildKit, which reads it when dockerd starts. A build that
// must ask that registry (--pull) then falls back to the classic builder,
// saying why, and builds.
func TestBuildFromRegistryTrustedSinceStart(t *testing.T) {
	e := newEnv(t, []string{"publictls", "contoso"})
	if dockertest.IsPodman(e.d) {
		t.Skip("Podman builds with its classic builder only")
	}
	bb := busybox(t, e.d)
	name := "tlsbuild-" + testenv.RandomHex(4) + ".gantry.test"
	testenv.Hosts(t, name)
	ca := testenv.NewCA(t)
	// The TLS front of the anonymous-pull registry publictls.
	backend, _ := url.Parse("http://" + e.hosts["publictls"])
	front := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(backend))
	front.TLS = &tls.Config{Certificates: []tls.Certificate{ca.IssueFor(t, name)}}
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
	t.Cleanup(func() { _ = e.d.RemoveImage(context.Background(), from, true) })
	// dockerd's pulls trust the registry. dockerd (a Go program) sees a
	// new /etc/hosts entry within five seconds (the Go resolver's cache of
	// the file): until then the name does not resolve.
	var err error
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		if err = e.d.PullImage(t.Context(), from, nil, nil); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("dockerd pulling %s: %v", from, err)
	}
	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "Dockerfile"), []byte("FROM "+from+"\nRUN echo built\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	j, log := e.job("contoso", "version: v1.1.0\nsteps:\n  - id: build\n    build: --pull -t {{.Run.Registry}}/tlsbuild:{{.Run.ID}} .\n", ws, nil)
	_, err = e.execute(j)
	t.Cleanup(func() { _ = e.d.RemoveImage(context.Background(), e.hosts["contoso"]+"/tlsbuild:"+j.RunID, true) })
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	checkLines(t, log.String(), `.*Step ID: build: BuildKit does not trust a registry's certificate .*; building with the classic builder`)
}
