package sbom

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/osv-scalibr/binary/proto"
	spb "github.com/google/osv-scalibr/binary/proto/scan_result_go_proto"
	"github.com/google/osv-scalibr/extractor"
	digest "github.com/opencontainers/go-digest"
	gproto "google.golang.org/protobuf/proto"

	"github.com/gantryhq/gantry/internal/db"
)

// storedRecord is the JSON form of a layerRecord in sbom_layers.data
// (gzipped). Packages are scalibr's own protobuf encoding of them
// (binary/proto), which keeps each extractor's metadata.
type storedRecord struct {
	Files     map[string][][]byte `json:"files,omitempty"`
	OSRelease map[string][]byte   `json:"osRelease,omitempty"`
	Symlinks  map[string]string   `json:"symlinks,omitempty"`
	Whiteouts []string            `json:"whiteouts,omitempty"`
	Opaque    []string            `json:"opaque,omitempty"`
	Others    []string            `json:"others,omitempty"`
	Notes     []string            `json:"notes,omitempty"`
}

func encodeRecord(rec *layerRecord) ([]byte, error) {
	s := storedRecord{
		Files:     make(map[string][][]byte, len(rec.Files)),
		OSRelease: rec.OSRelease,
		Symlinks:  rec.Symlinks,
		Whiteouts: rec.Whiteouts,
		Opaque:    rec.Opaque,
		Others:    rec.Others,
		Notes:     rec.Notes,
	}
	for name, pkgs := range rec.Files {
		enc := make([][]byte, 0, len(pkgs))
		for _, p := range pkgs {
			pb, err := proto.PackageToProto(p)
			if err != nil {
				return nil, fmt.Errorf("encoding package %s of /%s: %w", p.Name, name, err)
			}
			b, err := gproto.Marshal(pb)
			if err != nil {
				return nil, fmt.Errorf("encoding package %s of /%s: %w", p.Name, name, err)
			}
			enc = append(enc, b)
		}
		s.Files[name] = enc
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(&s); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decodeRecord(data []byte) (*layerRecord, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	var s storedRecord
	if err := json.NewDecoder(zr).Decode(&s); err != nil {
		return nil, err
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return nil, err
	}
	rec := newLayerRecord()
	rec.Whiteouts, rec.Opaque, rec.Others, rec.Notes = s.Whiteouts, s.Opaque, s.Others, s.Notes
	for k, v := range s.OSRelease {
		rec.OSRelease[k] = v
	}
	for k, v := range s.Symlinks {
		rec.Symlinks[k] = v
	}
	for name, enc := range s.Files {
		pkgs := make([]*extractor.Package, 0, len(enc))
		for _, b := range enc {
			var pb spb.Package
			if err := gproto.Unmarshal(b, &pb); err != nil {
				return nil, err
			}
			p, err := proto.PackageToStruct(&pb)
			if err != nil {
				return nil, err
			}
			pkgs = append(pkgs, p)
		}
		rec.Files[name] = pkgs
	}
	return rec, nil
}

// cached returns the cached record of layer d, or nil when there is none
// (or it cannot be decoded: then the layer is read again).
func (x *Extractor) cached(ctx context.Context, d digest.Digest) (*layerRecord, error) {
	var data []byte
	err := x.db.R.QueryRowContext(ctx, `SELECT data FROM sbom_layers WHERE digest = ? AND version = ?`,
		d.String(), cacheVersion).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the cached packages of layer %s: %w", d, err)
	}
	rec, err := decodeRecord(data)
	if err != nil {
		x.log.WarnContext(ctx, "cached packages of a layer unreadable; reading the layer", "layer", d, "err", err)
		return nil, nil
	}
	return rec, nil
}

// store caches the encoded record of layer d, replacing those of other extractor
// versions.
func (x *Extractor) store(ctx context.Context, d digest.Digest, data []byte) error {
	if _, err := x.db.W.ExecContext(ctx, `DELETE FROM sbom_layers WHERE digest = ? AND version <> ?`,
		d.String(), cacheVersion); err != nil {
		return err
	}
	_, err := x.db.W.ExecContext(ctx,
		`INSERT INTO sbom_layers(digest, version, data, created_at) VALUES (?, ?, ?, ?)
		 ON CONFLICT(digest, version) DO UPDATE SET data = excluded.data, created_at = excluded.created_at`,
		d.String(), cacheVersion, data, db.FormatTime(time.Now()))
	return err
}
