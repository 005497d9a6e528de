package wait_test

import (
	"context"
	"errors"
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
