package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/gantryhq/gantry/internal/wait"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/gantryhq/gantry/api"
)

// soakConfig is the configuration of gantry-bench soak.
type soakConfig struct {
	duration  time.Duration
	bin       string
	dir       string
	pushers   int
	pullers   int
	maxRSSMiB int64
	maxWALMiB int64
	// Server settings the soak runs with: short enough that GC and upload
	// expiry happen within a short soak, long enough that no push of the
	// soak outlives the grace window.
	gcInterval, gcGrace, uploadTTL, bodyTimeout time.Duration
}

// runSoak is gantry-bench soak: it starts a gantry server, drives it with
// concurrent pushes, pulls, deletes and GC, wrong passwords, slow and
// truncated bodies for the given time, kills it with SIGKILL halfway and
// restarts it, then checks that every acknowledged push is intact, runs a
// final GC and checks that the blob directory holds exactly the live data.
// It prints the server's resources before and after that GC and fails if
// anything acknowledged was lost, a blob does not match its digest, a
// request failed with 5xx outside the restart, or a resource went beyond
// its bound.
func runSoak(ctx context.Context, args []string, out io.Writer) error {
	var cfg soakConfig
	var minutes float64
	fs := flag.NewFlagSet("gantry-bench soak", flag.ContinueOnError)
	fs.Float64Var(&minutes, "minutes", 2, "how long to drive the server, in minutes (the checks at the end add about half a minute)")
	fs.StringVar(&cfg.bin, "gantry-bin", "bin/gantry", "the gantry binary to run as the server")
	fs.StringVar(&cfg.dir, "dir", "", "work directory (data, server log); default: a temporary directory, removed afterwards")
	fs.IntVar(&cfg.pushers, "pushers", 4, "concurrent pushing clients")
	fs.IntVar(&cfg.pullers, "pullers", 4, "concurrent pulling clients")
	fs.Int64Var(&cfg.maxRSSMiB, "max-rss-mib", 200, "fail if the server's resident memory ever exceeds this")
	fs.Int64Var(&cfg.maxWALMiB, "max-wal-mib", 64, "fail if the database's write-ahead log ever exceeds this")
	fs.DurationVar(&cfg.gcInterval, "gc-interval", 20*time.Second, "the server's --gc-interval")
	fs.DurationVar(&cfg.gcGrace, "gc-grace", 20*time.Second, "the server's --gc-grace (longer than any push of the soak takes)")
	fs.DurationVar(&cfg.uploadTTL, "upload-ttl", 20*time.Second, "the server's --upload-ttl")
	fs.DurationVar(&cfg.bodyTimeout, "body-timeout", 5*time.Second, "the server's --body-timeout")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if minutes <= 0 || minutes > 24*60 {
		return fmt.Errorf("--minutes %v: must be more than 0 and at most a day", minutes)
	}
	cfg.duration = time.Duration(minutes * float64(time.Minute))
	if cfg.dir == "" {
		dir, err := os.MkdirTemp("", "gantry-soak-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.dir = dir
	}
	srv, err := newSoakServer(cfg)
	if err != nil {
		return err
	}
	if err := srv.start(ctx); err != nil {
		return err
	}
	defer srv.stop()
	s, err := newSoak(ctx, cfg, srv)
	if err != nil {
		return err
	}
	return s.run(ctx, out)
}

// soak is one soak run: the server, the clients, what they were told was
// stored, and what went wrong.
type soak struct {
	cfg  soakConfig
	srv  *soakServer
	reg  string // registry base URL
	http *http.Client

	// down is set from just before the kill until the restarted server
	// answers (and a moment after): errors then are the restart's.
	down      atomic.Bool
	downUntil atomic.Int64 // unix nanos: errors before this are the restart's

	mu       sync.Mutex
	live     map[string]soakImage // repo:tag -> acknowledged image
	keys     []string
	problems []string

	counts sync.Map // name -> *atomic.Int64

	peakRSS, peakWAL atomic.Int64
	tags             atomic.Int64
}

// soakImage is an image whose push was acknowledged (201 to its manifest).
type soakImage struct {
	repo, tag string
	manifest  digest.Digest
}

func newSoak(ctx context.Context, cfg soakConfig, srv *soakServer) (*soak, error) {
	reg, err := srv.createRegistry(ctx, "soak")
	if err != nil {
		return nil, err
	}
	c := newClient(config{concurrency: cfg.pushers + cfg.pullers}, "admin", srv.password)
	c.Timeout = time.Minute
	return &soak{cfg: cfg, srv: srv, reg: reg, http: c, live: map[string]soakImage{}}, nil
}

func (s *soak) count(name string) {
	v, _ := s.counts.LoadOrStore(name, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (s *soak) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.problems) < 50 {
		s.problems = append(s.problems, msg)
	} else if len(s.problems) == 50 {
		s.problems = append(s.problems, "(more problems not listed)")
	}
}

// restarting reports whether an error now is the restart's doing.
func (s *soak) restarting() bool {
	return s.down.Load() || time.Now().UnixNano() < s.downUntil.Load()
}

// failed records a failed request of op: during the restart it is
// expected, otherwise a problem.
func (s *soak) failed(op string, err error) {
	if s.restarting() {
		s.count(op + " failed during the restart")
		return
	}
	s.count(op + " failed")
	s.problem("%s: %v", op, err)
}

func (s *soak) run(ctx context.Context, out io.Writer) error {
	before, err := s.srv.stats(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "soak: %s against %s (data %s); server pid %d\n", s.cfg.duration, s.reg, s.srv.data, s.srv.pid())

	wctx, cancel := context.WithTimeout(ctx, s.cfg.duration)
	defer cancel()
	var wg sync.WaitGroup
	spawn := func(f func(context.Context, *rand.Rand)) {
		seed := rand.Uint64()
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(wctx, rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)))
		}()
	}
	for range s.cfg.pushers {
		spawn(s.pusher)
	}
	for range s.cfg.pullers {
		spawn(s.puller)
	}
	spawn(s.deleter)
	spawn(s.collector)
	spawn(s.wrongPasswords)
	spawn(s.slowBodies)
	spawn(s.truncatedBodies)
	spawn(s.sampler)
	spawn(s.killer)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}

	// Let upload sessions the attacks left expire, so that the final GC
	// can remove them.
	fmt.Fprintf(out, "soak: traffic stopped; waiting %s for abandoned uploads to expire\n", s.cfg.uploadTTL)
	select {
	case <-time.After(s.cfg.uploadTTL + time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	preGC, err := s.srv.stats(ctx)
	if err != nil {
		return err
	}
	gc, err := s.srv.gc(ctx)
	if err != nil {
		return err
	}
	postGC, err := s.srv.stats(ctx)
	if err != nil {
		return err
	}
	v, err := s.verify(ctx)
	if err != nil {
		return err
	}
	s.report(out, before, preGC, postGC, gc, v)
	var fails []string
	if len(s.problems) > 0 {
		fails = append(fails, fmt.Sprintf("%d problems during the run", len(s.problems)))
	}
	if v.lost > 0 || v.corrupt > 0 {
		fails = append(fails, fmt.Sprintf("%d acknowledged images lost, %d blobs not matching their digest", v.lost, v.corrupt))
	}
	if postGC.blobs != v.liveBytes {
		fails = append(fails, fmt.Sprintf("after GC the blob directory holds %d bytes, the live data is %d", postGC.blobs, v.liveBytes))
	}
	if postGC.uploads != 0 {
		fails = append(fails, fmt.Sprintf("after GC %d bytes of uploads remain", postGC.uploads))
	}
	if p := s.peakRSS.Load(); p > s.cfg.maxRSSMiB<<20 {
		fails = append(fails, fmt.Sprintf("peak RSS %d MiB, more than %d MiB", p>>20, s.cfg.maxRSSMiB))
	}
	if p := s.peakWAL.Load(); p > s.cfg.maxWALMiB<<20 {
		fails = append(fails, fmt.Sprintf("peak WAL %d MiB, more than %d MiB", p>>20, s.cfg.maxWALMiB))
	}
	if len(fails) > 0 {
		return fmt.Errorf("soak failed: %s (server log: %s)", strings.Join(fails, "; "), s.srv.logPath)
	}
	fmt.Fprintln(out, "soak: passed")
	return nil
}

// pusher pushes images of one to three layers (a quarter of them sharing a
// base layer with other images) into eight repositories, alternating
// monolithic and chunked uploads, and records those acknowledged.
func (s *soak) pusher(ctx context.Context, rng *rand.Rand) {
	bases := [][]byte{randomBytes(rng, 256<<10), randomBytes(rng, 512<<10)}
	for ctx.Err() == nil {
		repo := fmt.Sprintf("soak/r%d", rng.IntN(8))
		tag := fmt.Sprintf("t%d", s.tags.Add(1))
		var layers [][]byte
		if rng.IntN(4) == 0 {
			layers = append(layers, bases[rng.IntN(len(bases))])
		}
		for range 1 + rng.IntN(3) {
			layers = append(layers, randomBytes(rng, 8<<10+rng.IntN(1<<20)))
		}
		if err := s.push(ctx, rng, repo, tag, layers); err != nil && ctx.Err() == nil {
			s.failed("push", err)
		}
		// About two pushes a second per client: bounded traffic, and garbage
		// that GC keeps up with.
		sleep(ctx, time.Duration(250+rng.IntN(500))*time.Millisecond)
	}
}

func (s *soak) push(ctx context.Context, rng *rand.Rand, repo, tag string, layers [][]byte) error {
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	for _, l := range layers {
		d, err := s.uploadBlob(ctx, repo, l, rng.IntN(2) == 0)
		if err != nil {
			return err
		}
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: int64(len(l))})
	}
	cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","config":{"Labels":{"soak":%q}},"rootfs":{"type":"layers","diff_ids":[]}}`, repo+":"+tag))
	cd, err := s.uploadBlob(ctx, repo, cfg, false)
	if err != nil {
		return err
	}
	m.Config = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(cfg))}
	body, _ := json.Marshal(m)
	resp, err := s.call(ctx, http.MethodPut, "/v2/"+repo+"/manifests/"+tag, body, ocispec.MediaTypeImageManifest)
	if err != nil {
		return fmt.Errorf("manifest %s:%s: %w", repo, tag, err)
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("manifest %s:%s: %s %s", repo, tag, resp.Status, resp.body)
	}
	s.mu.Lock()
	key := repo + ":" + tag
	s.live[key] = soakImage{repo: repo, tag: tag, manifest: digest.FromBytes(body)}
	s.keys = append(s.keys, key)
	s.mu.Unlock()
	s.count("push acknowledged")
	return nil
}

// uploadBlob uploads b to repo, monolithically (POST with the digest) or
// in two chunks (POST, PATCH, PUT).
func (s *soak) uploadBlob(ctx context.Context, repo string, b []byte, chunked bool) (digest.Digest, error) {
	d := digest.FromBytes(b)
	if !chunked {
		resp, err := s.call(ctx, http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), b, "application/octet-stream")
		if err != nil {
			return "", fmt.Errorf("blob %s: %w", d, err)
		}
		if resp.StatusCode != http.StatusCreated {
			return "", fmt.Errorf("blob %s: %s %s", d, resp.Status, resp.body)
		}
		return d, nil
	}
	resp, err := s.call(ctx, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, "")
	if err != nil {
		return "", fmt.Errorf("starting upload of %s: %w", d, err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("starting upload of %s: %s %s", d, resp.Status, resp.body)
	}
	loc := resp.Header.Get("Location")
	half := len(b) / 2
	resp, err = s.call(ctx, http.MethodPatch, loc, b[:half], "application/octet-stream")
	if err != nil {
		return "", fmt.Errorf("chunk of %s: %w", d, err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("chunk of %s: %s %s", d, resp.Status, resp.body)
	}
	loc = resp.Header.Get("Location")
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	resp, err = s.call(ctx, http.MethodPut, loc+sep+"digest="+d.String(), b[half:], "application/octet-stream")
	if err != nil {
		return "", fmt.Errorf("finishing upload of %s: %w", d, err)
	}
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("finishing upload of %s: %s %s", d, resp.Status, resp.body)
	}
	return d, nil
}

// puller pulls acknowledged images and checks every byte against its
// digest; an acknowledged image that is not there (and was not deleted
// meanwhile) is a loss.
func (s *soak) puller(ctx context.Context, rng *rand.Rand) {
	for ctx.Err() == nil {
		img, ok := s.pick(rng, false)
		if !ok {
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		if err := s.pull(ctx, img); err != nil && ctx.Err() == nil {
			s.failed("pull", err)
			sleep(ctx, 200*time.Millisecond)
		}
	}
}

func (s *soak) pull(ctx context.Context, img soakImage) error {
	resp, err := s.call(ctx, http.MethodGet, "/v2/"+img.repo+"/manifests/"+img.tag, nil, "")
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusNotFound && !s.isLive(img) {
		s.count("pull of an image deleted meanwhile")
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("manifest %s:%s: %s %s", img.repo, img.tag, resp.Status, resp.body)
	}
	if got := digest.FromBytes(resp.body); got != img.manifest {
		s.problem("LOST: manifest %s:%s is %s, acknowledged as %s", img.repo, img.tag, got, img.manifest)
		return nil
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(resp.body, &m); err != nil {
		return err
	}
	for _, b := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		resp, err := s.call(ctx, http.MethodGet, "/v2/"+img.repo+"/blobs/"+b.Digest.String(), nil, "")
		if err != nil {
			return err
		}
		if resp.StatusCode == http.StatusNotFound && !s.isLive(img) {
			return nil
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("blob %s of %s:%s: %s %s", b.Digest, img.repo, img.tag, resp.Status, resp.body)
		}
		if got := digest.FromBytes(resp.body); got != b.Digest {
			s.problem("CORRUPT: blob %s of %s:%s reads as %s", b.Digest, img.repo, img.tag, got)
		}
	}
	s.count("pull verified")
	return nil
}

// soakLiveImages is how many acknowledged images the deleter keeps: the
// disk holds about that many images' worth of live data however long the
// soak runs.
const soakLiveImages = 300

// deleter deletes random acknowledged images by digest, forgetting them
// first: one every second or so, and as fast as it can while more than
// soakLiveImages are live. Their blobs are garbage for GC to collect.
func (s *soak) deleter(ctx context.Context, rng *rand.Rand) {
	for ctx.Err() == nil {
		s.mu.Lock()
		n := len(s.live)
		s.mu.Unlock()
		if n <= soakLiveImages && !sleep(ctx, time.Duration(500+rng.IntN(1000))*time.Millisecond) {
			return
		}
		img, ok := s.pick(rng, true)
		if !ok {
			continue
		}
		resp, err := s.call(ctx, http.MethodDelete, "/v2/"+img.repo+"/manifests/"+img.manifest.String(), nil, "")
		switch {
		case err != nil:
			if ctx.Err() == nil {
				s.failed("delete", err)
				sleep(ctx, 200*time.Millisecond)
			}
		case resp.StatusCode != http.StatusAccepted:
			s.failed("delete", fmt.Errorf("%s:%s: %s %s", img.repo, img.tag, resp.Status, resp.body))
		default:
			s.count("delete")
		}
	}
}

// collector asks for GC passes besides the server's scheduled ones.
func (s *soak) collector(ctx context.Context, _ *rand.Rand) {
	for sleep(ctx, 15*time.Second) {
		if _, err := s.srv.client.RunGC(ctx, api.GCRequest{}); err != nil {
			if ctx.Err() == nil {
				s.failed("gc", err)
			}
			continue
		}
		s.count("gc pass requested")
	}
}

// killer kills the server with SIGKILL halfway and restarts it.
func (s *soak) killer(ctx context.Context, _ *rand.Rand) {
	if !sleep(ctx, s.cfg.duration/2) {
		return
	}
	s.down.Store(true)
	if err := s.srv.kill(); err != nil {
		s.problem("kill: %v", err)
	}
	err := s.srv.start(context.WithoutCancel(ctx))
	s.downUntil.Store(time.Now().Add(3 * time.Second).UnixNano())
	s.down.Store(false)
	if err != nil {
		s.problem("restart after kill -9: %v", err)
		return
	}
	s.count("kill -9 and restart")
}

// sampler records the server's peak memory and WAL size every second.
func (s *soak) sampler(ctx context.Context, _ *rand.Rand) {
	for sleep(ctx, time.Second) {
		if s.down.Load() {
			continue
		}
		st, err := s.srv.stats(ctx)
		if err != nil {
			continue
		}
		for v, p := range map[int64]*atomic.Int64{st.rss: &s.peakRSS, st.wal: &s.peakWAL} {
			for cur := p.Load(); v > cur && !p.CompareAndSwap(cur, v); cur = p.Load() {
			}
		}
	}
}

// pick returns a random acknowledged image; with remove, it also forgets
// it (it is about to be deleted).
func (s *soak) pick(rng *rand.Rand, remove bool) (soakImage, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.keys) > 0 {
		i := rng.IntN(len(s.keys))
		key := s.keys[i]
		img, ok := s.live[key]
		if !ok || remove {
			s.keys[i] = s.keys[len(s.keys)-1]
			s.keys = s.keys[:len(s.keys)-1]
		}
		if !ok {
			continue
		}
		if remove {
			delete(s.live, key)
		}
		return img, true
	}
	return soakImage{}, false
}

func (s *soak) isLive(img soakImage) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.live[img.repo+":"+img.tag]
	return ok
}

// soakResponse is a response with its body read.
type soakResponse struct {
	*http.Response
	body []byte
}

// call sends a registry request with the admin's credentials (the Docker
// token flow), retrying a 429 as a client does.
func (s *soak) call(ctx context.Context, method, path string, body []byte, ctype string) (soakResponse, error) {
	url := path
	if !strings.HasPrefix(url, "http") {
		url = s.reg + path
	}
	for attempt := 0; ; attempt++ {
		var r io.Reader
		if body != nil {
			r = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, url, r)
		if err != nil {
			return soakResponse{}, err
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if method == http.MethodGet && strings.Contains(path, "/manifests/") {
			req.Header.Set("Accept", ocispec.MediaTypeImageManifest)
		}
		if repository(req.URL.Path) == "" {
			// The catalog: no repository for the token flow to scope.
			req.SetBasicAuth("admin", s.srv.password)
		}
		resp, err := s.http.Do(req)
		if err != nil {
			return soakResponse{}, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return soakResponse{}, err
		}
		if resp.StatusCode == http.StatusTooManyRequests && attempt < 5 {
			s.count("429 retried")
			if !sleep(ctx, time.Second) {
				return soakResponse{}, ctx.Err()
			}
			continue
		}
		if resp.StatusCode >= 500 {
			return soakResponse{}, fmt.Errorf("%s %s: %s %s", method, path, resp.Status, b)
		}
		return soakResponse{Response: resp, body: b}, nil
	}
}

// soakVerification is what the final check found.
type soakVerification struct {
	tags, manifests, blobs int
	liveBytes              int64
	lost, corrupt, extra   int
}

// verify walks every repository and tag the registry has, reads each
// manifest and blob and checks them against their digests, and checks
// that every acknowledged image is among them. liveBytes is the size of
// the distinct blobs the remaining manifests reference: after a GC with no
// grace, the blob directory must hold exactly that.
func (s *soak) verify(ctx context.Context) (soakVerification, error) {
	var v soakVerification
	var cat struct {
		Repositories []string `json:"repositories"`
	}
	resp, err := s.call(ctx, http.MethodGet, "/v2/_catalog?n=10000", nil, "")
	if err != nil {
		return v, err
	}
	if resp.StatusCode != http.StatusOK {
		return v, fmt.Errorf("catalog: %s %s", resp.Status, resp.body)
	}
	if err := json.Unmarshal(resp.body, &cat); err != nil {
		return v, fmt.Errorf("catalog: %w (%s)", err, resp.body)
	}
	found := map[string]digest.Digest{}
	blobs := map[digest.Digest]int64{}
	manifests := map[digest.Digest]bool{}
	for _, repo := range cat.Repositories {
		var tl struct {
			Tags []string `json:"tags"`
		}
		resp, err := s.call(ctx, http.MethodGet, "/v2/"+repo+"/tags/list?n=100000", nil, "")
		if err != nil {
			return v, err
		}
		if resp.StatusCode != http.StatusOK {
			return v, fmt.Errorf("tags of %s: %s %s", repo, resp.Status, resp.body)
		}
		if err := json.Unmarshal(resp.body, &tl); err != nil {
			return v, fmt.Errorf("tags of %s: %w", repo, err)
		}
		for _, tag := range tl.Tags {
			v.tags++
			resp, err := s.call(ctx, http.MethodGet, "/v2/"+repo+"/manifests/"+tag, nil, "")
			if err != nil {
				return v, err
			}
			if resp.StatusCode != http.StatusOK {
				return v, fmt.Errorf("manifest %s:%s: %s %s", repo, tag, resp.Status, resp.body)
			}
			md := digest.FromBytes(resp.body)
			found[repo+":"+tag] = md
			manifests[md] = true
			var m ocispec.Manifest
			if err := json.Unmarshal(resp.body, &m); err != nil {
				return v, fmt.Errorf("manifest %s:%s: %w", repo, tag, err)
			}
			for _, b := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
				if _, seen := blobs[b.Digest]; seen {
					continue
				}
				resp, err := s.call(ctx, http.MethodGet, "/v2/"+repo+"/blobs/"+b.Digest.String(), nil, "")
				if err != nil {
					return v, err
				}
				if resp.StatusCode != http.StatusOK || digest.FromBytes(resp.body) != b.Digest || int64(len(resp.body)) != b.Size {
					v.corrupt++
					s.problem("CORRUPT or missing: blob %s of %s:%s: %s, %d bytes", b.Digest, repo, tag, resp.Status, len(resp.body))
					continue
				}
				blobs[b.Digest] = b.Size
				v.liveBytes += b.Size
			}
		}
	}
	v.manifests, v.blobs = len(manifests), len(blobs)
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, img := range s.live {
		switch got, ok := found[key]; {
		case !ok:
			v.lost++
			s.problems = append(s.problems, fmt.Sprintf("LOST: acknowledged %s (%s) is not in the registry", key, img.manifest))
		case got != img.manifest:
			v.lost++
			s.problems = append(s.problems, fmt.Sprintf("LOST: acknowledged %s is %s, not %s", key, got, img.manifest))
		}
	}
	v.extra = len(found) - (len(s.live) - v.lost)
	return v, nil
}

func (s *soak) report(out io.Writer, start, preGC, postGC soakStats, gc *api.GCResult, v soakVerification) {
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\tat start\tbefore GC\tafter GC\tpeak\t")
	mib := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	fmt.Fprintf(tw, "RSS\t%s\t%s\t%s\t%s\t\n", mib(start.rss), mib(preGC.rss), mib(postGC.rss), mib(s.peakRSS.Load()))
	fmt.Fprintf(tw, "open files\t%d\t%d\t%d\t\t\n", start.fds, preGC.fds, postGC.fds)
	fmt.Fprintf(tw, "goroutines\t%d\t%d\t%d\t\t\n", start.goroutines, preGC.goroutines, postGC.goroutines)
	fmt.Fprintf(tw, "WAL\t%s\t%s\t%s\t%s\t\n", mib(start.wal), mib(preGC.wal), mib(postGC.wal), mib(s.peakWAL.Load()))
	fmt.Fprintf(tw, "blob files\t%s\t%s\t%s\t\t\n", mib(start.blobs), mib(preGC.blobs), mib(postGC.blobs))
	fmt.Fprintf(tw, "upload files\t%s\t%s\t%s\t\t\n", mib(start.uploads), mib(preGC.uploads), mib(postGC.uploads))
	fmt.Fprintf(tw, "data directory\t%s\t%s\t%s\t\t\n", mib(start.data), mib(preGC.data), mib(postGC.data))
	tw.Flush()
	fmt.Fprintf(out, "\nfinal GC (grace 0): %d blobs, %s freed, %d upload sessions removed, %.2fs\n",
		gc.Blobs, mib(gc.Bytes), gc.Uploads, gc.Seconds)
	fmt.Fprintf(out, "final check: %d tags, %d manifests, %d blobs (%s live) read and verified; %d acknowledged images lost, %d blobs corrupt, %d unacknowledged pushes present\n",
		v.tags, v.manifests, v.blobs, mib(v.liveBytes), v.lost, v.corrupt, v.extra)
	fmt.Fprintln(out, "\nrequests:")
	var names []string
	s.counts.Range(func(k, _ any) bool { names = append(names, k.(string)); return true })
	slices.Sort(names)
	for _, n := range names {
		v, _ := s.counts.Load(n)
		fmt.Fprintf(out, "  %-48s %d\n", n, v.(*atomic.Int64).Load())
	}
	if len(s.problems) > 0 {
		fmt.Fprintln(out, "\nproblems:")
		for _, p := range s.problems {
			fmt.Fprintln(out, "  "+p)
		}
	}
}

// randomBytes returns n pseudo-random bytes: distinct content, cheaply.
func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b[:n]
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool { return wait.For(ctx, d) == nil }

// dirBytes sums the sizes of the regular files under dir.
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
