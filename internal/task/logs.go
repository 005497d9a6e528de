package task

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// logBook stores run logs as files (DIR/logs/<registry>/<run>.log) and lets
// readers follow a run's log while it is written.
type logBook struct {
	dir string

	mu   sync.Mutex
	live map[string]*liveLog
}

// liveLog signals readers that a log grew or ended: changed is closed and
// replaced on every write.
type liveLog struct {
	changed chan struct{}
	done    bool
}

func newLogBook(dir string) *logBook {
	return &logBook{dir: dir, live: map[string]*liveLog{}}
}

func (b *logBook) path(registry, id string) string {
	return filepath.Join(b.dir, registry, id+".log")
}

func (b *logBook) entry(key string) *liveLog {
	l, ok := b.live[key]
	if !ok {
		l = &liveLog{changed: make(chan struct{})}
		b.live[key] = l
	}
	return l
}

// signal wakes the readers of a log.
func (b *logBook) signal(registry, id string, done bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.entry(registry + "/" + id)
	if done {
		l.done = true
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// finish marks a log complete (the run ended) and forgets its live state.
func (b *logBook) finish(registry, id string) {
	b.signal(registry, id, true)
	b.mu.Lock()
	delete(b.live, registry+"/"+id)
	b.mu.Unlock()
}

// create opens a run's log for appending.
func (b *logBook) create(registry, id string) (*logWriter, error) {
	p := b.path(registry, id)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return &logWriter{f: f, b: b, registry: registry, id: id}, nil
}

// logWriter appends to a run log and wakes its readers.
type logWriter struct {
	mu       sync.Mutex
	f        *os.File
	b        *logBook
	registry string
	id       string
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	n, err := w.f.Write(p)
	w.mu.Unlock()
	w.b.signal(w.registry, w.id, false)
	return n, err
}

func (w *logWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.f.Close()
}

// Logs copies a run's log to w. With follow, it keeps copying until the run
// ends (or ctx does); a queued run's log is waited for.
func (s *Service) Logs(ctx context.Context, registry, id string, follow bool, w io.Writer) error {
	if _, err := s.GetRun(ctx, registry, id); err != nil {
		return err
	}
	b := s.logs
	key := registry + "/" + id
	var off int64
	for {
		// Take the change channel before reading, so a write after the read
		// is never missed.
		b.mu.Lock()
		l := b.entry(key)
		changed := l.changed
		b.mu.Unlock()

		n, err := copyFrom(b.path(registry, id), off, w)
		off += n
		if err != nil {
			return err
		}
		if !follow {
			return nil
		}
		r, err := s.GetRun(ctx, registry, id)
		if err != nil {
			return err
		}
		if Finished(r.Status) {
			// The final lines are written before the status is stored.
			_, err := copyFrom(b.path(registry, id), off, w)
			b.mu.Lock()
			if cur, ok := b.live[key]; ok && cur.done {
				delete(b.live, key)
			}
			b.mu.Unlock()
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-time.After(time.Second):
			// A run cancelled while queued ends without writing: recheck.
		}
	}
}

// copyFrom copies a file from off to its end into w.
func copyFrom(path string, off int64, w io.Writer) (int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	return io.Copy(w, f)
}
