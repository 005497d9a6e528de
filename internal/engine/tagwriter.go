package engine

import "time"

// imagesDelay is how long the imagesFile writer waits after a change.
const imagesDelay = 500 * time.Millisecond

// tagWriter keeps a run's imagesFile (the tags it created, what Cleanup
// reads after a crash) up to date in the background: each write copies
// the latest list, imagesDelay after a change, so bursts of tags cost one
// copy and no step waits for it.
type tagWriter struct {
	dirty chan struct{}
	quit  chan struct{}
	done  chan struct{}
}

// start starts the goroutine that calls write after changes; stop ends it.
func (w *tagWriter) start(write func()) {
	w.dirty = make(chan struct{}, 1)
	w.quit = make(chan struct{})
	w.done = make(chan struct{})
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.quit:
				return
			case <-w.dirty:
			}
			// Let a burst of tags (or the whole of a short run) pass: a
			// run that ends first untags them itself, no copy needed.
			t := time.NewTimer(imagesDelay)
			select {
			case <-w.quit:
				t.Stop()
				return
			case <-t.C:
			}
			write()
		}
	}()
}

// changed asks for a write (none before start).
func (w *tagWriter) changed() {
	select {
	case w.dirty <- struct{}{}:
	default: // a write is already pending; it will see the change
	}
}

// stop stops the writer (the run is being torn down, and untags what it
// created itself).
func (w *tagWriter) stop() {
	if w.quit == nil {
		return
	}
	close(w.quit)
	<-w.done
}
