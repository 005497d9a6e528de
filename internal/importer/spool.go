package importer

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
)

// spool keeps the bytes of a blob being fetched from upstream so that any
// number of clients can read it while it is stored: the fetch writes each
// chunk on its way to the store, readers follow behind. The file is
// unlinked as soon as it is created (nothing is left behind, even after a
// crash) and closed when the fetch and every reader are done with it.
//
// Readers never see the last byte before the fetch has verified the
// content's digest: if it does not match they get an error instead of the
// end of the stream, so a client cannot mistake bad content for good.
type spool struct {
	f    *os.File
	size int64

	mu      sync.Mutex
	written int64
	done    bool
	err     error // the fetch's outcome, once done
	broken  error // writing the spool failed: readers fail, the fetch goes on
	notify  chan struct{}
	refs    int
}

func newSpool(dir string, size int64) (*spool, error) {
	f, err := os.CreateTemp(dir, ".gantry-spool-*")
	if err != nil {
		return nil, fmt.Errorf("creating spool file: %w", err)
	}
	// Unlinked at once: readers share the open file.
	_ = os.Remove(f.Name())
	return &spool{f: f, size: size, notify: make(chan struct{}), refs: 1}, nil
}

// Write appends fetched bytes. It never fails the fetch: a spool that
// cannot be written only fails its readers.
func (s *spool) Write(p []byte) (int, error) {
	s.mu.Lock()
	broken := s.broken
	s.mu.Unlock()
	if broken != nil {
		return len(p), nil
	}
	n, err := s.f.Write(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.written += int64(n)
	if err != nil {
		s.broken = fmt.Errorf("writing spool file: %w", err)
	}
	close(s.notify)
	s.notify = make(chan struct{})
	return len(p), nil
}

// finish records the fetch's outcome (nil: stored and verified).
func (s *spool) finish(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done, s.err = true, err
	close(s.notify)
	s.notify = make(chan struct{})
}

// acquire takes a reference for a new reader; false if the spool is gone.
func (s *spool) acquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refs == 0 {
		return false
	}
	s.refs++
	return true
}

// release drops a reference; the last one closes the file.
func (s *spool) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refs--
	if s.refs == 0 {
		s.f.Close()
	}
}

// reader returns a reader of the whole blob from offset 0, or nil if the
// spool is already closed. Reads give up when ctx (the client's request)
// ends.
func (s *spool) reader(ctx context.Context) io.ReadCloser {
	if !s.acquire() {
		return nil
	}
	return &spoolReader{s: s, ctx: ctx}
}

// spoolReader keeps the context of the request it serves, as an
// http.Request's body does.
type spoolReader struct {
	s      *spool
	ctx    context.Context
	off    int64
	closed sync.Once
}

func (r *spoolReader) Read(p []byte) (int, error) {
	s := r.s
	for {
		s.mu.Lock()
		written, done, ferr, broken, ch := s.written, s.done, s.err, s.broken, s.notify
		s.mu.Unlock()
		switch {
		case broken != nil:
			return 0, broken
		case done && ferr != nil:
			return 0, ferr
		case done && r.off >= s.size:
			return 0, io.EOF
		}
		limit := written
		if !done {
			limit = min(written, s.size-1) // the last byte waits for verification
		}
		if r.off < limit {
			n := int64(len(p))
			if n > limit-r.off {
				n = limit - r.off
			}
			m, err := s.f.ReadAt(p[:n], r.off)
			r.off += int64(m)
			if m > 0 {
				return m, nil
			}
			if err != nil {
				return 0, fmt.Errorf("reading spool file: %w", err)
			}
			continue
		}
		select {
		case <-ch:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
}

func (r *spoolReader) Close() error {
	r.closed.Do(r.s.release)
	return nil
}
