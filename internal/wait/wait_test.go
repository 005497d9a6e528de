package wait_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/wait"
)

func TestFor(t *testing.T) {
	if err := wait.For(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("a short wait: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := wait.For(ctx, time.Hour); !errors.Is(err, context.Canceled) || time.Since(start) > time.Second {
		t.Fatalf("an ended context: %v after %s", err, time.Since(start))
	}
	if err := wait.For(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("no wait, ended context: %v", err)
	}
	if err := wait.For(context.Background(), -time.Second); err != nil {
		t.Fatalf("a negative wait: %v", err)
	}
}

// TestHTTP waits for a real loopback server: past its 503s to its 401,
// and gives up when the server's process exits or the context ends.
func TestHTTP(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := wait.HTTP(ctx, srv.URL, nil); err != nil || calls.Load() != 3 {
		t.Fatalf("wait.HTTP = %v after %d requests, want nil after 3", err, calls.Load())
	}

	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer down.Close()
	exited := make(chan struct{})
	close(exited)
	if err := wait.HTTP(ctx, down.URL, exited); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("an exited server: %v", err)
	}
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if err := wait.HTTP(short, down.URL, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a server that never answers: %v", err)
	}
}

// TestEvery calls its function on each tick and returns when the context
// ends.
func TestEvery(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var calls int
	done := make(chan struct{})
	go func() {
		defer close(done)
		wait.Every(ctx, time.Millisecond, func(ctx context.Context) {
			if calls++; calls == 3 {
				cancel()
			}
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Every did not return after its context ended")
	}
	if calls != 3 {
		t.Fatalf("%d calls, want 3 (none after the context ended)", calls)
	}
}
