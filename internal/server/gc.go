package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/wait"
)

// gcMetrics is where each pass is counted (telemetry.Metrics).
type gcMetrics interface {
	GCRun(freedBytes int64, d time.Duration)
}

// collector is the garbage collection component: it runs a full pass
// every interval (none when it is 0) and, on demand, the passes of
// POST /v1/gc (GC), one pass at a time: a pass asked for while another
// runs waits for it to end (or for its ctx). Each pass that is not a dry
// run is logged (Info) and counted in the metrics; a full pass also
// removes the importer's spool files left behind (spoolDir).
type collector struct {
	st       *store.Store
	log      *slog.Logger
	metrics  gcMetrics
	interval time.Duration
	spoolDir string

	turn chan struct{} // holds a token while a pass runs
	done chan struct{} // closed when the schedule loop has ended
}

func newCollector(st *store.Store, log *slog.Logger, m gcMetrics, interval time.Duration, spoolDir string) *collector {
	return &collector{st: st, log: log, metrics: m, interval: interval, spoolDir: spoolDir,
		turn: make(chan struct{}, 1), done: make(chan struct{})}
}

// Start runs the scheduled passes until ctx ends (Wait waits for the
// loop); the first pass comes one interval after the start.
func (c *collector) Start(ctx context.Context) error {
	if c.interval <= 0 {
		c.log.Info("scheduled garbage collection disabled (storage.gcInterval 0)")
		close(c.done)
		return nil
	}
	go func() {
		defer close(c.done)
		wait.Every(ctx, c.interval, func(ctx context.Context) {
			if _, err := c.GC(ctx, store.GCOptions{}); err != nil && ctx.Err() == nil {
				c.log.Error("garbage collection failed", "err", err)
			}
		})
	}()
	return nil
}

// Wait returns once the schedule loop has ended.
func (c *collector) Wait() { <-c.done }

// GC runs one pass, after any pass already running.
func (c *collector) GC(ctx context.Context, opts store.GCOptions) (store.GCResult, error) {
	select {
	case c.turn <- struct{}{}:
	case <-ctx.Done():
		return store.GCResult{}, fmt.Errorf("waiting for the garbage collection running: %w", ctx.Err())
	}
	defer func() { <-c.turn }()
	res, err := c.st.GC(ctx, opts)
	if err == nil && opts.Registry == "" && !opts.DryRun {
		var n int
		n, err = c.sweepSpool(ctx, time.Now().Add(-res.Grace))
		res.Uploads += n
	}
	if opts.DryRun {
		return res, err
	}
	c.metrics.GCRun(res.Bytes, res.Duration)
	attrs := []any{"blobs", len(res.Blobs), "bytes", res.Bytes, "uploads", res.Uploads,
		"duration", res.Duration, "grace", res.Grace}
	if opts.Registry != "" {
		attrs = append(attrs, "registry", opts.Registry)
	}
	if err != nil {
		c.log.Error("garbage collection failed", append(attrs, "err", err)...)
		return res, err
	}
	c.log.Info("garbage collected", attrs...)
	return res, nil
}

// spoolPrefix starts the names of the importer's spool files, which it
// unlinks as soon as it has created them (readers share the open file):
// a name still there was left by a crash in between, and removing it is
// safe at any age.
const spoolPrefix = ".gantry-spool-"

// sweepSpool removes the spool files left behind, last written before
// olderThan.
func (c *collector) sweepSpool(ctx context.Context, olderThan time.Time) (int, error) {
	if c.spoolDir == "" {
		return 0, nil
	}
	entries, err := os.ReadDir(c.spoolDir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("listing the spool directory: %w", err)
	}
	n := 0
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if !strings.HasPrefix(e.Name(), spoolPrefix) || !e.Type().IsRegular() {
			continue
		}
		if info, err := e.Info(); err != nil || info.ModTime().After(olderThan) {
			continue
		}
		if err := os.Remove(filepath.Join(c.spoolDir, e.Name())); err == nil {
			n++
		}
	}
	return n, nil
}
