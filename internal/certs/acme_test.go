package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/testenv"
)

func TestACME(t *testing.T) {
	t.Parallel()
	p := testenv.StartPebble(t, testenv.ValidateChallenges())
	var logs testenv.Buffer
	storage := filepath.Join(t.TempDir(), "acme")
	a, err := NewACME(storage, "ops@gantry.test",
		WithDirectory(p.Directory), WithRootCAs(p.Trust),
		WithChallengeListener("127.0.0.1", p.HTTPPort, p.TLSPort),
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
	roots := p.Root(t)

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
	b, err := NewACME(storage, "ops@gantry.test", WithDirectory(p.Directory), WithRootCAs(p.Trust))
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
