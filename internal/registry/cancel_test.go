package registry_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/registry"
	"github.com/gantryhq/gantry/internal/testenv"
)

// TestClientGoneIsNotAServerError: a request whose client went away while
// it ran (its context cancelled) is answered 499 and logged at debug, not
// as a 500 "request failed" at error level (the soak's clients stopping
// mid-push showed that).
func TestClientGoneIsNotAServerError(t *testing.T) {
	dir := t.TempDir()
	st := testenv.Store(t, testenv.DB(t, dir), filepath.Join(dir, "data"))
	testenv.CreateRegistries(t, st, "test")
	var logs bytes.Buffer
	h := registry.New("test", st, registry.WithAuthorizer(auth.AllowAll{}),
		registry.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v2/app/blobs/uploads/", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 499 {
		t.Fatalf("status %d, want 499; body %s", rec.Code, rec.Body)
	}
	if strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "request refused") {
		t.Fatalf("logs:\n%s", logs.String())
	}
}
