package vulndb

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/osv-scalibr/semantic"

	"github.com/gantryhq/gantry/internal/db"
)

// Package is what a scan asks about: a package of an OSV ecosystem, with
// the ecosystem's release where it has one ("Alpine:v3.18", "Debian:12",
// "Ubuntu:22.04", "Red Hat:...", or "Go", "npm", "PyPI", "Maven"), its
// name (Maven: "group:artifact"; Go: the module path, or "stdlib") and
// version (Go: as build info has it, "v1.2.3" or "go1.21.3").
type Package struct {
	Ecosystem, Name, Version string
}

// Finding is an advisory that affects a package.
type Finding struct {
	Package Package
	ID      string
	Aliases []string
	Summary string
	// FixedVersion is the lowest fixed version above the package's version
	// in the ranges that matched, "" if there is none.
	FixedVersion string
	Severity     Severity
	// Score is the CVSS base score when the severity comes from a vector,
	// else 0.
	Score float64
	// SeveritySource is where Severity comes from: SourceCVSSv4,
	// SourceCVSSv3 (a vector scored with github.com/pandatix/go-cvss),
	// SourceAdvisory (the advisory's own severity word) or SourceNone.
	SeveritySource string
	// Vector is the CVSS vector scored, if any.
	Vector   string
	Modified time.Time
}

// Matcher is an in-memory snapshot of the database for matching many
// package sets fast: the affected entries indexed by ecosystem base and
// name, their versions parsed once. It is immutable and safe for
// concurrent use.
type Matcher struct {
	gen   int64
	index map[string][]*entry
	log   *slog.Logger
}

// madvisory is the part of an advisory a Finding shows.
type madvisory struct {
	id, summary, source, vector string
	aliases                     []string
	severity                    Severity
	score                       float64
	modified                    time.Time
}

// entry is one affected entry, ready to match.
type entry struct {
	adv       *madvisory
	ecosystem string
	versions  map[string]bool
	ranges    []mrange
}

// mrange is a range with its events parsed and sorted.
type mrange struct {
	semver bool // SEMVER: ordered as SemVer, else by the ecosystem's ordering
	events []mevent
}

type mevent struct {
	kind string
	raw  string
	v    semantic.Version // nil for introduced "0"
}

// Version returns the generation of the database the snapshot was taken
// from (see DB.Generation).
func (m *Matcher) Version() int64 { return m.gen }

// Matcher returns a snapshot of the database for matching. Snapshots are
// cached: while the generation is unchanged, every call returns the same
// one.
func (v *DB) Matcher(ctx context.Context) (*Matcher, error) {
	gen, err := v.Generation(ctx)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cached != nil && v.cached.gen == gen {
		return v.cached, nil
	}
	m, err := v.loadMatcher(ctx)
	if err != nil {
		return nil, err
	}
	v.cached = m
	return m, nil
}

// loadMatcher reads the whole database in one read transaction.
func (v *DB) loadMatcher(ctx context.Context) (*Matcher, error) {
	tx, err := v.d.L.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("loading vulnerability database: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	m := &Matcher{index: map[string][]*entry{}, log: v.log}
	if err := tx.QueryRowContext(ctx, `SELECT generation FROM vulndb_meta WHERE id = 1`).Scan(&m.gen); err != nil {
		return nil, fmt.Errorf("loading vulnerability database: %w", err)
	}
	advs := map[string]*madvisory{}
	rows, err := tx.QueryContext(ctx, `SELECT id, summary, aliases, severity, score, severity_source, vector, modified
		FROM vuln_advisories WHERE withdrawn = ''`)
	if err != nil {
		return nil, fmt.Errorf("loading vulnerability database: %w", err)
	}
	for rows.Next() {
		a := &madvisory{}
		var aliases, sev, modified string
		if err := rows.Scan(&a.id, &a.summary, &aliases, &sev, &a.score, &a.source, &a.vector, &modified); err != nil {
			rows.Close()
			return nil, fmt.Errorf("loading vulnerability database: %w", err)
		}
		if err := json.Unmarshal([]byte(aliases), &a.aliases); err != nil {
			rows.Close()
			return nil, fmt.Errorf("loading vulnerability database: advisory %s: aliases: %w", a.id, err)
		}
		a.severity, a.modified = Severity(sev), db.ParseTime(modified)
		advs[a.id] = a
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loading vulnerability database: %w", err)
	}
	rows, err = tx.QueryContext(ctx, `SELECT advisory_id, ecosystem, ecosystem_base, name, ranges, versions FROM vuln_affected`)
	if err != nil {
		return nil, fmt.Errorf("loading vulnerability database: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, eco, base, name, ranges, versions string
		if err := rows.Scan(&id, &eco, &base, &name, &ranges, &versions); err != nil {
			return nil, fmt.Errorf("loading vulnerability database: %w", err)
		}
		a := advs[id]
		if a == nil { // withdrawn
			continue
		}
		var rs []storedRange
		var vs []string
		if err := json.Unmarshal([]byte(ranges), &rs); err != nil {
			return nil, fmt.Errorf("loading vulnerability database: advisory %s: ranges: %w", id, err)
		}
		if err := json.Unmarshal([]byte(versions), &vs); err != nil {
			return nil, fmt.Errorf("loading vulnerability database: advisory %s: versions: %w", id, err)
		}
		e := &entry{adv: a, ecosystem: eco}
		if len(vs) > 0 {
			e.versions = make(map[string]bool, len(vs))
			for _, s := range vs {
				e.versions[s] = true
			}
		}
		for _, r := range rs {
			mr, err := parseRange(r, eco)
			if err != nil {
				v.log.Debug("range left out of matching", "advisory", id, "package", name, "error", err)
				continue
			}
			e.ranges = append(e.ranges, mr)
		}
		k := key(base, name)
		m.index[k] = append(m.index[k], e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loading vulnerability database: %w", err)
	}
	return m, nil
}

// parseRange parses the events of a range and sorts them by version
// (introduced "0" first).
func parseRange(r storedRange, eco string) (mrange, error) {
	mr := mrange{semver: r.Type == "SEMVER", events: make([]mevent, 0, len(r.Events))}
	for _, e := range r.Events {
		kind, raw := e.kindValue()
		ev := mevent{kind: kind, raw: raw}
		if !(kind == "introduced" && raw == "0") {
			pv, err := parseVersion(raw, eco, mr.semver)
			if err != nil {
				return mrange{}, err
			}
			ev.v = pv
		}
		mr.events = append(mr.events, ev)
	}
	sort.SliceStable(mr.events, func(i, j int) bool {
		a, b := mr.events[i], mr.events[j]
		if a.v == nil || b.v == nil {
			return a.v == nil && b.v != nil
		}
		return compare(a.v, b.v) < 0
	})
	return mr, nil
}

// parseVersion parses v in the ordering of a range: SemVer, or the
// ecosystem's.
func parseVersion(v, eco string, semver bool) (semantic.Version, error) {
	if semver {
		return semantic.ParseSemverVersion(v), nil
	}
	return semantic.Parse(v, eco)
}

// compare compares two versions of one ordering (0 for versions of
// different orderings, which do not occur).
func compare(a, b semantic.Version) int {
	c, err := a.Compare(b)
	if err != nil {
		return 0
	}
	return c
}

// key is the index key of a package: ecosystem base and normalised name.
func key(base, name string) string { return base + "\x00" + normalizeName(base, name) }

var pypiSeparators = regexp.MustCompile(`[-_.]+`)

// normalizeName normalises a package name as its ecosystem compares names:
// PyPI per PEP 503 (lower case, runs of -_. as one -); others as they are.
func normalizeName(base, name string) string {
	if base == "PyPI" {
		return pypiSeparators.ReplaceAllString(strings.ToLower(name), "-")
	}
	return name
}

// normalizeVersion turns a package's version into the form advisories of
// its ecosystem use; ok is false for a version that cannot match. Go: the
// "v" prefix goes, and toolchain tags ("go1.21.3") become SemVer
// ("1.21.3"); "(devel)" matches nothing.
func normalizeVersion(base, v string) (string, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", false
	}
	if base != "Go" {
		return v, true
	}
	if v == "(devel)" {
		return "", false
	}
	if strings.HasPrefix(v, "go") {
		return goTagToSemver(v), true
	}
	return strings.TrimPrefix(v, "v"), true
}

// goTagToSemver converts a Go toolchain tag to the SemVer the Go
// vulnerability database uses: go1.21.3 -> 1.21.3, go1.21 -> 1.21.0,
// go1.21rc2 -> 1.21.0-rc.2.
func goTagToSemver(tag string) string {
	s, _, _ := strings.Cut(strings.TrimPrefix(tag, "go"), " ") // "go1.21.3 X:boringcrypto"
	pre := ""
	if i := strings.IndexAny(s, "abcdefghijklmnopqrstuvwxyz"); i >= 0 {
		p := s[i:]
		s = s[:i]
		if j := strings.IndexAny(p, "0123456789"); j > 0 {
			pre = "-" + p[:j] + "." + p[j:]
		} else {
			pre = "-" + p
		}
	}
	parts := strings.Split(s, ".")
	for len(parts) < 3 {
		parts = append(parts, "0")
	}
	return strings.Join(parts, ".") + pre
}

// ecosystemMatches reports whether an entry of ecosystem entryEco applies
// to a package of pkgEco: the same ecosystem; an entry without a release
// ("Debian") applies to every release; a package without a release to the
// entries of every release; a package "Ubuntu:22.04" to entries
// "Ubuntu:22.04:LTS".
func ecosystemMatches(pkgEco, entryEco string) bool {
	if pkgEco == entryEco || !strings.Contains(entryEco, ":") || !strings.Contains(pkgEco, ":") {
		return true
	}
	return strings.HasPrefix(entryEco, pkgEco+":")
}

// pkgVersion is a package's version, parsed lazily in the two orderings.
type pkgVersion struct {
	raw, eco           string
	ev, sv             semantic.Version
	triedEco, triedSem bool
}

func (p *pkgVersion) get(semver bool) semantic.Version {
	if semver {
		if !p.triedSem {
			p.triedSem = true
			p.sv = semantic.ParseSemverVersion(p.raw)
		}
		return p.sv
	}
	if !p.triedEco {
		p.triedEco = true
		v, err := semantic.Parse(p.raw, p.eco)
		if err == nil {
			p.ev = v
		}
	}
	return p.ev
}

// affects reports whether the entry affects the version, and the lowest
// fixed version above it in the ranges that matched.
func (e *entry) affects(pv *pkgVersion) (bool, mevent) {
	hit := e.versions[pv.raw]
	var fixed mevent
	for _, r := range e.ranges {
		v := pv.get(r.semver)
		if v == nil {
			continue
		}
		in := false
		for _, ev := range r.events {
			switch ev.kind {
			case "introduced":
				if ev.v == nil || compare(v, ev.v) >= 0 {
					in = true
				}
			case "fixed":
				if compare(v, ev.v) >= 0 {
					in = false
				}
			case "last_affected":
				if compare(v, ev.v) > 0 {
					in = false
				}
			}
		}
		for _, ev := range r.events {
			if ev.kind == "limit" && compare(v, ev.v) >= 0 {
				in = false
			}
		}
		if !in {
			continue
		}
		hit = true
		for _, ev := range r.events { // sorted: the first fixed above v is the lowest
			if ev.kind == "fixed" && compare(v, ev.v) < 0 {
				if fixed.v == nil || compare(ev.v, fixed.v) < 0 {
					fixed = ev
				}
				break
			}
		}
	}
	return hit, fixed
}

// Match returns the advisories affecting each package, one Finding per
// package and advisory, sorted by severity (highest first), then ID, then
// package name. Withdrawn advisories never match; a version that does not
// parse in its ecosystem's ordering matches only explicit version lists.
func (m *Matcher) Match(pkgs []Package) []Finding {
	var out []Finding
	for _, p := range pkgs {
		base := ecosystemBase(p.Ecosystem)
		entries := m.index[key(base, p.Name)]
		if len(entries) == 0 {
			continue
		}
		ver, ok := normalizeVersion(base, p.Version)
		if !ok {
			continue
		}
		pv := &pkgVersion{raw: ver, eco: base}
		found := map[*madvisory]int{} // index in out
		for _, e := range entries {
			if !ecosystemMatches(p.Ecosystem, e.ecosystem) {
				continue
			}
			hit, fixed := e.affects(pv)
			if !hit {
				continue
			}
			if i, ok := found[e.adv]; ok {
				f := &out[i]
				if fixed.v != nil && (f.FixedVersion == "" || lower(fixed, f.FixedVersion, e.ecosystem)) {
					f.FixedVersion = fixed.raw
				}
				continue
			}
			found[e.adv] = len(out)
			a := e.adv
			out = append(out, Finding{Package: p, ID: a.id, Aliases: slices.Clone(a.aliases), Summary: a.summary, FixedVersion: fixed.raw,
				Severity: a.severity, Score: a.score, SeveritySource: a.source, Vector: a.vector, Modified: a.modified})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Severity.Rank() != b.Severity.Rank() {
			return a.Severity.Rank() > b.Severity.Rank()
		}
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		if a.Package.Name != b.Package.Name {
			return a.Package.Name < b.Package.Name
		}
		if a.Package.Version != b.Package.Version {
			return a.Package.Version < b.Package.Version
		}
		return a.Package.Ecosystem < b.Package.Ecosystem
	})
	return out
}

// lower reports whether fixed is lower than the fixed version already
// found (compared in fixed's ordering).
func lower(fixed mevent, than, eco string) bool {
	_, semver := fixed.v.(semantic.SemverVersion)
	other, err := parseVersion(than, eco, semver)
	if err != nil {
		return false
	}
	return compare(fixed.v, other) < 0
}
