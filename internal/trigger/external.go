package trigger

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/egress"
	"github.com/gantryhq/gantry/internal/oci"
	"github.com/gantryhq/gantry/internal/remote"
)

// maxConcurrentHeads bounds the external registry requests in flight.
const maxConcurrentHeads = 4

// registryRefresh is how often the registries' login servers are reloaded.
const registryRefresh = time.Minute

// extImage is an external base image: a tag in a registry that is not a
// gantry registry.
type extImage struct {
	// host is the registry as the FROM lines spell it.
	host, repository, tag string
}

func (e extImage) String() string { return e.host + "/" + e.repository + ":" + e.tag }

type extState struct {
	next   time.Time
	digest string
	err    string
	at     time.Time
}

// externalPoller polls external base images for digest changes.
type externalPoller struct {
	s     *Service
	kicks *kicker

	mu     sync.Mutex
	images map[extImage]*extState
}

func newExternalPoller(s *Service) *externalPoller {
	return &externalPoller{s: s, kicks: newKicker(), images: map[extImage]*extState{}}
}

func (p *externalPoller) kick() { p.kicks.kick("") }

// state returns what the last poll of an image found.
func (p *externalPoller) state(host, repository, tag string) (extState, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.images[extImage{host, repository, tag}]
	if !ok {
		return extState{}, false
	}
	return *st, true
}

func (p *externalPoller) run(ctx context.Context) {
	p.reload(ctx)
	nextRefresh := p.s.clock.Now().Add(registryRefresh)
	wakeUp := alarm{clock: p.s.clock}
	defer wakeUp.stop()
	for {
		now := p.s.clock.Now()
		if !now.Before(nextRefresh) {
			if err := p.s.RefreshRegistries(ctx); err != nil && ctx.Err() == nil {
				p.s.log.WarnContext(ctx, "reloading registries", "err", err)
			}
			nextRefresh = now.Add(registryRefresh)
			p.reload(ctx)
		}
		var due []extImage
		p.mu.Lock()
		for img, st := range p.images {
			if !st.next.After(now) {
				due = append(due, img)
			}
		}
		p.mu.Unlock()
		sort.Slice(due, func(i, j int) bool { return due[i].String() < due[j].String() })
		p.pollAll(ctx, due)
		if ctx.Err() != nil {
			return
		}

		next := nextRefresh
		p.mu.Lock()
		for _, st := range p.images {
			if st.next.Before(next) {
				next = st.next
			}
		}
		p.mu.Unlock()
		fire := wakeUp.at(next)
		select {
		case <-ctx.Done():
			return
		case <-fire:
		case <-p.kicks.wake:
			p.kicks.take()
			p.reload(ctx)
		}
	}
}

// reload rebuilds the set of external images from the tracked bases of
// enabled tasks; new images are polled at once.
func (p *externalPoller) reload(ctx context.Context) {
	bases, err := p.s.tasks.WatchedBaseImages(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.s.log.ErrorContext(ctx, "external base images: reading tracked bases", "err", err)
		}
		return
	}
	want := map[extImage]bool{}
	for _, b := range bases {
		if p.s.registryOf(b.Registry) != "" || b.Registry == "" {
			continue
		}
		want[extImage{b.Registry, b.Repository, b.Tag}] = true
	}
	now := p.s.clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for img := range p.images {
		if !want[img] {
			delete(p.images, img)
		}
	}
	for img := range want {
		if p.images[img] == nil {
			p.images[img] = &extState{next: now}
		}
	}
}

func (p *externalPoller) pollAll(ctx context.Context, due []extImage) {
	if len(due) == 0 {
		return
	}
	sem := make(chan struct{}, maxConcurrentHeads)
	var wg sync.WaitGroup
	for _, img := range due {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p.poll(ctx, img)
		}()
	}
	wg.Wait()
}

func (p *externalPoller) poll(ctx context.Context, img extImage) {
	d, err := p.s.headDigest(ctx, img.host, img.repository, img.tag)
	if ctx.Err() != nil {
		return
	}
	now := p.s.clock.Now()
	p.mu.Lock()
	st := p.images[img]
	if st == nil {
		st = &extState{}
		p.images[img] = st
	}
	prevErr := st.err
	st.next = now.Add(jitter(p.s.externalPoll, p.s.jitter))
	st.at = now
	if err != nil {
		st.err = err.Error()
	} else {
		st.digest, st.err = d, ""
	}
	p.mu.Unlock()
	if h := p.s.hooks.extPolled; h != nil {
		h(img.String(), err)
	}
	errText := ""
	if err != nil {
		errText = err.Error()
		if errText != prevErr {
			p.s.log.WarnContext(ctx, "external base image: polling", "image", img.String(), "err", err)
		}
	}
	if _, dberr := p.s.db.W.ExecContext(ctx, `INSERT INTO trigger_external_images(image, digest, checked_at, error)
		VALUES (?, ?, ?, ?) ON CONFLICT(image) DO UPDATE SET digest = CASE WHEN excluded.digest <> '' THEN excluded.digest ELSE digest END,
		checked_at = excluded.checked_at, error = excluded.error`, img.String(), d, formatTime(now), errText); dberr != nil {
		p.s.log.WarnContext(ctx, "external base image: recording the poll", "image", img.String(), "err", dberr)
	}
	if err != nil {
		return
	}
	p.s.base.submit(change{hosts: []string{img.host}, repository: img.repository, tag: img.tag, digest: d})
}

// headDigest returns the digest a registry's tag points to, from a
// manifest HEAD request (the manifest itself when the registry does not
// send the digest), with the configured login for the host if there is one.
func (s *Service) headDigest(ctx context.Context, host, repository, tag string) (string, error) {
	cred := remote.Credential{}
	if s.creds != nil {
		var err error
		if cred.Username, cred.Password, err = s.creds(ctx, host); err != nil {
			return "", fmt.Errorf("credentials for %s: %w", host, err)
		}
	}
	repo := oci.Reference{Domain: host, Path: repository}.Normalize().Path
	ctx, cancel := context.WithTimeout(ctx, pollTimeout)
	defer cancel()
	d, err := s.remote.Repository(s.remote.Scheme(host), host, repo, cred, egress.Local).Digest(ctx, remote.PollPolicy, tag)
	if err != nil {
		var re *egress.RefusedError
		if errors.As(err, &re) {
			return "", fmt.Errorf("%s/%s:%s: %w", host, repository, tag, re)
		}
		if errors.Is(err, remote.ErrUpstreamAuth) && cred.Username == "" {
			return "", fmt.Errorf("%s/%s:%s: %w (no login is configured for %s)", host, repository, tag, err, host)
		}
		return "", fmt.Errorf("%s/%s:%s: %w", host, repository, tag, err)
	}
	return d.String(), nil
}

// pollTimeout bounds one poll of an external base image.
const pollTimeout = 30 * time.Second
