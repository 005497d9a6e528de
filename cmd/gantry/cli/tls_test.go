package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/testenv"
)

// startTLSServer runs `gantry server --tls self-signed --domain gantry.test`
// in this process, its registries on a shared listener, and returns the
// control address, the shared port and the data directory. It stops when
// t ends.
func startTLSServer(t *testing.T, extra ...string) (ctl, port, data string) {
	t.Helper()
	dir := t.TempDir()
	data = filepath.Join(dir, "data")
	ctl = freeAddr(t)
	_, port, _ = net.SplitHostPort(freeAddr(t))
	t.Setenv("GANTRY_ADMIN_PASSWORD", "cli-test-admin")
	t.Setenv("GANTRY_CONFIG_DIR", filepath.Join(dir, "cli"))
	t.Setenv("GANTRY_USERNAME", "")
	t.Setenv("GANTRY_PASSWORD", "")
	t.Setenv("GANTRY_TOKEN", "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var out, errOut testenv.Buffer
	args := append([]string{"server", "--data", data, "--listen", ctl, "--tls", "self-signed", "--domain", "gantry.test",
		"--registry-listen", "127.0.0.1:" + port}, extra...)
	go func() { done <- Execute(ctx, args, strings.NewReader(""), &out, &errOut) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("gantry server: exit %d\n%s", code, errOut.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "gantry control API on https://") {
		select {
		case code := <-done:
			done <- code
			t.Fatalf("gantry server: exit %d\n%s%s", code, out.String(), errOut.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server did not start:\n%s%s", out.String(), errOut.String())
		}
	}
	return ctl, port, data
}

// TestTLSHostnames is issue 14's acceptance run: a server with a local CA
// and registry hostnames, the names mapped to 127.0.0.1 in /etc/hosts and
// the engine trusting the CA, then docker login, push and pull by
// hostname, and crane, skopeo, oras and an HTTP client with the CA; a
// client without it gets a TLS error, never plain HTTP.
func TestTLSHostnames(t *testing.T) {
	testenv.Hosts(t, "contoso.gantry.test", "fabrikam.gantry.test")
	ctl, port, data := startTLSServer(t)
	contoso := "contoso.gantry.test:" + port

	// gantry server ca and GET /v1/ca.pem hand out the same CA.
	caPEM := must(t, "server", "ca", "--data", data)
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, []byte(caPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		t.Fatalf("gantry server ca printed no certificate: %q", caPEM)
	}
	trusting := hostsHTTP(&tls.Config{RootCAs: pool})
	resp := get(t, trusting, "https://"+ctl+"/v1/ca.pem")
	if resp.status != http.StatusOK || resp.body != caPEM {
		t.Fatalf("GET /v1/ca.pem: %d, the CA: %v", resp.status, resp.body == caPEM)
	}
	if resp.proto != "HTTP/2.0" {
		t.Errorf("control API protocol %s, want HTTP/2.0", resp.proto)
	}
	// Plain HTTP on a TLS port: a clear 400 at once.
	if r := get(t, hostsHTTP(nil), "http://"+ctl+"/v1/version"); r.status != http.StatusBadRequest || !strings.Contains(r.body, "HTTPS") {
		t.Errorf("plain HTTP to the TLS control port: %d %q, want 400", r.status, r.body)
	}
	// A client that does not trust the CA: a TLS error, no downgrade.
	if _, err := hostsHTTP(&tls.Config{}).Get("https://" + contoso + "/v2/"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("GET without the CA: %v, want a certificate error", err)
	}

	t.Setenv("GANTRY_SERVER", "https://"+ctl)
	t.Setenv("GANTRY_CA_FILE", caFile)
	if code, _, errOut := gantry(t, "cli-test-admin\n", "login", "-u", "admin", "--password-stdin"); code != 0 {
		t.Fatalf("login: %s", errOut)
	}
	// check-health: every part, and the certificate this client sees.
	var health []struct{ Name, Status, Detail string }
	if err := json.Unmarshal([]byte(must(t, "check-health")), &health); err != nil {
		t.Fatal(err)
	}
	statuses := map[string]string{}
	for _, h := range health {
		statuses[h.Name] = h.Status
		if h.Name == "tls" && !strings.Contains(h.Detail, `issued by "Gantry local CA"`) {
			t.Errorf("check-health tls: %q", h.Detail)
		}
	}
	for _, name := range []string{"server", "database", "blobs", "disk", "certificates", "tls"} {
		if statuses[name] != "ok" {
			t.Errorf("check-health %s: %q, want ok (all: %+v)", name, statuses[name], health)
		}
	}
	if out := must(t, "registry", "create", "-n", "contoso"); !strings.Contains(out, contoso) {
		t.Fatalf("registry create without --listen: %s, want login server %s", out, contoso)
	}
	// The challenge names the hostname's token endpoint, whatever Host says.
	r := get(t, trusting, "https://"+contoso+"/v2/")
	if want := `Bearer realm="https://` + contoso + `/oauth2/token",service="` + contoso + `"`; r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != want {
		t.Errorf("GET /v2/: %d %q, want 401 %q", r.status, r.header.Get("WWW-Authenticate"), want)
	}

	// The engine trusts the CA for the registry's host:port.
	testenv.DockerTrust(t, contoso, []byte(caPEM))
	cfgDir := t.TempDir()
	t.Run("docker", func(t *testing.T) {
		engine := dockertest.Engine(t)
		login := exec.Command("docker", "--config", cfgDir, "login", contoso, "-u", "admin", "--password-stdin")
		login.Stdin = strings.NewReader("cli-test-admin\n")
		if out, err := login.CombinedOutput(); err != nil || !strings.Contains(string(out), "Login Succeeded") {
			t.Fatalf("docker login %s: %v\n%s", contoso, err, out)
		}
		image := dockertest.BusyboxImage(t, engine, contoso+"/samples/busybox:v1")
		dockertest.CLI(t, "--config", cfgDir, "push", image)
		dockertest.CLI(t, "image", "rm", image)
		dockertest.CLI(t, "--config", cfgDir, "pull", image)
	})
	src := contoso + "/samples/busybox:v1"
	tools := []string{"DOCKER_CONFIG=" + cfgDir, "SSL_CERT_FILE=" + caFile}
	t.Run("crane", func(t *testing.T) {
		crane := testenv.Tool(t, "crane")
		testenv.Run(t, tools, crane, "copy", src, contoso+"/samples/crane:v1")
		want := strings.TrimSpace(testenv.Run(t, tools, crane, "digest", src))
		if got := strings.TrimSpace(testenv.Run(t, tools, crane, "digest", contoso+"/samples/crane:v1")); got != want {
			t.Fatalf("crane copy: digest %s, want %s", got, want)
		}
		// Without the CA crane fails on the certificate.
		cmd := exec.Command(crane, "digest", src)
		cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+cfgDir, "SSL_CERT_FILE=/nonexistent")
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "certificate") {
			t.Fatalf("crane without the CA: %v\n%s", err, out)
		}
	})
	t.Run("oras", func(t *testing.T) {
		oras := testenv.Tool(t, "oras")
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello over TLS\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		push := exec.Command(oras, "push", "--ca-file", caFile, contoso+"/samples/artifact:v1", "hello.txt")
		push.Dir, push.Env = dir, append(os.Environ(), tools[0])
		if out, err := push.CombinedOutput(); err != nil {
			t.Fatalf("oras push: %v\n%s", err, out)
		}
		out := filepath.Join(dir, "out")
		testenv.Run(t, tools[:1], oras, "pull", "--ca-file", caFile, "-o", out, contoso+"/samples/artifact:v1")
		if b, err := os.ReadFile(filepath.Join(out, "hello.txt")); err != nil || string(b) != "hello over TLS\n" {
			t.Fatalf("oras pull: %q, %v", b, err)
		}
	})
	t.Run("skopeo", func(t *testing.T) {
		skopeo := testenv.Tool(t, "skopeo")
		certDir := t.TempDir()
		if err := os.WriteFile(filepath.Join(certDir, "ca.crt"), []byte(caPEM), 0o644); err != nil {
			t.Fatal(err)
		}
		auth := filepath.Join(cfgDir, "config.json")
		testenv.Run(t, nil, skopeo, "copy", "--src-cert-dir", certDir, "--dest-cert-dir", certDir,
			"--src-authfile", auth, "--dest-authfile", auth, "docker://"+src, "docker://"+contoso+"/samples/skopeo:v1")
		out := testenv.Run(t, nil, skopeo, "inspect", "--cert-dir", certDir, "--authfile", auth, "docker://"+contoso+"/samples/skopeo:v1")
		if !strings.Contains(out, `"Digest"`) {
			t.Fatalf("skopeo inspect: %s", out)
		}
	})
}

// hostsHTTP is an HTTP client with the TLS configuration (nil: plain
// transport defaults) and HTTP/2 attempted, which follows no redirect.
func hostsHTTP(conf *tls.Config) *http.Client {
	tr := &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: true}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type got struct {
	status int
	proto  string
	header http.Header
	body   string
}

func get(t *testing.T, c *http.Client, url string) got {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		var ue interface{ Timeout() bool }
		if errors.As(err, &ue) && ue.Timeout() {
			t.Fatalf("GET %s: timed out (a hang): %v", url, err)
		}
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return got{status: resp.StatusCode, proto: resp.Proto, header: resp.Header, body: string(b)}
}

// TestServerRefusesBadNetworkInput checks that gantry server refuses bad
// TLS and network settings at start with a message naming the flag and
// the file.
func TestServerRefusesBadNetworkInput(t *testing.T) {
	dir := t.TempDir()
	ca := testenv.NewCA(t)
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, d := range []string{a, b} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		ca.Issue(t, "gantry.test", x509.ExtKeyUsageServerAuth, d)
	}
	expiredCert, expiredKey := writeExpired(t, dir)
	data := filepath.Join(dir, "data")
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"certificate and key differ", []string{"--tls-cert", filepath.Join(a, "cert.pem"), "--tls-key", filepath.Join(b, "key.pem")},
			[]string{"--tls-cert", filepath.Join(a, "cert.pem"), "does not match", filepath.Join(b, "key.pem")}},
		{"expired certificate", []string{"--tls-cert", expiredCert, "--tls-key", expiredKey},
			[]string{"--tls-cert", expiredCert, "expired"}},
		{"missing file", []string{"--tls-cert", filepath.Join(dir, "nope.pem"), "--tls-key", filepath.Join(a, "key.pem")},
			[]string{"(--tls-cert)", filepath.Join(dir, "nope.pem"), "no such file"}},
		{"domain not a DNS name", []string{"--domain", "gantry_test"}, []string{"(--domain)", `"gantry_test" is not a valid DNS name`}},
		{"external URL without scheme", []string{"--external-url", "gantry.example.com"},
			[]string{"(--external-url)", `"gantry.example.com" has no http:// or https:// scheme`}},
		{"unknown TLS mode", []string{"--tls", "yes"}, []string{`--tls "yes": want self-signed or off`}},
		{"negative body timeout", []string{"--body-timeout", "-1s"}, []string{"network.bodyTimeout (--body-timeout)", "-1s is negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"server", "--data", data, "--listen", "127.0.0.1:0"}, tt.args...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out, errOut testenv.Buffer
			code := Execute(ctx, args, strings.NewReader(""), &out, &errOut)
			if code == 0 {
				t.Fatalf("gantry server %v: exit 0", tt.args)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("gantry server %v: %q lacks %q", tt.args, errOut.String(), w)
				}
			}
		})
	}
}

// writeExpired writes a self-signed certificate that expired an hour ago
// and its key.
func writeExpired(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "gantry.test"}, DNSNames: []string{"gantry.test"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "expired.pem"), filepath.Join(dir, "expired-key.pem")
	testenv.WritePEM(t, certFile, "CERTIFICATE", der)
	testenv.WritePEM(t, keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile
}

// TestServerReloadsCertificateOnHangup starts gantry server with
// --tls-cert/--tls-key, replaces the files and sends SIGHUP: new
// connections get the new certificate, and a connection opened before
// keeps working.
func TestServerReloadsCertificateOnHangup(t *testing.T) {
	dir := t.TempDir()
	ca := testenv.NewCA(t)
	files := filepath.Join(dir, "live")
	if err := os.MkdirAll(files, 0o700); err != nil {
		t.Fatal(err)
	}
	first := ca.Issue(t, "gantry.test", x509.ExtKeyUsageServerAuth, files)
	ctl := freeAddr(t)
	t.Setenv("GANTRY_ADMIN_PASSWORD", "cli-test-admin")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var out, errOut testenv.Buffer
	go func() {
		done <- Execute(ctx, []string{"server", "--data", filepath.Join(dir, "data"), "--listen", ctl,
			"--tls-cert", filepath.Join(files, "cert.pem"), "--tls-key", filepath.Join(files, "key.pem")}, strings.NewReader(""), &out, &errOut)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("gantry server: exit %d\n%s", code, errOut.String())
		}
	})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM())
	serial := func(c *http.Client) string {
		t.Helper()
		resp, err := c.Get("https://" + ctl + "/v1/version")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "gantry control API on https://") {
		if time.Now().After(deadline) {
			t.Fatalf("the server did not start:\n%s", errOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	kept := hostsHTTP(&tls.Config{RootCAs: pool}) // one kept-alive connection
	kept.Transport.(*http.Transport).MaxConnsPerHost = 1
	if got := serial(kept); got != serialOf(t, first) {
		t.Fatalf("serial %s, want the first certificate's %s", got, serialOf(t, first))
	}
	// A new pair, written elsewhere and renamed into place.
	next := filepath.Join(dir, "next")
	if err := os.MkdirAll(next, 0o700); err != nil {
		t.Fatal(err)
	}
	second := ca.Issue(t, "gantry.test", x509.ExtKeyUsageServerAuth, next)
	for _, f := range []string{"key.pem", "cert.pem"} {
		if err := os.Rename(filepath.Join(next, f), filepath.Join(files, f)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// Within 2 s: the files are also polled, but every 5 s.
	deadline = time.Now().Add(2 * time.Second)
	for serial(hostsHTTP(&tls.Config{RootCAs: pool})) != serialOf(t, second) {
		if time.Now().After(deadline) {
			t.Fatal("the new certificate was not served after SIGHUP")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The connection opened before still works, on the certificate it
	// started with.
	if got := serial(kept); got != serialOf(t, first) {
		t.Errorf("kept connection: serial %s, want the first certificate's (a new connection was made)", got)
	}
}

func serialOf(t *testing.T, c tls.Certificate) string {
	t.Helper()
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.String()
}
