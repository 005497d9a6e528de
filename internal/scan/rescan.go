package scan

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	digest "github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/egress"
	"github.com/gantryhq/gantry/internal/errdefs"
	"github.com/gantryhq/gantry/internal/oci"
	"github.com/gantryhq/gantry/internal/remote"
	"github.com/gantryhq/gantry/internal/sbom"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/store/manifest"
	"github.com/gantryhq/gantry/internal/vulndb"
)

// ImportResult is a database import and the rescan that followed it.
type ImportResult struct {
	vulndb.ImportResult
	Rescan RescanResult
}

// RescanResult says what a rematch of the stored packages found.
type RescanResult struct {
	// Images rematched, and how many of them have different findings.
	Images, Changed int
	// Affected lists the images with findings they did not have before.
	Affected []Affected
	Duration time.Duration
}

// Affected is an image that a rescan found newly affected.
type Affected struct {
	Registry, Repository, Digest string
	// New are the advisory IDs found that were not before.
	New []string
	// Quarantined: the registry's policy now refuses its pulls.
	Quarantined bool
}

// WithAffectedHook sets a function told about every image a rescan found newly
// affected (metrics).
func WithAffectedHook(fn func(Affected)) Option { return func(s *Service) { s.onAffected = fn } }

// ImportZip imports a zip of OSV files into the database, then rematches
// every stored report.
func (s *Service) ImportZip(ctx context.Context, r io.ReaderAt, size int64, source string) (ImportResult, error) {
	res, err := s.vulns.ImportZip(ctx, r, size, source)
	if err != nil {
		return ImportResult{ImportResult: res}, err
	}
	out := ImportResult{ImportResult: res}
	out.Rescan, err = s.Rescan(ctx)
	return out, err
}

// maxDatabaseArtifact bounds the zip of a database artifact (UpdateFrom).
const maxDatabaseArtifact = 2 << 30

// UpdateFrom imports the database distributed as an OCI artifact (a
// manifest whose layer is a zip of OSV files, e.g. pushed with `oras push
// REF all.zip:application/zip`): from a registry of this server, or
// through the registry client from another one.
func (s *Service) UpdateFrom(ctx context.Context, ref oci.Reference, local *Target, cred remote.Credential, reach egress.Reach) (ImportResult, error) {
	var src source
	r := ref.Ref()
	if local != nil {
		src = storeSource{st: s.store, registry: local.Registry, rep: local.Repository}
		r = local.Reference
	} else {
		rs, err := s.remoteSource(ref, cred, reach)
		if err != nil {
			return ImportResult{}, err
		}
		src = rs
	}
	mt, body, _, err := src.manifest(ctx, r)
	if err != nil {
		return ImportResult{}, fmt.Errorf("database artifact %s: %w", ref, err)
	}
	m, err := manifest.Parse(mt, body)
	if err != nil {
		return ImportResult{}, fmt.Errorf("database artifact %s: %w", ref, err)
	}
	var layer *manifestLayer
	var types []string
	for _, l := range m.Layers {
		types = append(types, l.MediaType)
		if strings.HasSuffix(l.MediaType, "zip") {
			layer = &manifestLayer{digest: l.Digest, size: l.Size, mediaType: l.MediaType}
			break
		}
	}
	if layer == nil {
		return ImportResult{}, fmt.Errorf("database artifact %s has no zip layer (layers: %s); push the OSV zip as application/zip: %w",
			ref, strings.Join(types, ", "), errdefs.ErrInvalid)
	}
	if layer.size > maxDatabaseArtifact {
		return ImportResult{}, fmt.Errorf("database artifact %s: its zip is %d bytes, over the %d limit: %w", ref, layer.size, int64(maxDatabaseArtifact), errdefs.ErrTooLarge)
	}
	rc, err := src.OpenLayer(ctx, layer.sbomLayer())
	if err != nil {
		return ImportResult{}, fmt.Errorf("database artifact %s: %w", ref, err)
	}
	defer rc.Close()
	f, err := os.CreateTemp("", "gantry-vulndb-*.zip")
	if err != nil {
		return ImportResult{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	vr := layer.digest.Verifier()
	n, err := io.Copy(io.MultiWriter(f, vr), io.LimitReader(rc, maxDatabaseArtifact+1))
	if err != nil {
		return ImportResult{}, fmt.Errorf("database artifact %s: reading its zip: %w", ref, err)
	}
	if n != layer.size || !vr.Verified() {
		return ImportResult{}, fmt.Errorf("database artifact %s: its zip does not match %s: %w", ref, layer.digest, errdefs.ErrInvalid)
	}
	return s.ImportZip(ctx, f, n, ref.String())
}

type manifestLayer struct {
	digest    digest.Digest
	size      int64
	mediaType string
}

func (l *manifestLayer) sbomLayer() sbom.Layer {
	return sbom.Layer{Digest: l.digest, MediaType: l.mediaType, Size: l.size}
}

// Rescan matches every stored report's packages against the database as it
// is now, without reading any image again, and records the new findings.
// Images that gained findings are logged, passed to the affected hook and
// returned. Reports are matched on every CPU; only those whose findings
// changed are written again (in batches), the others get the new
// generation.
func (s *Service) Rescan(ctx context.Context) (RescanResult, error) {
	start := s.now()
	m, err := s.snapshot(ctx)
	if err != nil {
		return RescanResult{}, err
	}
	st, err := s.vulns.Stats(ctx)
	if err != nil {
		return RescanResult{}, err
	}
	allows, err := s.allowlists(ctx)
	if err != nil {
		return RescanResult{}, err
	}
	now := s.now().UTC()
	db := Database{Generation: m.Version(), Advisories: st.Advisories, LastUpdate: st.LastUpdate}

	rows, err := s.db.L.QueryContext(ctx, `SELECT registry, digest, repository, packages, fingerprint FROM scan_reports ORDER BY registry, digest`)
	if err != nil {
		return RescanResult{}, fmt.Errorf("reading stored reports: %w", err)
	}
	jobs := make(chan rescanJob)
	results := make(chan rescanResult)
	var g errgroup.Group
	mm := newMemo(m)
	for range max(1, runtime.GOMAXPROCS(0)) {
		g.Go(func() error {
			for j := range jobs {
				results <- s.rematch(ctx, j, mm, allows, db, now)
			}
			return nil
		})
	}
	readErr := make(chan error, 1)
	go func() {
		defer close(jobs)
		defer rows.Close()
		for rows.Next() {
			var j rescanJob
			if err := rows.Scan(&j.registry, &j.digest, &j.repo, &j.packages, &j.fingerprint); err != nil {
				readErr <- err
				return
			}
			select {
			case jobs <- j:
			case <-ctx.Done():
				readErr <- ctx.Err()
				return
			}
		}
		readErr <- rows.Err()
	}()
	go func() { _ = g.Wait(); close(results) }()

	var res RescanResult
	var batch []rescanResult
	var werr error
	for r := range results {
		if r.err != nil {
			s.log.WarnContext(ctx, "rescan: unreadable stored report", "registry", r.registry, "digest", r.digest, "err", r.err)
			continue
		}
		res.Images++
		if r.report == nil {
			continue
		}
		res.Changed++
		if len(r.added) > 0 {
			a := Affected{Registry: r.registry, Repository: r.repo, Digest: r.digest, New: r.added}
			if p, err := s.PolicyFor(ctx, r.registry, r.repo); err == nil && p.Quarantine != "" && r.summary.AtOrAbove(p.Quarantine) > 0 {
				a.Quarantined = true
			}
			res.Affected = append(res.Affected, a)
		}
		if batch = append(batch, r); len(batch) >= 64 && werr == nil {
			werr = s.writeRescanned(ctx, batch, m.Version())
			batch = batch[:0]
		}
	}
	if err := <-readErr; err != nil {
		return res, fmt.Errorf("reading stored reports: %w", err)
	}
	if werr == nil {
		werr = s.writeRescanned(ctx, batch, m.Version())
	}
	if werr == nil {
		_, werr = s.db.W.ExecContext(ctx, `UPDATE scan_reports SET generation = ? WHERE generation <> ?`, m.Version(), m.Version())
	}
	if werr != nil {
		return res, fmt.Errorf("storing rescanned reports: %w", werr)
	}
	res.Duration = s.now().Sub(start)
	for _, a := range res.Affected {
		s.log.WarnContext(ctx, "rescan: image newly affected", "registry", a.Registry, "repository", a.Repository,
			"digest", a.Digest, "advisories", strings.Join(a.New, ","), "quarantined", a.Quarantined)
		if s.onAffected != nil {
			s.onAffected(a)
		}
	}
	s.log.InfoContext(ctx, "rescan done", "images", res.Images, "changed", res.Changed, "affected", len(res.Affected),
		"generation", m.Version(), "duration", res.Duration)
	return res, nil
}

type rescanJob struct {
	registry, digest, repo string
	packages               []byte
	fingerprint            string
}

type rescanResult struct {
	registry, digest, repo string
	err                    error
	// report is the rewritten report when its findings changed, else nil.
	report      []byte
	fingerprint string
	worst       int
	summary     Summary
	added       []string // advisory IDs found that were not before
}

// rematch matches one stored report's packages again; only when the
// findings differ from the stored fingerprint is the stored report read
// and rewritten.
func (s *Service) rematch(ctx context.Context, j rescanJob, m packageMatcher, allows map[string]func(string, []string) bool,
	db Database, now time.Time) rescanResult {
	out := rescanResult{registry: j.registry, digest: j.digest, repo: j.repo}
	var groups []group
	if out.err = json.Unmarshal(j.packages, &groups); out.err != nil {
		return out
	}
	allowed := allows[""]
	if a, ok := allows[j.registry]; ok {
		allowed = a
	}
	var fresh Report
	assemble(&fresh, groups, m, allowed)
	fp := fingerprint(fresh.Vulnerabilities)
	if fp == j.fingerprint {
		return out
	}
	var rj []byte
	if out.err = s.db.R.QueryRowContext(ctx, `SELECT report FROM scan_reports WHERE registry = ? AND digest = ?`, j.registry, j.digest).Scan(&rj); out.err != nil {
		return out
	}
	var rep Report
	if out.err = json.Unmarshal(rj, &rep); out.err != nil {
		return out
	}
	beforeIDs := ids(rep.Vulnerabilities)
	notes, scanned, image, run, read, cached := rep.Notes, rep.ScannedAt, rep.Image, rep.Run, rep.LayersRead, rep.LayersCached
	rep = fresh
	rep.Image, rep.Digest, rep.Run, rep.LayersRead, rep.LayersCached = image, j.digest, run, read, cached
	rep.Notes, rep.ScannedAt, rep.RescannedAt, rep.Database = notes, scanned, &now, db
	out.fingerprint = fp
	out.added = missing(ids(rep.Vulnerabilities), beforeIDs)
	out.summary, out.worst = rep.Summary, rep.Summary.Worst()
	out.report, out.err = json.Marshal(&rep)
	return out
}

// fingerprint identifies a list of findings for change detection: a hash
// of what each finding says.
func fingerprint(vs []Vulnerability) string {
	h := sha256.New()
	for _, v := range vs {
		for _, f := range []string{v.ID, v.Package.Ecosystem, v.Package.Name, v.Package.Version, v.Severity, v.FixedVersion, strconv.FormatBool(v.Allowlisted)} {
			h.Write([]byte(f))
			h.Write([]byte{0})
		}
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// writeRescanned stores a batch of rewritten reports in one transaction.
func (s *Service) writeRescanned(ctx context.Context, batch []rescanResult, gen int64) error {
	if len(batch) == 0 {
		return nil
	}
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `UPDATE scan_reports SET report = ?, worst = ?, fingerprint = ?, generation = ? WHERE registry = ? AND digest = ?`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, u := range batch {
			if _, err := st.ExecContext(ctx, u.report, u.worst, u.fingerprint, gen, u.registry, u.digest); err != nil {
				return err
			}
		}
		return nil
	})
}

// allowlists returns the allowlist checks in force, per registry ("" the
// global one alone).
func (s *Service) allowlists(ctx context.Context) (map[string]func(string, []string) bool, error) {
	out := map[string]func(string, []string) bool{}
	regs := []string{""}
	rs, err := s.store.ListRegistries(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		regs = append(regs, r.Name)
	}
	for _, r := range regs {
		if out[r], err = s.allowlist(ctx, r); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ids lists the distinct advisory IDs of findings, sorted.
func ids(vs []Vulnerability) []string {
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		out = append(out, v.ID)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// missing lists what of a (sorted) is not in b (sorted).
func missing(a, b []string) []string {
	var out []string
	for _, x := range a {
		if _, found := slices.BinarySearch(b, x); !found {
			out = append(out, x)
		}
	}
	return out
}

// Start starts the scan-on-push worker: it scans, in the background, every
// manifest a tag moves to in a registry whose policy asks for it.
func (s *Service) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	unsubscribe := s.store.Subscribe(func(e store.TagEvent) {
		if e.New == "" {
			return
		}
		p, err := s.PolicyFor(ctx, e.Registry, e.Repository)
		if err != nil || !p.ScanOnPush {
			return
		}
		select {
		case s.queue <- Target{Registry: e.Registry, Repository: e.Repository, Reference: e.New.String()}:
		default:
			s.log.Warn("scan on push: queue full, not scanning", "registry", e.Registry, "repository", e.Repository, "digest", e.New)
		}
	})
	s.stop = func() { unsubscribe(); cancel() }
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case t := <-s.queue:
				s.scanPushed(ctx, t)
			}
		}
	}()
	return nil
}

func (s *Service) scanPushed(ctx context.Context, t Target) {
	if gen, err := s.vulns.Generation(ctx); err == nil {
		var have int64
		err := s.db.R.QueryRowContext(ctx, `SELECT generation FROM scan_reports WHERE registry = ? AND digest = ?`, t.Registry, t.Reference).Scan(&have)
		if err == nil && have == gen {
			return // scanned already, against this database
		}
	}
	name := t.Registry + "/" + t.Repository + "@" + t.Reference
	if r, err := s.store.GetRegistry(ctx, t.Registry); err == nil {
		name = s.store.LoginServer(r) + "/" + t.Repository + "@" + t.Reference
	}
	_, err := s.Scan(ctx, t, name, "")
	switch {
	case err == nil || ctx.Err() != nil:
	case errors.Is(err, ErrNotImage):
		s.log.DebugContext(ctx, "scan on push: not an image", "image", name)
	default:
		s.log.WarnContext(ctx, "scan on push failed", "image", name, "err", err)
	}
}

// Ready reports the worker started.
func (s *Service) Ready(context.Context) error { return nil }

// Stop stops the scan-on-push worker; queued scans are dropped (their
// images stay unscanned until scanned again).
func (s *Service) Stop(context.Context) error {
	s.stop()
	s.done.Wait()
	return nil
}

// packageMatcher is what assemble matches packages with.
type packageMatcher interface {
	Match(pkgs []vulndb.Package) []vulndb.Finding
}

// memo remembers a matcher's findings per package for one rescan: stored
// images share most of their packages (their bases), so each distinct
// package is matched once.
type memo struct {
	m  *vulndb.Matcher
	mu sync.Mutex
	by map[vulndb.Package][]vulndb.Finding
}

func newMemo(m *vulndb.Matcher) *memo {
	return &memo{m: m, by: map[vulndb.Package][]vulndb.Finding{}}
}

func (c *memo) Match(pkgs []vulndb.Package) []vulndb.Finding {
	var out []vulndb.Finding
	for _, p := range pkgs {
		c.mu.Lock()
		fs, ok := c.by[p]
		c.mu.Unlock()
		if !ok {
			fs = c.m.Match([]vulndb.Package{p})
			c.mu.Lock()
			c.by[p] = fs
			c.mu.Unlock()
		}
		out = append(out, fs...)
	}
	return out
}
