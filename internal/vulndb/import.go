package vulndb

import (
	"archive/zip"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/db"
)

// ImportResult reports what an import did.
type ImportResult struct {
	// Files is the number of OSV (*.json) files read.
	Files int
	// Added, Updated and Unchanged count the advisories new to the
	// database, replacing an older stored one, and not newer than the
	// stored one (or than another file of the import with the same ID).
	Added, Updated, Unchanged int
	// Ignored lists what was kept out, with why: advisories none of whose
	// affected entries has a supported ecosystem, affected entries left out
	// of an advisory stored with its others, files that could not be read
	// (a symbolic link out of the directory).
	Ignored []Ignored
	// Ecosystems counts the advisories of the import (stored or unchanged)
	// per ecosystem base name.
	Ecosystems map[string]int
}

// Ignored is something an import kept out.
type Ignored struct {
	// File is the path inside the zip or directory.
	File string
	// ID is the advisory's ID ("" for a file that was not read).
	ID string
	// Reason says why.
	Reason string
}

// collector parses the files of one import and keeps the newest advisory
// per ID.
type collector struct {
	v     *DB
	res   ImportResult
	total int64
	advs  map[string]*advisory
}

func (v *DB) newCollector() *collector {
	return &collector{v: v, advs: map[string]*advisory{}, res: ImportResult{Ecosystems: map[string]int{}}}
}

// countFile counts a file against the limit of files per import.
func (c *collector) countFile(name string) error {
	c.res.Files++
	if c.res.Files > c.v.limits.Files {
		return tooLargef(name, "more than the limit of %d files in one import", c.v.limits.Files)
	}
	return nil
}

// countBytes counts a file's size against the limit of total bytes.
func (c *collector) countBytes(name string, size int) error {
	c.total += int64(size)
	if c.total > c.v.limits.TotalSize {
		return tooLargef(name, "the import exceeds the limit of %d bytes uncompressed", c.v.limits.TotalSize)
	}
	return nil
}

// add parses one file.
func (c *collector) add(name string, data []byte) error {
	a, err := parseOSV(name, data, c.v.limits, c.v.log)
	if err != nil {
		return err
	}
	if len(a.Affected) == 0 && len(a.ignored) > 0 {
		c.res.Ignored = append(c.res.Ignored, Ignored{File: name, ID: a.ID, Reason: strings.Join(a.ignored, "; ")})
		return nil
	}
	for _, r := range a.ignored {
		c.res.Ignored = append(c.res.Ignored, Ignored{File: name, ID: a.ID, Reason: r + " (stored with its other affected entries)"})
	}
	if old, ok := c.advs[a.ID]; ok {
		c.res.Unchanged++
		if !a.Modified.After(old.Modified) {
			return nil
		}
	}
	c.advs[a.ID] = a
	return nil
}

// ImportZip imports every *.json OSV file of the zip r (of size bytes), at
// any directory depth (the layout of OSV's per-ecosystem all.zip and of
// golang.org/x/vulndb's data/osv), in one transaction. It merges the
// advisories by ID: a newer `modified` replaces the stored advisory, an
// older or equal one is kept. source names where the zip came from
// ("zip:/path", an image reference) and is recorded (Stats.Source). A file
// that does not parse or validate, or a limit exceeded (Limits; declared
// and actual uncompressed sizes are both checked), fails the import with
// an error naming the file, and nothing is written.
func (v *DB) ImportZip(ctx context.Context, r io.ReaderAt, size int64, source string) (ImportResult, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return ImportResult{}, fmt.Errorf("reading zip %s: %v%.0w", source, err, ErrInvalid)
	}
	if len(zr.File) > v.limits.Files {
		return ImportResult{}, fmt.Errorf("zip %s: %d entries, more than the limit of %d files%.0w", source, len(zr.File), v.limits.Files, ErrTooLarge)
	}
	c := v.newCollector()
	for _, f := range zr.File {
		if f.FileInfo().IsDir() || !strings.HasSuffix(f.Name, ".json") {
			continue
		}
		if err := ctx.Err(); err != nil {
			return ImportResult{}, err
		}
		if err := c.countFile(f.Name); err != nil {
			return ImportResult{}, err
		}
		data, err := v.readZipFile(f)
		if err != nil {
			return ImportResult{}, err
		}
		if err := c.countBytes(f.Name, len(data)); err != nil {
			return ImportResult{}, err
		}
		if err := c.add(f.Name, data); err != nil {
			return ImportResult{}, err
		}
	}
	return v.store(ctx, c, source)
}

// readZipFile reads a zip entry, refusing one that declares, or inflates
// to, more than the file size limit, or to more than it declares.
func (v *DB) readZipFile(f *zip.File) ([]byte, error) {
	limit := v.limits.FileSize
	if f.UncompressedSize64 > uint64(limit) {
		return nil, tooLargef(f.Name, "%d bytes uncompressed, more than the limit of %d", f.UncompressedSize64, limit)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, invalidf(f.Name, "opening in zip: %v", err)
	}
	defer rc.Close()
	declared := int64(f.UncompressedSize64)
	data, err := io.ReadAll(io.LimitReader(rc, declared+1))
	if err == nil && int64(len(data)) > declared {
		err = zip.ErrFormat
	}
	if errors.Is(err, zip.ErrFormat) {
		// archive/zip reports data beyond the declared size this way.
		return nil, tooLargef(f.Name, "uncompressed data does not match the declared size of %d bytes", declared)
	}
	if err != nil {
		return nil, invalidf(f.Name, "reading from zip: %v", err)
	}
	return data, nil
}

// ImportDir is ImportZip for a directory tree of OSV files (*.json at any
// depth). It does not follow symbolic links out of dir (they are reported
// in Ignored) nor into directories.
func (v *DB) ImportDir(ctx context.Context, dir, source string) (ImportResult, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return ImportResult{}, fmt.Errorf("importing %s: %w", dir, err)
	}
	defer root.Close()
	c := v.newCollector()
	err = fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("importing %s: %w", dir, err)
		}
		if d.IsDir() || !strings.HasSuffix(name, ".json") {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		data, skip, err := v.readDirFile(root, name, d)
		if err != nil {
			return err
		}
		if skip != "" {
			c.res.Ignored = append(c.res.Ignored, Ignored{File: name, Reason: skip})
			return nil
		}
		if err := c.countFile(name); err != nil {
			return err
		}
		if err := c.countBytes(name, len(data)); err != nil {
			return err
		}
		return c.add(name, data)
	})
	if err != nil {
		return ImportResult{}, err
	}
	return v.store(ctx, c, source)
}

// readDirFile reads one file under root, bounded. skip is why it was not
// read (a symbolic link out of root, or to something not a file).
func (v *DB) readDirFile(root *os.Root, name string, d fs.DirEntry) (data []byte, skip string, err error) {
	f, err := root.Open(name)
	if err != nil {
		if d.Type()&fs.ModeSymlink != 0 {
			return nil, "symbolic link out of the directory (or dangling): not followed", nil
		}
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, "not a regular file", nil
	}
	limit := v.limits.FileSize
	if fi.Size() > limit {
		return nil, "", tooLargef(name, "%d bytes, more than the limit of %d", fi.Size(), limit)
	}
	data, err = io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, "", tooLargef(name, "more than the limit of %d bytes", limit)
	}
	return data, "", nil
}

// store merges the collected advisories in one write transaction.
func (v *DB) store(ctx context.Context, c *collector, source string) (ImportResult, error) {
	start := time.Now()
	ids := make([]string, 0, len(c.advs))
	for id, a := range c.advs {
		ids = append(ids, id)
		seen := map[string]bool{}
		for _, af := range a.Affected {
			if !seen[af.Base] {
				seen[af.Base] = true
				c.res.Ecosystems[af.Base]++
			}
		}
	}
	sort.Strings(ids)
	res := c.res
	err := v.d.Tx(ctx, func(tx *sql.Tx) error {
		res = c.res // a retried transaction starts over
		stmts := map[string]*sql.Stmt{}
		for k, q := range map[string]string{
			"get":      `SELECT modified FROM vuln_advisories WHERE id = ?`,
			"delete":   `DELETE FROM vuln_advisories WHERE id = ?`,
			"delAff":   `DELETE FROM vuln_affected WHERE advisory_id = ?`,
			"delAlias": `DELETE FROM vuln_aliases WHERE advisory_id = ?`,
			"insert": `INSERT INTO vuln_advisories (id, modified, published, withdrawn, summary, aliases, severity, score,
				severity_source, vector, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			"insAff": `INSERT INTO vuln_affected (advisory_id, idx, ecosystem, ecosystem_base, name, ranges, versions)
				VALUES (?, ?, ?, ?, ?, ?, ?)`,
			"insAlias": `INSERT OR IGNORE INTO vuln_aliases (alias, advisory_id) VALUES (?, ?)`,
		} {
			s, err := tx.PrepareContext(ctx, q)
			if err != nil {
				return fmt.Errorf("preparing import: %w", err)
			}
			defer s.Close()
			stmts[k] = s
		}
		for _, id := range ids {
			a := c.advs[id]
			var stored string
			err := stmts["get"].QueryRowContext(ctx, id).Scan(&stored)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				res.Added++
			case err != nil:
				return fmt.Errorf("importing %s: %w", id, err)
			case !a.Modified.After(db.ParseTime(stored)):
				res.Unchanged++
				continue
			default:
				res.Updated++
				for _, k := range []string{"delAff", "delAlias", "delete"} {
					if _, err := stmts[k].ExecContext(ctx, id); err != nil {
						return fmt.Errorf("importing %s: %w", id, err)
					}
				}
			}
			if err := insert(ctx, stmts, a, source); err != nil {
				return fmt.Errorf("importing %s (%s): %w", id, a.file, err)
			}
		}
		bump := 0
		if res.Added+res.Updated > 0 {
			bump = 1
		}
		_, err := tx.ExecContext(ctx, `UPDATE vulndb_meta SET generation = generation + ?, last_update = ?, source = ? WHERE id = 1`,
			bump, db.FormatTime(v.now()), source)
		if err != nil {
			return fmt.Errorf("importing: updating vulndb_meta: %w", err)
		}
		return nil
	})
	if err != nil {
		return ImportResult{}, err
	}
	v.log.Info("vulnerability database import", "source", source, "files", res.Files, "added", res.Added,
		"updated", res.Updated, "unchanged", res.Unchanged, "ignored", len(res.Ignored), "duration", time.Since(start))
	return res, nil
}

// insert writes one advisory with its affected entries and aliases.
func insert(ctx context.Context, stmts map[string]*sql.Stmt, a *advisory, source string) error {
	aliases := a.Aliases
	if aliases == nil {
		aliases = []string{}
	}
	aj, err := json.Marshal(aliases)
	if err != nil {
		return err
	}
	_, err = stmts["insert"].ExecContext(ctx, a.ID, db.FormatTime(a.Modified), db.FormatTimeOrEmpty(a.Published),
		db.FormatTimeOrEmpty(a.Withdrawn), a.Summary, string(aj), string(a.Severity), a.Score, a.SeveritySource, a.Vector, source)
	if err != nil {
		return err
	}
	for i, af := range a.Affected {
		ranges := af.Ranges
		if ranges == nil {
			ranges = []storedRange{}
		}
		versions := af.Versions
		if versions == nil {
			versions = []string{}
		}
		rj, err := json.Marshal(ranges)
		if err != nil {
			return err
		}
		vj, err := json.Marshal(versions)
		if err != nil {
			return err
		}
		if _, err := stmts["insAff"].ExecContext(ctx, a.ID, i, af.Ecosystem, af.Base, af.Name, string(rj), string(vj)); err != nil {
			return err
		}
	}
	for _, al := range slices.Compact(slices.Sorted(slices.Values(aliases))) {
		if _, err := stmts["insAlias"].ExecContext(ctx, al, a.ID); err != nil {
			return err
		}
	}
	return nil
}
