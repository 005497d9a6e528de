// Package wait pauses a goroutine for a while unless its context ends
// first: the one context-aware sleep of retry loops, schedulers and
// pollers.
package wait

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// For waits d, or until ctx ends, and returns ctx's error in that case
// (also when d is not positive and ctx has already ended).
func For(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// HTTP polls GET url every 50 ms until it answers 200 or 401 (a registry's
// /v2/ with or without authentication), and returns nil then. It gives up
// with an error when ctx ends or when exited (the server's process; may be
// nil) is closed first.
func HTTP(ctx context.Context, url string, exited <-chan struct{}) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("the server exited")
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer: %w", url, ctx.Err())
		case <-tick.C:
		}
	}
}

// Every calls fn every d until ctx ends, and returns then; it makes no
// call once ctx has ended. A call that outlasts d delays the next one
// rather than stacking calls.
func Every(ctx context.Context, d time.Duration, fn func(context.Context)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if ctx.Err() != nil {
				return // both were ready: select chose at random
			}
			fn(ctx)
		}
	}
}
