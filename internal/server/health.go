package server

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"
)

// Thresholds of the readiness checks that degrade (never fail) the
// server: a data directory short of space, a certificate near its expiry.
const (
	diskLowFraction = 0.05
	diskLowBytes    = 1 << 30
	certExpirySoon  = 14 * 24 * time.Hour
)

// freeSpace reads the free and total bytes of the filesystem of dir.
type freeSpace struct {
	dir string

	mu          sync.Mutex
	free, total uint64
}

func diskCheck(dir string) *freeSpace { return &freeSpace{dir: dir} }

func (f *freeSpace) run(context.Context) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(f.dir, &st); err != nil {
		return fmt.Errorf("reading the data directory's free space: %w", err)
	}
	free, total := st.Bavail*uint64(st.Bsize), st.Blocks*uint64(st.Bsize)
	f.mu.Lock()
	f.free, f.total = free, total
	f.mu.Unlock()
	if free < diskLowBytes && float64(free) < diskLowFraction*float64(total) {
		return fmt.Errorf("low: %s free of %s", bytesText(free), bytesText(total))
	}
	return nil
}

func (f *freeSpace) detail() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprintf("%s free of %s", bytesText(f.free), bytesText(f.total))
}

func bytesText(n uint64) string {
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

// expiry checks the certificates the listeners serve.
type expiry struct {
	certs *certSource

	mu   sync.Mutex
	next time.Time
	name string
}

func certCheck(c *certSource) *expiry { return &expiry{certs: c} }

func (e *expiry) run(context.Context) error {
	infos := e.certs.Certificates()
	if len(infos) == 0 {
		return nil
	}
	next := infos[0]
	for _, in := range infos[1:] {
		if in.NotAfter.Before(next.NotAfter) {
			next = in
		}
	}
	e.mu.Lock()
	e.next, e.name = next.NotAfter, fmt.Sprint(next.Names)
	e.mu.Unlock()
	if left := time.Until(next.NotAfter); left < certExpirySoon {
		return fmt.Errorf("the certificate for %v expires %s (in %s)", next.Names, next.NotAfter.UTC().Format(time.RFC3339), left.Round(time.Hour))
	}
	return nil
}

func (e *expiry) detail() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.next.IsZero() {
		return "plain HTTP"
	}
	return fmt.Sprintf("the first to expire, %s, on %s", e.name, e.next.UTC().Format(time.RFC3339))
}
