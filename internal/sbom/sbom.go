package sbom

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	cpb "github.com/google/osv-scalibr/binary/proto/config_go_proto"
	"github.com/google/osv-scalibr/extractor"
	"github.com/google/osv-scalibr/extractor/filesystem"
	"github.com/google/osv-scalibr/extractor/filesystem/language/golang/gobinary"
	"github.com/google/osv-scalibr/extractor/filesystem/language/java/archive"
	"github.com/google/osv-scalibr/extractor/filesystem/language/javascript/packagejson"
	"github.com/google/osv-scalibr/extractor/filesystem/language/python/wheelegg"
	"github.com/google/osv-scalibr/extractor/filesystem/os/apk"
	"github.com/google/osv-scalibr/extractor/filesystem/os/dpkg"
	"github.com/google/osv-scalibr/extractor/filesystem/os/rpm"
	digest "github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/errdefs"
)

// Errors of the package, in errdefs' categories.
var (
	// ErrNotTar: a layer is not a (gzip or zstd compressed) tar archive, or
	// is truncated or corrupt (errdefs.ErrInvalid).
	ErrNotTar = errdefs.New("not a valid tar archive", errdefs.ErrInvalid)
	// ErrMediaType: a layer's media type is not one of a layer tar
	// (errdefs.ErrInvalid).
	ErrMediaType = errdefs.New("unsupported layer media type", errdefs.ErrInvalid)
	// ErrDigest: the blob read for a layer does not match its digest or
	// size (errdefs.ErrInvalid).
	ErrDigest = errdefs.New("digest mismatch", errdefs.ErrInvalid)
	// ErrTooLarge: a layer passes the uncompressed size or entry limit, as a
	// zip bomb does (errdefs.ErrTooLarge).
	ErrTooLarge = errdefs.New("too large", errdefs.ErrTooLarge)
)

// Defaults of the limits.
const (
	DefaultFileLimit  = 512 << 20 // bytes of one file handed to the extractors
	DefaultLayerLimit = 8 << 30   // uncompressed bytes of one layer
	DefaultEntryLimit = 1_000_000 // tar entries of one layer
)

// osReleaseLimit bounds the os-release files kept; real ones are a few
// hundred bytes.
const osReleaseLimit = 64 << 10

// cacheVersion is the version of the extractor set and of the cached
// record: bump it when the extractors, their configuration, the scalibr
// version or the record format change, so that cached layers are read
// again.
const cacheVersion = 1

// Layer is one layer of an image's platform manifest, as stored.
type Layer struct {
	Digest    digest.Digest
	MediaType string
	Size      int64
}

// Opener opens the blob of a layer, compressed as stored. The caller closes
// the reader.
type Opener interface {
	OpenLayer(ctx context.Context, l Layer) (io.ReadCloser, error)
}

// Option configures an Extractor.
type Option func(*options)

type options struct {
	fileLimit  int64
	layerLimit int64
	entryLimit int
	tempDir    string
}

// WithFileLimit sets the largest file handed to the extractors (default
// DefaultFileLimit); larger ones are skipped with a note.
func WithFileLimit(bytes int64) Option { return func(o *options) { o.fileLimit = bytes } }

// WithLayerLimit sets the most uncompressed bytes read from one layer
// (default DefaultLayerLimit); a layer with more fails with ErrTooLarge.
func WithLayerLimit(bytes int64) Option { return func(o *options) { o.layerLimit = bytes } }

// WithEntryLimit sets the most tar entries of one layer (default
// DefaultEntryLimit); a layer with more fails with ErrTooLarge.
func WithEntryLimit(n int) Option { return func(o *options) { o.entryLimit = n } }

// WithTempDir sets the directory under which files are copied for the
// extractors (default os.TempDir()).
func WithTempDir(dir string) Option { return func(o *options) { o.tempDir = dir } }

func makeOptions(opts []Option) options {
	o := options{fileLimit: DefaultFileLimit, layerLimit: DefaultLayerLimit, entryLimit: DefaultEntryLimit}
	for _, opt := range opts {
		opt(&o)
	}
	if o.fileLimit <= 0 {
		o.fileLimit = DefaultFileLimit
	}
	if o.layerLimit <= 0 {
		o.layerLimit = DefaultLayerLimit
	}
	if o.entryLimit <= 0 {
		o.entryLimit = DefaultEntryLimit
	}
	if o.tempDir == "" {
		o.tempDir = os.TempDir()
	}
	return o
}

// Extractor produces package inventories of images and caches what each
// layer contributes. It is safe for concurrent use.
type Extractor struct {
	db      *db.DB
	log     *slog.Logger
	opts    options
	plugins []filesystem.Extractor
	err     error // from building the plugins
}

// New returns an Extractor caching layers in d. A nil log discards.
func New(d *db.DB, log *slog.Logger, opts ...Option) *Extractor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	routeScalibrLog(log)
	x := &Extractor{db: d, log: log, opts: makeOptions(opts)}
	x.plugins, x.err = plugins(x.opts.fileLimit)
	return x
}

// plugins builds the extractor set: scalibr's per-file extractors for the
// ecosystems gantry reports. Changing it means bumping cacheVersion.
func plugins(fileLimit int64) ([]filesystem.Extractor, error) {
	cfg := &cpb.PluginConfig{MaxFileSizeBytes: fileLimit}
	var out []filesystem.Extractor
	for _, build := range []func(*cpb.PluginConfig) (filesystem.Extractor, error){
		apk.New, dpkg.New, rpm.New, gobinary.New, packagejson.New, wheelegg.New, archive.New,
	} {
		p, err := build(cfg)
		if err != nil {
			return nil, fmt.Errorf("building the package extractors: %w", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// Inventory reads the image whose layers are layers (bottom to top), the
// cached ones from the cache and the others through open, and returns its
// packages.
func (x *Extractor) Inventory(ctx context.Context, layers []Layer, open Opener) (*Inventory, error) {
	if x.err != nil {
		return nil, x.err
	}
	inv := &Inventory{}
	recs := make([]*layerRecord, 0, len(layers))
	for _, l := range layers {
		if err := l.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("layer %q: %w%.0w", l.Digest, err, errdefs.ErrInvalid)
		}
		rec, err := x.cached(ctx, l.Digest)
		if err != nil {
			return nil, err
		}
		if rec != nil {
			inv.LayersCached++
		} else {
			if rec, err = x.readLayer(ctx, l, open); err != nil {
				return nil, err
			}
			inv.LayersRead++
			// The packages go through the cache's encoding even when it is
			// not written, so that a layer read and the same layer cached
			// give the same inventory (the encoding normalizes some
			// metadata, e.g. an npm package's unknown source).
			data, err := encodeRecord(rec)
			if err != nil {
				return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
			}
			if rec, err = decodeRecord(data); err != nil {
				return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
			}
			if err := x.store(ctx, l.Digest, data); err != nil {
				// The inventory is right without the cache; the next scan
				// reads the layer again.
				x.log.WarnContext(ctx, "caching a layer's packages", "layer", l.Digest, "err", err)
			}
		}
		recs = append(recs, rec)
	}
	compose(inv, layers, recs)
	return inv, nil
}

// Inventory is the package inventory of an image.
type Inventory struct {
	// OS is the image's OS release, from its os-release file; zero when
	// there is none.
	OS OS
	// Packages are the image's packages, sorted by ecosystem, name, version
	// and path.
	Packages []Package
	// LayersRead and LayersCached count the layers read from their blobs
	// and those taken from the cache.
	LayersRead, LayersCached int
	// Notes say what was skipped or could not be read, e.g. "layer
	// sha256:…: /usr/bin/big skipped: 600 MiB is over the 512 MiB file
	// limit" or "/etc/os-release: symlink loop".
	Notes []string

	pkgs []*extractor.Package // scalibr's packages, in the order of Packages
}

// Unscanned reports whether no package at all could be identified in the
// image: such an image is not known to be clean.
func (inv *Inventory) Unscanned() bool { return len(inv.Packages) == 0 }

// OS is an image's OS release, from /etc/os-release (or
// /usr/lib/os-release).
type OS struct {
	ID, VersionID, VersionCodename, PrettyName string
}

// Package is one package found in an image.
type Package struct {
	Name, Version string
	// Type is the kind of package: "apk", "deb", "rpm", "go", "npm",
	// "pypi", "maven".
	Type string
	// Ecosystem is the OSV ecosystem, with the release where it has one:
	// "Alpine:v3.18", "Debian:12", "Go", "npm", "PyPI", "Maven".
	Ecosystem string
	// Source is the name advisories give an OS package when it differs
	// from Name: Debian's source package (libc6 is glibc's), Alpine's
	// origin (libgcc is gcc's).
	Source string
	// PURL is the package URL.
	PURL string
	// Path is the file the package was found in, absolute in the image.
	Path string
	// Layer is the digest of the layer that file comes from.
	Layer digest.Digest
}
