package vulndb

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/errdefs"
)

// The package's errors.
var (
	// ErrInvalid is the category of OSV data that does not parse or
	// validate, and of a bad severity name (ParseSeverity).
	ErrInvalid = errdefs.New("invalid vulnerability data", errdefs.ErrInvalid)
	// ErrTooLarge is the category of an import over one of its Limits; it
	// is also invalid.
	ErrTooLarge = errdefs.New("vulnerability data over a limit", errdefs.ErrTooLarge, ErrInvalid)
	// ErrNotFound is the category of an advisory that is not stored.
	ErrNotFound = errdefs.New("advisory not found", errdefs.ErrNotFound)
)

// DB is the vulnerability database in gantry's SQLite database. It is safe
// for concurrent use.
type DB struct {
	d      *db.DB
	log    *slog.Logger
	limits Limits
	now    func() time.Time

	mu     sync.Mutex
	cached *Matcher // the newest snapshot Matcher loaded
}

// New returns the vulnerability database stored in d (migrated, with the
// tables of 070_vulndb.sql). log receives debug messages (unparsable CVSS
// vectors, import summaries at info); nil discards them.
func New(d *db.DB, log *slog.Logger) *DB {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &DB{d: d, log: log, limits: DefaultLimits, now: time.Now}
}

// SetLimits replaces the import limits (DefaultLimits); zero fields keep
// the default.
func (v *DB) SetLimits(l Limits) {
	d := DefaultLimits
	v.limits = Limits{
		FileSize:  positiveOr(l.FileSize, d.FileSize),
		TotalSize: positiveOr(l.TotalSize, d.TotalSize),
		Files:     positiveOr(l.Files, d.Files),
		Entries:   positiveOr(l.Entries, d.Entries),
		String:    positiveOr(l.String, d.String),
		Summary:   positiveOr(l.Summary, d.Summary),
	}
}

// positiveOr returns v when it is positive, and def otherwise.
func positiveOr[T int | int64](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// Stats describes the database.
type Stats struct {
	// Advisories is the number of stored advisories.
	Advisories int
	// Ecosystems counts the advisories per ecosystem base name, most first.
	Ecosystems []EcosystemCount
	// LastUpdate is when the last import finished (zero before the first).
	LastUpdate time.Time
	// Source is where the last import came from.
	Source string
}

// EcosystemCount is the number of advisories with an affected entry of
// one ecosystem base name ("Alpine", "Debian", "Go", "npm", "PyPI",
// "Maven", "Red Hat", "Ubuntu", ...).
type EcosystemCount struct {
	Ecosystem  string
	Advisories int
}

// Stats returns the database's size and last import.
func (v *DB) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	var last string
	err := v.d.L.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM vuln_advisories), last_update, source FROM vulndb_meta WHERE id = 1`).
		Scan(&st.Advisories, &last, &st.Source)
	if err != nil {
		return Stats{}, fmt.Errorf("vulnerability database stats: %w", err)
	}
	st.LastUpdate = db.ParseTime(last)
	rows, err := v.d.L.QueryContext(ctx, `SELECT ecosystem_base, count(DISTINCT advisory_id) AS n FROM vuln_affected
		GROUP BY ecosystem_base ORDER BY n DESC, ecosystem_base`)
	if err != nil {
		return Stats{}, fmt.Errorf("vulnerability database stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c EcosystemCount
		if err := rows.Scan(&c.Ecosystem, &c.Advisories); err != nil {
			return Stats{}, fmt.Errorf("vulnerability database stats: %w", err)
		}
		st.Ecosystems = append(st.Ecosystems, c)
	}
	if err := rows.Err(); err != nil {
		return Stats{}, fmt.Errorf("vulnerability database stats: %w", err)
	}
	return st, nil
}

// Generation returns the database's generation number: it increments on
// every import that added or updated an advisory.
func (v *DB) Generation(ctx context.Context) (int64, error) {
	var g int64
	if err := v.d.R.QueryRowContext(ctx, `SELECT generation FROM vulndb_meta WHERE id = 1`).Scan(&g); err != nil {
		return 0, fmt.Errorf("vulnerability database generation: %w", err)
	}
	return g, nil
}

// Advisory is a stored advisory, as shown to users.
type Advisory struct {
	ID        string
	Aliases   []string
	Summary   string
	Modified  time.Time
	Published time.Time
	// Withdrawn is when the advisory was withdrawn (zero if it was not);
	// a withdrawn advisory never matches.
	Withdrawn time.Time
	// Severity, Score, SeveritySource and Vector are as in Finding.
	Severity       Severity
	Score          float64
	SeveritySource string
	Vector         string
	// Affected are the stored affected entries (those of a supported
	// ecosystem).
	Affected []Affected
}

// Affected is one affected entry of an Advisory.
type Affected struct {
	Ecosystem, Name string
	// Ranges is human-readable: "introduced 0, fixed 1.2.3-r1", ranges
	// separated by "; ", explicit versions as "versions 1.0, 1.1".
	Ranges string
}

// Advisory returns the advisory with ID id, or else one with the alias id
// (a CVE ID, say; the lowest ID if several have it). An unknown ID is an
// error in ErrNotFound.
func (v *DB) Advisory(ctx context.Context, id string) (Advisory, error) {
	const q = `SELECT id, aliases, summary, modified, published, withdrawn, severity, score, severity_source, vector
		FROM vuln_advisories WHERE id = ?`
	var a Advisory
	var aliases, modified, published, withdrawn, sev string
	scan := func(key string) error {
		return v.d.R.QueryRowContext(ctx, q, key).Scan(&a.ID, &aliases, &a.Summary, &modified, &published, &withdrawn, &sev, &a.Score, &a.SeveritySource, &a.Vector)
	}
	err := scan(id)
	if errors.Is(err, sql.ErrNoRows) {
		var target string
		err = v.d.R.QueryRowContext(ctx, `SELECT advisory_id FROM vuln_aliases WHERE alias = ? ORDER BY advisory_id LIMIT 1`, id).Scan(&target)
		if err == nil {
			err = scan(target)
		}
	}
	if errors.Is(err, sql.ErrNoRows) {
		return Advisory{}, fmt.Errorf("advisory %s not found%.0w", id, ErrNotFound)
	}
	if err != nil {
		return Advisory{}, fmt.Errorf("advisory %s: %w", id, err)
	}
	a.Severity = Severity(sev)
	a.Modified, a.Published, a.Withdrawn = db.ParseTime(modified), db.ParseTime(published), db.ParseTime(withdrawn)
	if err := json.Unmarshal([]byte(aliases), &a.Aliases); err != nil {
		return Advisory{}, fmt.Errorf("advisory %s: aliases: %w", id, err)
	}
	rows, err := v.d.R.QueryContext(ctx, `SELECT ecosystem, name, ranges, versions FROM vuln_affected WHERE advisory_id = ? ORDER BY idx`, a.ID)
	if err != nil {
		return Advisory{}, fmt.Errorf("advisory %s: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var af Affected
		var ranges, versions string
		if err := rows.Scan(&af.Ecosystem, &af.Name, &ranges, &versions); err != nil {
			return Advisory{}, fmt.Errorf("advisory %s: %w", id, err)
		}
		var rs []storedRange
		var vs []string
		if err := errors.Join(json.Unmarshal([]byte(ranges), &rs), json.Unmarshal([]byte(versions), &vs)); err != nil {
			return Advisory{}, fmt.Errorf("advisory %s: affected %s: %w", id, af.Name, err)
		}
		af.Ranges = describeRanges(rs, vs)
		a.Affected = append(a.Affected, af)
	}
	if err := rows.Err(); err != nil {
		return Advisory{}, fmt.Errorf("advisory %s: %w", id, err)
	}
	return a, nil
}

// describeRanges writes ranges and versions for people.
func describeRanges(rs []storedRange, versions []string) string {
	var parts []string
	for _, r := range rs {
		var evs []string
		for _, e := range r.Events {
			k, val := e.kindValue()
			evs = append(evs, strings.ReplaceAll(k, "_", " ")+" "+val)
		}
		parts = append(parts, strings.Join(evs, ", "))
	}
	if len(versions) > 0 {
		const most = 20
		s := "versions " + strings.Join(versions[:min(len(versions), most)], ", ")
		if len(versions) > most {
			s += fmt.Sprintf(", ... (%d more)", len(versions)-most)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}
