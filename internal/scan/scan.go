package scan

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/errdefs"
	"github.com/gantryhq/gantry/internal/sbom"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/store/manifest"
	"github.com/gantryhq/gantry/internal/vulndb"
)

// Errors of the scan domain.
var (
	// ErrNotImage: the manifest is not an image (an artifact, say).
	ErrNotImage = errdefs.New("not an image", errdefs.ErrInvalid)
	// ErrNoReport: the image has not been scanned.
	ErrNoReport = errdefs.New("no scan report", errdefs.ErrNotFound)
	// ErrQuarantined: a pull refused by the registry's quarantine policy.
	ErrQuarantined = errdefs.New("quarantined", errdefs.ErrDenied)
)

// Service scans images of the server's registries (and of other
// registries), keeps their latest reports, attaches SBOMs and reports to
// scanned manifests as referrers, rematches stored packages after every
// vulnerability database import, and enforces the registries' scan
// policies.
type Service struct {
	db     *db.DB
	store  *store.Store
	vulns  *vulndb.DB
	sbom   *sbom.Extractor
	remote Remote
	log    *slog.Logger
	now    func() time.Time
	sem    chan struct{} // scans running at once

	mu       sync.Mutex
	matcher  *vulndb.Matcher              // snapshot of the database, by generation
	policies map[string]map[string]Policy // registry -> repository ("" the registry's own) -> policy

	onAffected func(Affected) // told about images a rescan found newly affected

	queue chan Target // scan-on-push work
	stop  func()
	done  sync.WaitGroup
}

// Option configures a Service.
type Option func(*Service)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithRemote sets how images of other registries are read (ScanRemote).
func WithRemote(r Remote) Option { return func(s *Service) { s.remote = r } }

// WithConcurrency sets how many scans run at once (default 2); others
// wait their turn.
func WithConcurrency(n int) Option {
	return func(s *Service) { s.sem = make(chan struct{}, max(1, n)) }
}

// New returns the scan service.
func New(d *db.DB, st *store.Store, vulns *vulndb.DB, x *sbom.Extractor, opts ...Option) *Service {
	s := &Service{
		db:       d,
		store:    st,
		vulns:    vulns,
		sbom:     x,
		log:      slog.New(slog.DiscardHandler),
		now:      time.Now,
		sem:      make(chan struct{}, 2),
		policies: map[string]map[string]Policy{},
		queue:    make(chan Target, 1024),
		stop:     func() {},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Target names an image in one of the server's registries: a tag or a
// digest in a repository.
type Target struct {
	Registry, Repository, Reference string
}

func (t Target) String() string {
	sep := ":"
	if store.IsDigest(t.Reference) {
		sep = "@"
	}
	return t.Registry + "/" + t.Repository + sep + t.Reference
}

// source is where a scan reads an image from: the store or another
// registry.
type source interface {
	manifest(ctx context.Context, ref string) (mediaType string, body []byte, d digest.Digest, err error)
	sbom.Opener
}

// storeSource reads an image from a repository of the store.
type storeSource struct {
	st            *store.Store
	registry, rep string
}

func (s storeSource) manifest(ctx context.Context, ref string) (string, []byte, digest.Digest, error) {
	m, err := s.st.GetManifest(ctx, s.registry, s.rep, ref)
	if err != nil {
		return "", nil, "", err
	}
	return m.MediaType, m.Body, m.Digest, nil
}

func (s storeSource) OpenLayer(ctx context.Context, l sbom.Layer) (io.ReadCloser, error) {
	f, _, err := s.st.OpenBlob(ctx, s.registry, s.rep, l.Digest)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// image is one platform image of a scan and what was found in it.
type image struct {
	digest   digest.Digest
	platform string
	inv      *sbom.Inventory
}

// group is one platform image's packages as stored for rescans.
type group struct {
	Platform string          `json:"platform,omitempty"`
	Digest   string          `json:"digest"`
	Status   string          `json:"status"`
	OS       string          `json:"os,omitempty"`
	Packages []storedPackage `json:"packages"`
}

type storedPackage struct {
	Ecosystem string `json:"e"`
	Name      string `json:"n"`
	Version   string `json:"v"`
	Path      string `json:"p,omitempty"`
	// Source is the name advisories use, when not Name (sbom.Package).
	Source string `json:"s,omitempty"`
}

// matchName is the name the package is matched by.
func (p storedPackage) matchName() string { return cmp.Or(p.Source, p.Name) }

// Scan scans an image of one of the server's registries, stores its report
// (and one per platform image of an index), and attaches SBOMs and reports
// to the scanned manifests as referrers. run is the task run asking, if
// any; image is the reference to print (the login-server form).
func (s *Service) Scan(ctx context.Context, t Target, image, run string) (*Report, error) {
	if err := s.acquire(ctx); err != nil {
		return nil, err
	}
	defer s.release()
	src := storeSource{st: s.store, registry: t.Registry, rep: t.Repository}
	rep, imgs, groups, err := s.scan(ctx, src, image, t.Reference, t.Registry)
	if err != nil {
		return nil, err
	}
	rep.Run = run
	if err := s.save(ctx, t, rep, imgs, groups); err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "image scanned", "image", image, "digest", rep.Digest, "status", rep.Status,
		"packages", rep.Packages, "vulnerabilities", len(rep.Vulnerabilities), "run", run)
	return rep, nil
}

func (s *Service) acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Service) release() { <-s.sem }

// scan reads the image ref from src, per platform, and matches its
// packages; registry is the one whose allowlist applies ("" the global
// one only).
func (s *Service) scan(ctx context.Context, src source, name, ref, registry string) (*Report, []image, []group, error) {
	mt, body, d, err := src.manifest(ctx, ref)
	if err != nil {
		return nil, nil, nil, err
	}
	m, err := manifest.Parse(mt, body)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	var imgs []image
	if manifest.IsIndex(m.MediaType) {
		for _, c := range m.Manifests {
			if attestation(c) {
				continue
			}
			cmt, cbody, _, err := src.manifest(ctx, c.Digest.String())
			if err != nil {
				return nil, nil, nil, fmt.Errorf("%s, platform %s: %w", name, platformOf(c), err)
			}
			cm, err := manifest.Parse(cmt, cbody)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("%s, platform %s: %w", name, platformOf(c), err)
			}
			inv, err := s.inventory(ctx, src, cm)
			if errors.Is(err, ErrNotImage) {
				continue // an artifact in the index
			}
			if err != nil {
				return nil, nil, nil, fmt.Errorf("%s, platform %s: %w", name, platformOf(c), err)
			}
			imgs = append(imgs, image{digest: c.Digest, platform: platformOf(c), inv: inv})
		}
		if len(imgs) == 0 {
			return nil, nil, nil, fmt.Errorf("%s: the index lists no image: %w", name, ErrNotImage)
		}
	} else {
		inv, err := s.inventory(ctx, src, m)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		imgs = []image{{digest: d, inv: inv}}
	}
	groups := make([]group, 0, len(imgs))
	rep := &Report{Image: name, Digest: d.String(), ScannedAt: s.now().UTC()}
	for _, img := range imgs {
		groups = append(groups, groupOf(img))
		rep.LayersRead += img.inv.LayersRead
		rep.LayersCached += img.inv.LayersCached
		for _, n := range img.inv.Notes {
			if img.platform != "" {
				n = img.platform + ": " + n
			}
			rep.Notes = append(rep.Notes, n)
		}
	}
	if err := s.assemble(ctx, rep, groups, registry); err != nil {
		return nil, nil, nil, err
	}
	return rep, imgs, groups, nil
}

// inventory lists the packages of one image manifest.
func (s *Service) inventory(ctx context.Context, src source, m *manifest.Manifest) (*sbom.Inventory, error) {
	if m.Config == nil || m.Subject != nil || !isImageConfig(m.Config.MediaType) {
		return nil, fmt.Errorf("artifact type %q: %w", m.ArtifactType, ErrNotImage)
	}
	layers := make([]sbom.Layer, 0, len(m.Layers))
	for _, l := range m.Layers {
		layers = append(layers, sbom.Layer{Digest: l.Digest, MediaType: l.MediaType, Size: l.Size})
	}
	return s.sbom.Inventory(ctx, layers, src)
}

func isImageConfig(mt string) bool {
	return mt == ocispec.MediaTypeImageConfig || mt == "application/vnd.docker.container.image.v1+json"
}

// attestation reports an index entry that is a build attestation, not a
// platform image (BuildKit's provenance and SBOM entries).
func attestation(d ocispec.Descriptor) bool {
	if d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
		return true
	}
	return d.Platform != nil && d.Platform.OS == "unknown" && d.Platform.Architecture == "unknown"
}

func platformOf(d ocispec.Descriptor) string {
	if d.Platform == nil {
		return d.Digest.String()
	}
	p := d.Platform.OS + "/" + d.Platform.Architecture
	if d.Platform.Variant != "" {
		p += "/" + d.Platform.Variant
	}
	return p
}

func groupOf(img image) group {
	g := group{Platform: img.platform, Digest: img.digest.String(), Status: StatusScanned, OS: osName(img.inv.OS)}
	if img.inv.Unscanned() {
		g.Status = StatusUnscanned
	}
	g.Packages = make([]storedPackage, 0, len(img.inv.Packages))
	for _, p := range img.inv.Packages {
		g.Packages = append(g.Packages, storedPackage{Ecosystem: p.Ecosystem, Name: p.Name, Version: p.Version, Path: p.Path, Source: p.Source})
	}
	return g
}

func osName(o sbom.OS) string {
	if o.PrettyName != "" {
		return o.PrettyName
	}
	return strings.TrimSpace(o.ID + " " + o.VersionID)
}

// assemble matches the groups' packages against the database and fills the
// report's findings, counts and status. registry is the registry whose
// allowlist applies ("" only the global one).
func (s *Service) assemble(ctx context.Context, rep *Report, groups []group, registry string) error {
	m, err := s.snapshot(ctx)
	if err != nil {
		return err
	}
	allowed, err := s.allowlist(ctx, registry)
	if err != nil {
		return err
	}
	assemble(rep, groups, m, allowed)
	st, err := s.vulns.Stats(ctx)
	if err != nil {
		return err
	}
	rep.Database = Database{Generation: m.Version(), Advisories: st.Advisories, LastUpdate: st.LastUpdate}
	return nil
}

// assemble is the matching part of Service.assemble, shared by scans and
// rescans.
func assemble(rep *Report, groups []group, m packageMatcher, allowed func(string, []string) bool) {
	rep.Packages, rep.Platforms, rep.Vulnerabilities = 0, nil, nil
	rep.Status, rep.OS = StatusUnscanned, ""
	type key struct{ id, eco, name, version string }
	seen := map[key]int{}
	for _, g := range groups {
		pkgs := make([]vulndb.Package, 0, len(g.Packages))
		installed := map[pkgKey][]storedPackage{} // what each package matched stands for
		for _, p := range g.Packages {
			k := pkgKey{p.Ecosystem, p.matchName(), p.Version}
			if _, ok := installed[k]; !ok {
				pkgs = append(pkgs, vulndb.Package{Ecosystem: p.Ecosystem, Name: p.matchName(), Version: p.Version})
			}
			installed[k] = append(installed[k], p)
		}
		vs := findings(m.Match(pkgs), installed, allowed)
		rep.Packages += len(g.Packages)
		if g.Status == StatusScanned {
			rep.Status = StatusScanned
		}
		if rep.OS == "" {
			rep.OS = g.OS
		}
		if g.Platform != "" {
			p := Platform{Platform: g.Platform, Digest: g.Digest, Status: g.Status, OS: g.OS, Packages: len(g.Packages)}
			for _, v := range vs {
				p.Summary.add(v)
			}
			rep.Platforms = append(rep.Platforms, p)
		}
		for _, v := range vs {
			k := key{v.ID, v.Package.Ecosystem, v.Package.Name, v.Package.Version}
			if i, ok := seen[k]; ok {
				if g.Platform != "" {
					rep.Vulnerabilities[i].Platforms = append(rep.Vulnerabilities[i].Platforms, g.Platform)
				}
				continue
			}
			if g.Platform != "" {
				v.Platforms = []string{g.Platform}
			}
			seen[k] = len(rep.Vulnerabilities)
			rep.Vulnerabilities = append(rep.Vulnerabilities, v)
		}
	}
	if rep.Vulnerabilities == nil {
		rep.Vulnerabilities = []Vulnerability{}
	}
	sortFindings(rep.Vulnerabilities)
	rep.summarize()
}

// snapshot returns the matcher of the database's current generation,
// loading it when the database changed.
func (s *Service) snapshot(ctx context.Context) (*vulndb.Matcher, error) {
	gen, err := s.vulns.Generation(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	m := s.matcher
	s.mu.Unlock()
	if m != nil && m.Version() == gen {
		return m, nil
	}
	m, err = s.vulns.Matcher(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.matcher == nil || s.matcher.Version() < m.Version() {
		s.matcher = m
	}
	s.mu.Unlock()
	return m, nil
}

// save stores the report of every scanned manifest and attaches the SBOMs
// and reports as referrers. A failure to attach (a full quota, say) is a
// note in the report, not a failed scan.
func (s *Service) save(ctx context.Context, t Target, rep *Report, imgs []image, groups []group) error {
	rows := []row{{digest: rep.Digest, report: rep, groups: groups}}
	if len(imgs) > 1 || imgs[0].platform != "" {
		// An index: each platform image (rep.Platforms, in imgs' order)
		// has a report of its own.
		for i, p := range rep.Platforms {
			g := groups[i]
			g.Platform = "" // stored as an image of its own: a rescan keeps its report's shape
			rows = append(rows, row{digest: p.Digest, report: platformReport(rep, p), groups: []group{g}})
		}
	}
	for _, r := range rows {
		if err := s.storeReport(ctx, t.Registry, t.Repository, r); err != nil {
			return err
		}
	}
	for i, img := range imgs {
		r := rows[0]
		if len(rows) > 1 {
			r = rows[i+1]
		}
		if err := s.attach(ctx, t, img, r.report); err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("attaching the SBOM and report to %s: %v", img.digest, err))
			s.log.WarnContext(ctx, "attaching scan results", "image", rep.Image, "err", err)
		}
	}
	if len(rows) > 1 {
		if err := s.attachReport(ctx, t, digest.Digest(rep.Digest), rep); err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("attaching the report to %s: %v", rep.Digest, err))
		}
	}
	return nil
}

// platformReport is the report of one platform image of an index, taken
// from the index's report.
func platformReport(rep *Report, p Platform) *Report {
	sub := *rep
	sub.Image = rep.Image + "@" + p.Digest
	sub.Digest, sub.Status, sub.OS, sub.Packages, sub.Summary = p.Digest, p.Status, p.OS, p.Packages, p.Summary
	sub.Platforms, sub.Notes = nil, nil
	sub.Vulnerabilities = []Vulnerability{}
	for _, v := range rep.Vulnerabilities {
		if slices.Contains(v.Platforms, p.Platform) {
			v.Platforms = nil
			sub.Vulnerabilities = append(sub.Vulnerabilities, v)
		}
	}
	return &sub
}

type row struct {
	digest string
	report *Report
	groups []group
}

func (s *Service) storeReport(ctx context.Context, registry, repo string, r row) error {
	rj, err := json.Marshal(r.report)
	if err != nil {
		return err
	}
	pj, err := json.Marshal(r.groups)
	if err != nil {
		return err
	}
	_, err = s.db.W.ExecContext(ctx, `INSERT INTO scan_reports(registry, digest, repository, status, packages, report, generation, worst, fingerprint, scanned_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(registry, digest) DO UPDATE SET repository = excluded.repository, status = excluded.status,
			packages = excluded.packages, report = excluded.report, generation = excluded.generation,
			worst = excluded.worst, fingerprint = excluded.fingerprint, scanned_at = excluded.scanned_at`,
		registry, r.digest, repo, r.report.Status, pj, rj, r.report.Database.Generation, r.report.Summary.Worst(),
		fingerprint(r.report.Vulnerabilities), db.FormatTime(r.report.ScannedAt))
	if err != nil {
		return fmt.Errorf("storing the scan report of %s: %w", r.digest, err)
	}
	return nil
}

// Latest returns the stored report of an image of the server's registries
// (scan show), with the registry's allowlist as it is now.
func (s *Service) Latest(ctx context.Context, t Target) (*Report, error) {
	m, err := s.store.GetManifest(ctx, t.Registry, t.Repository, t.Reference)
	if err != nil {
		return nil, err
	}
	rep, err := s.report(ctx, t.Registry, m.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t, err)
	}
	return rep, nil
}

func (s *Service) report(ctx context.Context, registry string, d digest.Digest) (*Report, error) {
	var rj []byte
	err := s.db.R.QueryRowContext(ctx, `SELECT report FROM scan_reports WHERE registry = ? AND digest = ?`, registry, d.String()).Scan(&rj)
	if errors.Is(err, errNoRows) {
		return nil, fmt.Errorf("%s has not been scanned: %w", d, ErrNoReport)
	}
	if err != nil {
		return nil, err
	}
	var rep Report
	if err := json.Unmarshal(rj, &rep); err != nil {
		return nil, fmt.Errorf("reading the scan report of %s: %w", d, err)
	}
	allowed, err := s.allowlist(ctx, registry)
	if err != nil {
		return nil, err
	}
	for i := range rep.Vulnerabilities {
		v := &rep.Vulnerabilities[i]
		v.Allowlisted = allowed(v.ID, v.Aliases)
	}
	rep.summarize()
	return &rep, nil
}

// DatabaseInfo is what the vulnerability database holds.
type DatabaseInfo struct {
	vulndb.Stats
	Generation int64
}

// Database describes the vulnerability database.
func (s *Service) Database(ctx context.Context) (DatabaseInfo, error) {
	st, err := s.vulns.Stats(ctx)
	if err != nil {
		return DatabaseInfo{}, err
	}
	gen, err := s.vulns.Generation(ctx)
	return DatabaseInfo{Stats: st, Generation: gen}, err
}
