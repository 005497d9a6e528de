package trigger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/egress"
	"github.com/gantryhq/gantry/internal/store"
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
	var timer Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
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
		if timer != nil {
			timer.Stop()
		}
		timer = p.s.clock.NewTimer(next.Sub(p.s.clock.Now()))
		select {
		case <-ctx.Done():
			return
		case <-timer.C():
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

// manifestAccept lists every manifest type, so the registry answers with
// the digest of what a pull by tag gets (an index for multi-platform
// images).
var manifestAccept = strings.Join([]string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}, ", ")

// errManifestUnknown is a tag the registry does not have.
var errManifestUnknown = errors.New("manifest unknown")

// apiEndpoint returns the base URL of a registry's API and the repository
// name to use there (Docker Hub's official images live under library/).
func apiEndpoint(host, repository string) (string, string) {
	switch strings.ToLower(host) {
	case "docker.io", "index.docker.io", "registry.hub.docker.com", "registry-1.docker.io":
		if !strings.Contains(repository, "/") {
			repository = "library/" + repository
		}
		return "https://registry-1.docker.io", repository
	}
	scheme := "https"
	if store.IsLoopback(host) {
		// Like Docker, loopback registries are spoken to in plain HTTP.
		scheme = "http"
	}
	return scheme + "://" + host, repository
}

// headDigest returns the digest a registry's tag points to, with a manifest
// HEAD request: anonymous first, then with the credentials the registry's
// challenge asks for (a Docker bearer token, or Basic).
func (s *Service) headDigest(ctx context.Context, host, repository, tag string) (string, error) {
	base, repo := apiEndpoint(host, repository)
	u := base + "/v2/" + repo + "/manifests/" + url.PathEscape(tag)
	resp, err := s.manifestRequest(ctx, http.MethodHead, u, "")
	if err != nil {
		return "", err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		challenge := resp.Header.Get("WWW-Authenticate")
		resp.Body.Close()
		authz, err := s.authorize(ctx, host, repo, challenge)
		if err != nil {
			return "", err
		}
		if resp, err = s.manifestRequest(ctx, http.MethodHead, u, authz); err != nil {
			return "", err
		}
		if resp.StatusCode == http.StatusOK && resp.Header.Get("Docker-Content-Digest") == "" {
			// A registry that does not send the digest: read the manifest.
			resp.Body.Close()
			if resp, err = s.manifestRequest(ctx, http.MethodGet, u, authz); err != nil {
				return "", err
			}
		}
	} else if resp.StatusCode == http.StatusOK && resp.Header.Get("Docker-Content-Digest") == "" {
		resp.Body.Close()
		if resp, err = s.manifestRequest(ctx, http.MethodGet, u, ""); err != nil {
			return "", err
		}
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return "", fmt.Errorf("%s/%s:%s: %w", host, repository, tag, errManifestUnknown)
	default:
		return "", fmt.Errorf("%s/%s:%s: HEAD manifest: %s", host, repository, tag, resp.Status)
	}
	if d := resp.Header.Get("Docker-Content-Digest"); d != "" {
		return d, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(body)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

func (s *Service) manifestRequest(ctx context.Context, method, u, authz string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", manifestAccept)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u, refusal(err))
	}
	return resp, nil
}

// authorize answers a registry's challenge: a bearer token from its token
// service (with the configured login, if any), or Basic.
func (s *Service) authorize(ctx context.Context, host, repo, challenge string) (string, error) {
	user, pass := "", ""
	if s.creds != nil {
		var err error
		if user, pass, err = s.creds(ctx, host); err != nil {
			return "", fmt.Errorf("credentials for %s: %w", host, err)
		}
	}
	scheme, params := parseChallenge(challenge)
	switch strings.ToLower(scheme) {
	case "basic":
		if user == "" {
			return "", fmt.Errorf("%s asks for a login and none is configured", host)
		}
		req, _ := http.NewRequest(http.MethodGet, "http://x", nil)
		req.SetBasicAuth(user, pass)
		return req.Header.Get("Authorization"), nil
	case "bearer":
	default:
		return "", fmt.Errorf("%s: unsupported authentication challenge %q", host, scheme)
	}
	realm := params["realm"]
	if realm == "" {
		return "", fmt.Errorf("%s: bearer challenge without a realm", host)
	}
	q := url.Values{}
	if svc := params["service"]; svc != "" {
		q.Set("service", svc)
	}
	scope := params["scope"]
	if scope == "" {
		scope = "repository:" + repo + ":pull"
	}
	q.Set("scope", scope)
	tu, err := url.Parse(realm)
	if err != nil {
		return "", fmt.Errorf("%s: bad token realm: %w", host, err)
	}
	tu.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, tu.String(), nil)
	if err != nil {
		return "", err
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("%s: fetching a token: %w", host, refusal(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: token service answered %s", host, resp.Status)
	}
	var tok struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tok); err != nil {
		return "", fmt.Errorf("%s: decoding the token: %w", host, err)
	}
	t := tok.Token
	if t == "" {
		t = tok.AccessToken
	}
	if t == "" {
		return "", fmt.Errorf("%s: the token service returned no token", host)
	}
	return "Bearer " + t, nil
}

// refusal returns the egress policy's refusal inside a client error, whose
// message names the policy's reason without the transport's wrapping; other
// errors are returned as they are.
func refusal(err error) error {
	var re *egress.RefusedError
	if errors.As(err, &re) {
		return re
	}
	return err
}

// parseChallenge parses `Bearer realm="...",service="...",scope="..."`.
func parseChallenge(h string) (string, map[string]string) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	params := map[string]string{}
	for rest != "" {
		rest = strings.TrimLeft(rest, " ,")
		key, after, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		key = strings.ToLower(strings.TrimSpace(key))
		var val string
		if strings.HasPrefix(after, `"`) {
			after = after[1:]
			var b strings.Builder
			i := 0
			for ; i < len(after); i++ {
				c := after[i]
				if c == '\\' && i+1 < len(after) {
					i++
					b.WriteByte(after[i])
					continue
				}
				if c == '"' {
					break
				}
				b.WriteByte(c)
			}
			val = b.String()
			if i < len(after) {
				i++
			}
			rest = after[i:]
		} else {
			val, rest, _ = strings.Cut(after, ",")
			val = strings.TrimSpace(val)
		}
		params[key] = val
	}
	return scheme, params
}
