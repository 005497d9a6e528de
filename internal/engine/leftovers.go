package engine

import (
	"context"
	"sync"
)

// leftovers are what a run's teardown removes besides the objects that
// carry its label: the attaches of its detached containers and its
// temporary directories.
type leftovers struct {
	mu       sync.Mutex
	detached []detached
	tempDirs []string
}

// detached is a background container and the attach that copies its output.
type detached struct {
	id     string
	cancel context.CancelFunc
	done   <-chan error
}

// detach records a detached container.
func (l *leftovers) detach(d detached) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.detached = append(l.detached, d)
}

// tempDir records a temporary directory.
func (l *leftovers) tempDir(dir string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tempDirs = append(l.tempDirs, dir)
}

// take returns what was recorded.
func (l *leftovers) take() ([]detached, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.detached, l.tempDirs
}
