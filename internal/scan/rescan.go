package scan

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

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
	r := ref.Tag
	if ref.Digest != "" {
		r = ref.Digest
	}
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
// returned.
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
	rows, err := s.db.L.QueryContext(ctx, `SELECT registry, digest, repository, packages, report FROM scan_reports ORDER BY registry, digest`)
	if err != nil {
		return RescanResult{}, fmt.Errorf("reading stored reports: %w", err)
	}
	type update struct {
		registry, digest string
		report           []byte
		worst            int
	}
	var ups []update
	var res RescanResult
	allow := map[string]func(string, []string) bool{}
	now := s.now().UTC()
	for rows.Next() {
		var reg, dg, repo string
		var pj, rj []byte
		if err := rows.Scan(&reg, &dg, &repo, &pj, &rj); err != nil {
			rows.Close()
			return res, err
		}
		var groups []group
		var rep Report
		if err := json.Unmarshal(pj, &groups); err != nil {
			s.log.WarnContext(ctx, "rescan: unreadable stored packages", "registry", reg, "digest", dg, "err", err)
			continue
		}
		if err := json.Unmarshal(rj, &rep); err != nil {
			s.log.WarnContext(ctx, "rescan: unreadable stored report", "registry", reg, "digest", dg, "err", err)
			continue
		}
		allowed, ok := allow[reg]
		if !ok {
			if allowed, err = s.allowlist(ctx, reg); err != nil {
				rows.Close()
				return res, err
			}
			allow[reg] = allowed
		}
		before := ids(rep.Vulnerabilities)
		notes, scanned := rep.Notes, rep.ScannedAt
		assemble(&rep, groups, m, allowed)
		rep.Notes, rep.ScannedAt, rep.RescannedAt = notes, scanned, &now
		rep.Database = Database{Generation: m.Version(), Advisories: st.Advisories, LastUpdate: st.LastUpdate}
		after := ids(rep.Vulnerabilities)
		res.Images++
		if !slices.Equal(before, after) {
			res.Changed++
		}
		if added := missing(after, before); len(added) > 0 {
			a := Affected{Registry: reg, Repository: repo, Digest: dg, New: added}
			if p, err := s.Policy(ctx, reg); err == nil && p.Quarantine != "" && rep.Summary.AtOrAbove(p.Quarantine) > 0 {
				a.Quarantined = true
			}
			res.Affected = append(res.Affected, a)
		}
		b, err := json.Marshal(&rep)
		if err != nil {
			rows.Close()
			return res, err
		}
		ups = append(ups, update{registry: reg, digest: dg, report: b, worst: rep.Summary.Worst()})
	}
	if err := rows.Close(); err != nil {
		return res, err
	}
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `UPDATE scan_reports SET report = ?, worst = ?, generation = ? WHERE registry = ? AND digest = ?`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, u := range ups {
			if _, err := st.ExecContext(ctx, u.report, u.worst, m.Version(), u.registry, u.digest); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("storing rescanned reports: %w", err)
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
		p, err := s.Policy(ctx, e.Registry)
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
