package scan

import (
	"slices"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/vulndb"
)

// Statuses of a report.
const (
	// StatusScanned: packages were identified and matched.
	StatusScanned = "scanned"
	// StatusUnscanned: no package could be identified in the image, so
	// nothing can be said about it — never reported as clean.
	StatusUnscanned = "unscanned"
)

// Report is a scan's result: what gantry scan prints (-o json), what the
// API answers, and the document attached to the scanned manifest as a
// referrer (ReportArtifactType). api.ScanReport is its wire twin.
type Report struct {
	Image           string          `json:"image"`
	Digest          string          `json:"digest"`
	Status          string          `json:"status"`
	OS              string          `json:"os,omitempty"`
	Packages        int             `json:"packages"`
	Vulnerabilities []Vulnerability `json:"vulnerabilities"`
	Summary         Summary         `json:"summary"`
	// Platforms has one entry per platform image of a multi-platform
	// index (their findings are also in Vulnerabilities, with the
	// platforms they occur in).
	Platforms []Platform `json:"platforms,omitempty"`
	ScannedAt time.Time  `json:"scannedAt"`
	// RescannedAt is when the stored packages were last matched again
	// after a database import.
	RescannedAt *time.Time `json:"rescannedAt,omitempty"`
	// Run is the task run that produced the report, if any.
	Run      string   `json:"run,omitempty"`
	Database Database `json:"database"`
	// Layers read and taken from the layer cache.
	LayersRead   int      `json:"layersRead"`
	LayersCached int      `json:"layersCached"`
	Notes        []string `json:"notes,omitempty"`
}

// Platform is one platform image of an index.
type Platform struct {
	Platform string  `json:"platform"`
	Digest   string  `json:"digest"`
	Status   string  `json:"status"`
	OS       string  `json:"os,omitempty"`
	Packages int     `json:"packages"`
	Summary  Summary `json:"summary"`
}

// Vulnerability is one finding: an advisory that affects a package.
type Vulnerability struct {
	ID           string   `json:"id"`
	Aliases      []string `json:"aliases"`
	Package      Package  `json:"package"`
	FixedVersion string   `json:"fixedVersion"`
	Severity     string   `json:"severity"`
	// SeveritySource says where Severity came from: cvss_v4 or cvss_v3
	// (Score is the vector's base score), advisory (its own severity
	// field), or none.
	SeveritySource string   `json:"severitySource"`
	Score          float64  `json:"score,omitempty"`
	Summary        string   `json:"summary,omitempty"`
	Platforms      []string `json:"platforms,omitempty"`
	// Allowlisted findings count in Summary.Allowlisted only.
	Allowlisted bool `json:"allowlisted,omitempty"`
}

// Package is a finding's package.
type Package struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	Ecosystem string `json:"ecosystem"`
	// Source is the package name the advisory gives, when not Name
	// (Debian's source package, Alpine's origin).
	Source string `json:"source,omitempty"`
	Path   string `json:"path,omitempty"`
}

// Summary counts the findings by severity (allowlisted ones apart).
type Summary struct {
	Critical    int `json:"critical"`
	High        int `json:"high"`
	Medium      int `json:"medium"`
	Low         int `json:"low"`
	Unknown     int `json:"unknown"`
	Allowlisted int `json:"allowlisted,omitempty"`
}

// Database is the vulnerability database a report was matched against.
type Database struct {
	Generation int64     `json:"generation"`
	Advisories int       `json:"advisories"`
	LastUpdate time.Time `json:"lastUpdate,omitzero"`
}

// AtOrAbove counts the findings (not allowlisted) at or above sev.
func (s Summary) AtOrAbove(sev vulndb.Severity) int {
	n := 0
	for _, c := range []struct {
		sev vulndb.Severity
		n   int
	}{
		{vulndb.SeverityCritical, s.Critical}, {vulndb.SeverityHigh, s.High}, {vulndb.SeverityMedium, s.Medium},
		{vulndb.SeverityLow, s.Low}, {vulndb.SeverityUnknown, s.Unknown},
	} {
		if c.sev.Rank() >= sev.Rank() {
			n += c.n
		}
	}
	return n
}

// Worst is the rank of the worst finding that is not allowlisted (0 when
// none, or only findings of unknown severity).
func (s Summary) Worst() int {
	switch {
	case s.Critical > 0:
		return vulndb.SeverityCritical.Rank()
	case s.High > 0:
		return vulndb.SeverityHigh.Rank()
	case s.Medium > 0:
		return vulndb.SeverityMedium.Rank()
	case s.Low > 0:
		return vulndb.SeverityLow.Rank()
	}
	return 0
}

func (s *Summary) add(v Vulnerability) {
	if v.Allowlisted {
		s.Allowlisted++
		return
	}
	switch vulndb.Severity(v.Severity) {
	case vulndb.SeverityCritical:
		s.Critical++
	case vulndb.SeverityHigh:
		s.High++
	case vulndb.SeverityMedium:
		s.Medium++
	case vulndb.SeverityLow:
		s.Low++
	default:
		s.Unknown++
	}
}

// findings turns matches into a report's vulnerabilities, one per
// installed package a match stands for (the binary packages of a Debian
// source package), marking the allowlisted ones, sorted worst first.
func findings(ms []vulndb.Finding, installed map[pkgKey][]storedPackage, allowed func(id string, aliases []string) bool) []Vulnerability {
	out := make([]Vulnerability, 0, len(ms))
	for _, m := range ms {
		for _, p := range installed[pkgKey{m.Package.Ecosystem, m.Package.Name, m.Package.Version}] {
			out = append(out, Vulnerability{
				ID:             m.ID,
				Aliases:        nonNil(m.Aliases),
				Package:        Package{Name: p.Name, Version: p.Version, Ecosystem: p.Ecosystem, Source: p.Source, Path: p.Path},
				FixedVersion:   m.FixedVersion,
				Severity:       string(m.Severity),
				SeveritySource: m.SeveritySource,
				Score:          m.Score,
				Summary:        m.Summary,
				Allowlisted:    allowed(m.ID, m.Aliases),
			})
		}
	}
	sortFindings(out)
	return out
}

func sortFindings(vs []Vulnerability) {
	slices.SortStableFunc(vs, func(a, b Vulnerability) int {
		if d := vulndb.Severity(b.Severity).Rank() - vulndb.Severity(a.Severity).Rank(); d != 0 {
			return d
		}
		if c := strings.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return strings.Compare(a.Package.Name, b.Package.Name)
	})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

type pkgKey struct{ ecosystem, name, version string }

// summarize recomputes the report's summary from its findings.
func (r *Report) summarize() {
	r.Summary = Summary{}
	for _, v := range r.Vulnerabilities {
		r.Summary.add(v)
	}
}
