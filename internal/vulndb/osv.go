package vulndb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/osv-scalibr/semantic"
)

// Limits bound what an import accepts, so that hostile input can neither
// crash the server nor take unbounded memory or time. An import that
// exceeds one fails with an error in the category errdefs.ErrTooLarge
// naming the file.
type Limits struct {
	// FileSize is the largest OSV file, uncompressed.
	FileSize int64
	// TotalSize bounds the uncompressed bytes of all files of an import.
	TotalSize int64
	// Files is the most OSV files one import reads.
	Files int
	// Entries bounds each list of an advisory: aliases, severity entries,
	// affected entries, the ranges and versions of an entry, the events of
	// a range.
	Entries int
	// String is the longest ID, alias, ecosystem, package name, version or
	// severity score.
	String int
	// Summary is the longest summary stored; a longer one is truncated.
	Summary int
}

// DefaultLimits are the limits New sets.
var DefaultLimits = Limits{
	FileSize:  4 << 20,
	TotalSize: 4 << 30,
	Files:     2_000_000,
	Entries:   10_000,
	String:    4096,
	Summary:   1024,
}

// The OSV JSON this package reads (the fields matching and display need;
// others are ignored).
type osvFile struct {
	ID               string          `json:"id"`
	Modified         string          `json:"modified"`
	Published        string          `json:"published"`
	Withdrawn        string          `json:"withdrawn"`
	Aliases          []string        `json:"aliases"`
	Summary          string          `json:"summary"`
	Severity         []osvSeverity   `json:"severity"`
	Affected         []osvAffected   `json:"affected"`
	DatabaseSpecific json.RawMessage `json:"database_specific"`
}

type osvSeverity struct {
	Type  string `json:"type"`
	Score string `json:"score"`
}

type osvAffected struct {
	Package struct {
		Ecosystem string `json:"ecosystem"`
		Name      string `json:"name"`
	} `json:"package"`
	Severity          []osvSeverity   `json:"severity"`
	Ranges            []osvRange      `json:"ranges"`
	Versions          []string        `json:"versions"`
	EcosystemSpecific json.RawMessage `json:"ecosystem_specific"`
	DatabaseSpecific  json.RawMessage `json:"database_specific"`
}

type osvRange struct {
	Type   string     `json:"type"`
	Events []osvEvent `json:"events"`
}

type osvEvent struct {
	Introduced   *string `json:"introduced"`
	Fixed        *string `json:"fixed"`
	LastAffected *string `json:"last_affected"`
	Limit        *string `json:"limit"`
}

// advisory is a parsed, validated advisory as it is stored.
type advisory struct {
	ID                     string
	Modified               time.Time
	Published, Withdrawn   time.Time
	Summary                string
	Aliases                []string
	Severity               Severity
	Score                  float64
	SeveritySource, Vector string
	Affected               []affected
	file                   string // where it was read, for messages
	ignored                []string
}

// affected is a stored affected entry: its ecosystem has a known version
// ordering, and GIT ranges are left out.
type affected struct {
	Ecosystem, Base, Name string
	Ranges                []storedRange
	Versions              []string
}

// storedRange is the JSON of vuln_affected.ranges.
type storedRange struct {
	Type   string        `json:"type"`
	Events []storedEvent `json:"events"`
}

// storedEvent has exactly one field set.
type storedEvent struct {
	Introduced   string `json:"introduced,omitempty"`
	Fixed        string `json:"fixed,omitempty"`
	LastAffected string `json:"last_affected,omitempty"`
	Limit        string `json:"limit,omitempty"`
}

// kind and value of the event's one field.
func (e storedEvent) kindValue() (string, string) {
	switch {
	case e.Introduced != "":
		return "introduced", e.Introduced
	case e.Fixed != "":
		return "fixed", e.Fixed
	case e.LastAffected != "":
		return "last_affected", e.LastAffected
	}
	return "limit", e.Limit
}

// invalidf returns an error in ErrInvalid naming file.
func invalidf(file, format string, args ...any) error {
	return fmt.Errorf("%s: %s%.0w", file, fmt.Sprintf(format, args...), ErrInvalid)
}

// tooLargef returns an error in ErrTooLarge naming file.
func tooLargef(file, format string, args ...any) error {
	return fmt.Errorf("%s: %s%.0w", file, fmt.Sprintf(format, args...), ErrTooLarge)
}

// semverRE is SemVer 2.0 (semver.org), without a "v" prefix.
var semverRE = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// ecosystemBase is the ecosystem without its release: "Alpine" of
// "Alpine:v3.18".
func ecosystemBase(eco string) string {
	base, _, _ := strings.Cut(eco, ":")
	return base
}

// supported reports whether the version ordering knows the ecosystem base.
func supported(base string) bool {
	_, err := semantic.Parse("0", base)
	return !errors.Is(err, semantic.ErrUnsupportedEcosystem)
}

// parseOSV parses and validates one OSV file. name is the file's path in
// the zip or directory, for messages.
func parseOSV(name string, data []byte, lim Limits, log *slog.Logger) (*advisory, error) {
	var f osvFile
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		return nil, jsonError(name, err)
	}
	if dec.More() {
		return nil, invalidf(name, "data after the JSON object")
	}
	str := func(field, s string) error {
		if len(s) > lim.String {
			return tooLargef(name, "%s: %d bytes, more than the limit of %d", field, len(s), lim.String)
		}
		return nil
	}
	count := func(field string, n int) error {
		if n > lim.Entries {
			return tooLargef(name, "%s: %d entries, more than the limit of %d", field, n, lim.Entries)
		}
		return nil
	}
	if f.ID == "" {
		return nil, invalidf(name, "id: missing")
	}
	if err := str("id", f.ID); err != nil {
		return nil, err
	}
	a := &advisory{ID: f.ID, file: name, Summary: truncate(f.Summary, lim.Summary)}
	var err error
	if f.Modified == "" {
		return nil, invalidf(name, "modified: missing")
	}
	if a.Modified, err = time.Parse(time.RFC3339, f.Modified); err != nil {
		return nil, invalidf(name, "modified: %q is not an RFC 3339 time", truncate(f.Modified, 64))
	}
	for _, t := range []struct {
		field string
		s     string
		to    *time.Time
	}{{"published", f.Published, &a.Published}, {"withdrawn", f.Withdrawn, &a.Withdrawn}} {
		if t.s == "" {
			continue
		}
		if *t.to, err = time.Parse(time.RFC3339, t.s); err != nil {
			return nil, invalidf(name, "%s: %q is not an RFC 3339 time", t.field, truncate(t.s, 64))
		}
	}
	if err := count("aliases", len(f.Aliases)); err != nil {
		return nil, err
	}
	for i, al := range f.Aliases {
		if err := str(fmt.Sprintf("aliases[%d]", i), al); err != nil {
			return nil, err
		}
		if al != "" && al != f.ID && !slices.Contains(a.Aliases, al) {
			a.Aliases = append(a.Aliases, al)
		}
	}
	if err := count("severity", len(f.Severity)); err != nil {
		return nil, err
	}
	for i, s := range f.Severity {
		if err := str(fmt.Sprintf("severity[%d].score", i), s.Score); err != nil {
			return nil, err
		}
	}
	if err := count("affected", len(f.Affected)); err != nil {
		return nil, err
	}
	for i, af := range f.Affected {
		field := fmt.Sprintf("affected[%d]", i)
		e, reason, err := parseAffected(name, field, af, lim)
		if err != nil {
			return nil, err
		}
		if reason != "" {
			a.ignored = append(a.ignored, reason)
			continue
		}
		a.Affected = append(a.Affected, e)
	}
	a.Severity, a.Score, a.SeveritySource, a.Vector = severityOf(&f, log)
	return a, nil
}

// parseAffected validates one affected entry. reason is why it is left out
// (an ecosystem without a known version ordering).
func parseAffected(name, field string, af osvAffected, lim Limits) (affected, string, error) {
	eco, pkg := af.Package.Ecosystem, af.Package.Name
	for _, s := range []struct{ f, v string }{{"package.ecosystem", eco}, {"package.name", pkg}} {
		if len(s.v) > lim.String {
			return affected{}, "", tooLargef(name, "%s.%s: %d bytes, more than the limit of %d", field, s.f, len(s.v), lim.String)
		}
	}
	for _, n := range []struct {
		f string
		n int
	}{{"severity", len(af.Severity)}, {"ranges", len(af.Ranges)}, {"versions", len(af.Versions)}} {
		if n.n > lim.Entries {
			return affected{}, "", tooLargef(name, "%s.%s: %d entries, more than the limit of %d", field, n.f, n.n, lim.Entries)
		}
	}
	for i, s := range af.Severity {
		if len(s.Score) > lim.String {
			return affected{}, "", tooLargef(name, "%s.severity[%d].score: %d bytes, more than the limit of %d", field, i, len(s.Score), lim.String)
		}
	}
	for i, v := range af.Versions {
		if len(v) > lim.String {
			return affected{}, "", tooLargef(name, "%s.versions[%d]: %d bytes, more than the limit of %d", field, i, len(v), lim.String)
		}
	}
	base := ecosystemBase(eco)
	if eco == "" || !supported(base) {
		return affected{}, fmt.Sprintf("%s: ecosystem %q is not supported", field, truncate(eco, 64)), nil
	}
	if pkg == "" {
		return affected{}, "", invalidf(name, "%s.package.name: missing", field)
	}
	e := affected{Ecosystem: eco, Base: base, Name: pkg, Versions: af.Versions}
	for i, r := range af.Ranges {
		rf := fmt.Sprintf("%s.ranges[%d]", field, i)
		switch r.Type {
		case "SEMVER", "ECOSYSTEM", "GIT":
		default:
			return affected{}, "", invalidf(name, "%s.type: %q is not a range type (want SEMVER, ECOSYSTEM or GIT)", rf, truncate(r.Type, 64))
		}
		if len(r.Events) > lim.Entries {
			return affected{}, "", tooLargef(name, "%s.events: %d entries, more than the limit of %d", rf, len(r.Events), lim.Entries)
		}
		sr := storedRange{Type: r.Type, Events: make([]storedEvent, 0, len(r.Events))}
		for j, ev := range r.Events {
			ef := fmt.Sprintf("%s.events[%d]", rf, j)
			se, kind, v, err := oneEvent(ev)
			if err != nil {
				return affected{}, "", invalidf(name, "%s: %v", ef, err)
			}
			if len(v) > lim.String {
				return affected{}, "", tooLargef(name, "%s.%s: %d bytes, more than the limit of %d", ef, kind, len(v), lim.String)
			}
			if r.Type != "GIT" && !(kind == "introduced" && v == "0") {
				if err := checkVersion(r.Type, eco, v); err != nil {
					return affected{}, "", invalidf(name, "%s: invalid version %q for ecosystem %s: %v", ef, truncate(v, 64), eco, err)
				}
			}
			sr.Events = append(sr.Events, se)
		}
		if r.Type != "GIT" {
			e.Ranges = append(e.Ranges, sr)
		}
	}
	return e, "", nil
}

// oneEvent checks that ev sets exactly one of its fields, to a non-empty
// value.
func oneEvent(ev osvEvent) (storedEvent, string, string, error) {
	var se storedEvent
	var kind, v string
	n := 0
	for _, f := range []struct {
		kind string
		v    *string
		to   *string
	}{{"introduced", ev.Introduced, &se.Introduced}, {"fixed", ev.Fixed, &se.Fixed}, {"last_affected", ev.LastAffected, &se.LastAffected}, {"limit", ev.Limit, &se.Limit}} {
		if f.v == nil {
			continue
		}
		n++
		kind, v, *f.to = f.kind, *f.v, *f.v
	}
	if n != 1 {
		return se, "", "", errors.New("want exactly one of introduced, fixed, last_affected, limit")
	}
	if v == "" {
		return se, "", "", fmt.Errorf("%s: empty version", kind)
	}
	return se, kind, v, nil
}

// checkVersion checks that v is a version of a range of type typ (SEMVER:
// SemVer 2.0; ECOSYSTEM: the ecosystem's ordering).
func checkVersion(typ, eco, v string) error {
	if typ == "SEMVER" {
		if !semverRE.MatchString(v) {
			return errors.New("not a SemVer 2.0 version")
		}
		return nil
	}
	if strings.IndexFunc(v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return errors.New("contains white space or control characters")
	}
	switch ecosystemBase(eco) {
	case "Alpine", "Alpaquita", "BellSoft Hardened Containers", "Chainguard", "MinimOS", "Wolfi", "Debian", "Ubuntu":
		// apk and dpkg versions start with a digit (dpkg's after an epoch "N:").
		rest := v
		if e, r, ok := strings.Cut(v, ":"); ok && ecosystemBase(eco) != "Alpine" {
			if e == "" || strings.Trim(e, "0123456789") != "" {
				return errors.New("epoch is not a number")
			}
			rest = r
		}
		if rest == "" || rest[0] < '0' || rest[0] > '9' {
			return errors.New("does not start with a digit")
		}
	}
	// The ordering's parser is lenient (it orders what it can), but
	// rejects some versions (CRAN, Hackage, Maven).
	_, err := semantic.Parse(v, eco)
	return err
}

// jsonError names the file and, for a type error, the field json reports.
func jsonError(name string, err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "(top level)"
		}
		return invalidf(name, "%s: JSON %s where %s is wanted", field, te.Value, te.Type)
	case errors.As(err, &se):
		return invalidf(name, "invalid JSON at offset %d: %v", se.Offset, err)
	}
	return invalidf(name, "invalid JSON: %v", err)
}

// truncate cuts s to at most n bytes, at a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// severityOf rates an advisory: its CVSS vectors (of the advisory and of
// its affected entries; v4 if any v4 vector scores, else v3; the highest
// score), else its own severity words (database_specific.severity,
// affected[].ecosystem_specific.severity and .database_specific.severity,
// severity entries of type Ubuntu; the highest), else unknown.
func severityOf(f *osvFile, log *slog.Logger) (Severity, float64, string, string) {
	sevs := slices.Clone(f.Severity)
	for _, af := range f.Affected {
		sevs = append(sevs, af.Severity...)
	}
	for _, want := range []struct{ typ, source string }{{"CVSS_V4", SourceCVSSv4}, {"CVSS_V3", SourceCVSSv3}} {
		best, vector, found := 0.0, "", false
		for _, s := range sevs {
			if s.Type != want.typ {
				continue
			}
			score, err := cvssScore(s.Type, s.Score)
			if err != nil {
				log.Debug("unparsable CVSS vector", "advisory", f.ID, "vector", s.Score, "error", err)
				continue
			}
			if !found || score > best {
				best, vector, found = score, s.Score, true
			}
		}
		if found {
			return severityOfScore(best), best, want.source, vector
		}
	}
	words := []string{specificSeverity(f.DatabaseSpecific)}
	for _, af := range f.Affected {
		words = append(words, specificSeverity(af.EcosystemSpecific), specificSeverity(af.DatabaseSpecific))
	}
	for _, s := range sevs {
		if s.Type == "Ubuntu" {
			words = append(words, s.Score)
		}
	}
	best, found := SeverityUnknown, false
	for _, w := range words {
		if s, ok := severityOfWord(w); ok && (!found || s.Rank() > best.Rank()) {
			best, found = s, true
		}
	}
	if found {
		return best, 0, SourceAdvisory, ""
	}
	return SeverityUnknown, 0, SourceNone, ""
}

// specificSeverity is the "severity" string of a database_specific or
// ecosystem_specific object, "" if there is none.
func specificSeverity(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var v struct {
		Severity any `json:"severity"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	s, _ := v.Severity.(string)
	return s
}
