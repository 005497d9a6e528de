package server

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

// fakePart records its lifecycle calls in a shared journal.
type fakePart struct {
	name     string
	journal  *[]string
	startErr error
	failed   chan error
}

func (f *fakePart) Start(context.Context) error {
	*f.journal = append(*f.journal, "start "+f.name)
	return f.startErr
}

func (f *fakePart) Ready(context.Context) error {
	*f.journal = append(*f.journal, "ready "+f.name)
	return nil
}

func (f *fakePart) Stop(context.Context) error {
	*f.journal = append(*f.journal, "stop "+f.name)
	return nil
}

// journaled returns a lifecycle with fake parts of the names started, and
// the journal the fake parts write.
func journaled(t *testing.T, names ...string) (*lifecycle, *[]string) {
	t.Helper()
	journal := new([]string)
	l := &lifecycle{log: slog.New(slog.DiscardHandler)}
	for _, name := range names {
		if err := l.start(t.Context(), name, &fakePart{name: name, journal: journal}); err != nil {
			t.Fatal(err)
		}
	}
	return l, journal
}

type fakeFailing struct {
	fakePart
}

func (f *fakeFailing) Failed() <-chan error { return f.failed }

// TestLifecycleOrder: components start in order, each ready before the
// next starts, and stop in reverse order, once.
func TestLifecycleOrder(t *testing.T) {
	t.Parallel()
	l, journal := journaled(t, "a", "b", "c")
	l.stop()
	l.stop()
	want := []string{"start a", "ready a", "start b", "ready b", "start c", "ready c", "stop c", "stop b", "stop a"}
	if !slices.Equal(*journal, want) {
		t.Errorf("journal %v, want %v", journal, want)
	}
}

// TestLifecycleStartError: a component that does not start is named in
// the error, is not stopped, and those started before it stop.
func TestLifecycleStartError(t *testing.T) {
	t.Parallel()
	l, journal := journaled(t, "a")
	boom := errors.New("port taken")
	err := l.start(t.Context(), "b part", &fakePart{name: "b", journal: journal, startErr: boom})
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "b part: ") {
		t.Errorf("start: %v, want the component named", err)
	}
	l.stop()
	want := []string{"start a", "ready a", "start b", "stop a"}
	if !slices.Equal(*journal, want) {
		t.Errorf("journal %v, want %v", journal, want)
	}
}

// TestLifecycleWait: wait returns nil when its context ends, and the error
// of a component that fails while running, named.
func TestLifecycleWait(t *testing.T) {
	t.Parallel()
	failing := func() (*lifecycle, *fakeFailing) {
		l, journal := journaled(t)
		f := &fakeFailing{fakePart{name: "api", journal: journal, failed: make(chan error, 1)}}
		if err := l.start(t.Context(), "control API", f); err != nil {
			t.Fatal(err)
		}
		return l, f
	}
	l, _ := failing()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := l.wait(ctx); err != nil {
		t.Errorf("wait after the context ended: %v", err)
	}
	l, f := failing()
	f.failed <- errors.New("accept: too many open files")
	if err := l.wait(t.Context()); err == nil || err.Error() != "control API: accept: too many open files" {
		t.Errorf("wait: %v, want the component's failure, named", err)
	}
}
