package sbom

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/google/osv-scalibr/extractor"
	"github.com/google/osv-scalibr/extractor/filesystem"
	scalibrfs "github.com/google/osv-scalibr/fs"
	"github.com/klauspost/compress/zstd"
)

// layerRecord is what one layer contributes to an image: the unit of the
// cache. Paths are relative to the root, cleaned, without a leading slash.
type layerRecord struct {
	// Files holds each file an extractor asked for, with the packages found
	// in it (none when it held none or was skipped: it still hides the
	// same path in lower layers).
	Files map[string][]*extractor.Package
	// OSRelease holds the content of etc/os-release and usr/lib/os-release
	// when they are regular files of this layer.
	OSRelease map[string][]byte
	// Symlinks maps a symlink's path to its target.
	Symlinks map[string]string
	// Whiteouts are the paths this layer deletes (.wh.NAME), Opaque the
	// directories whose lower content it hides (.wh..wh..opq).
	Whiteouts, Opaque []string
	// Others are the other non-directory paths the layer writes: they hide
	// a lower layer's file at the same path.
	Others []string
	// Notes say what was skipped, without the layer digest.
	Notes []string
}

func newLayerRecord() *layerRecord {
	return &layerRecord{
		Files:     map[string][]*extractor.Package{},
		OSRelease: map[string][]byte{},
		Symlinks:  map[string]string{},
	}
}

// The media types of layers, by compression.
func decompressor(mediaType string) (string, bool) {
	switch {
	case mediaType == "":
		return "sniff", true
	case strings.HasSuffix(mediaType, "+gzip"), strings.HasSuffix(mediaType, ".tar.gzip"):
		return "gzip", true
	case strings.HasSuffix(mediaType, "+zstd"), strings.HasSuffix(mediaType, ".tar.zstd"):
		return "zstd", true
	case strings.HasSuffix(mediaType, ".tar"), strings.HasSuffix(mediaType, ".diff.tar"):
		return "", true
	}
	return "", false
}

// zstdMaxWindow bounds the memory of a zstd decoder (the window a frame may
// ask for): 128 MiB covers every level up to --ultra.
const zstdMaxWindow = 128 << 20

// readLayer streams layer l once and extracts what it contributes.
func (x *Extractor) readLayer(ctx context.Context, l Layer, open Opener) (*layerRecord, error) {
	kind, ok := decompressor(l.MediaType)
	if !ok {
		return nil, fmt.Errorf("layer %s: %w %q", l.Digest, ErrMediaType, l.MediaType)
	}
	rc, err := open.OpenLayer(ctx, l)
	if err != nil {
		return nil, fmt.Errorf("layer %s: opening: %w", l.Digest, err)
	}
	defer rc.Close()
	// The blob is checked against its digest as it is read: the cache is
	// keyed by the digest, and must not hold what another blob contains.
	verifier := l.Digest.Verifier()
	blob := &sourceReader{ctx: ctx, r: io.TeeReader(rc, verifier)}
	src := bufio.NewReaderSize(blob, 64<<10)
	if kind == "sniff" {
		kind = sniff(src)
	}
	var r io.Reader = src
	switch kind {
	case "gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, x.layerError(l, err, 0, "", 0)
		}
		defer zr.Close()
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err != nil {
			return nil, x.layerError(l, err, 0, "", 0)
		}
		defer zr.Close()
		r = zr
	}
	cr := &countingReader{ctx: ctx, r: r, limit: x.opts.layerLimit}

	tmp, err := os.MkdirTemp(x.opts.tempDir, "gantry-sbom-*")
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	defer os.RemoveAll(tmp)

	rec := newLayerRecord()
	tr := tar.NewReader(cr)
	entries, last := 0, ""
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, x.layerError(l, err, entries, last, cr.n)
		}
		entries++
		if entries > x.opts.entryLimit {
			return nil, fmt.Errorf("layer %s: %w: more than %d entries", l.Digest, ErrTooLarge, x.opts.entryLimit)
		}
		last = hdr.Name
		if err := x.entry(ctx, rec, tmp, hdr, tr); err != nil {
			return nil, x.layerError(l, err, entries, last, cr.n)
		}
	}
	// Read to the end of the stream, so that the compression's checksum is
	// checked and trailing garbage noticed.
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return nil, x.layerError(l, err, entries, last, cr.n)
	}
	if _, err := io.Copy(io.Discard, src); err != nil {
		return nil, x.layerError(l, err, entries, last, cr.n)
	}
	if blob.n != l.Size && l.Size > 0 || !verifier.Verified() {
		return nil, fmt.Errorf("layer %s: %w: the blob read (%d bytes) does not match the layer's digest and size (%d bytes)",
			l.Digest, ErrDigest, blob.n, l.Size)
	}
	sort.Strings(rec.Others)
	sort.Strings(rec.Whiteouts)
	sort.Strings(rec.Opaque)
	return rec, nil
}

// layerError names the layer and where in it err happened, and sorts err
// into the package's errors: the limit, the source's and the context's
// errors as they are, anything else as a malformed archive.
func (x *Extractor) layerError(l Layer, err error, entries int, last string, offset int64) error {
	var se *sourceError
	switch {
	case errors.Is(err, ErrTooLarge):
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	case errors.As(err, &se):
		return fmt.Errorf("layer %s: reading: %w", l.Digest, se.err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	case errors.Is(err, errLocal):
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	where := fmt.Sprintf("at offset %d of the uncompressed stream", offset)
	if last != "" {
		where = fmt.Sprintf("after entry %d %q, at offset %d of the uncompressed stream", entries, last, offset)
	}
	return fmt.Errorf("layer %s: %w: %s: %w", l.Digest, ErrNotTar, where, err)
}

// errLocal marks failures of this host (temporary files), not of the layer.
var errLocal = errors.New("local file")

// cleanPath turns a tar entry name into a cleaned path relative to the
// root; "" is the root itself.
func cleanPath(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// entry records one tar entry in rec.
func (x *Extractor) entry(ctx context.Context, rec *layerRecord, tmp string, hdr *tar.Header, tr io.Reader) error {
	name := cleanPath(hdr.Name)
	if name == "" {
		return nil
	}
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	if base == ".wh..wh..opq" {
		rec.Opaque = append(rec.Opaque, dir)
		return nil
	}
	if target, ok := strings.CutPrefix(base, ".wh."); ok {
		rec.Whiteouts = append(rec.Whiteouts, path.Join(dir, target))
		return nil
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return nil
	case tar.TypeSymlink:
		rec.Symlinks[name] = hdr.Linkname
		return nil
	case tar.TypeLink:
		target := cleanPath(hdr.Linkname)
		if pkgs, ok := rec.Files[target]; ok {
			rec.Files[name] = relocate(pkgs, name)
		} else if content, ok := rec.OSRelease[target]; ok && isOSRelease(name) {
			rec.OSRelease[name] = content
		} else {
			rec.Others = append(rec.Others, name)
		}
		return nil
	case tar.TypeReg:
		return x.file(ctx, rec, tmp, name, hdr, tr)
	}
	rec.Others = append(rec.Others, name)
	return nil
}

func isOSRelease(name string) bool { return name == "etc/os-release" || name == "usr/lib/os-release" }

// relocate copies pkgs as found in the file at name (a hard link).
func relocate(pkgs []*extractor.Package, name string) []*extractor.Package {
	out := make([]*extractor.Package, 0, len(pkgs))
	for _, p := range pkgs {
		c := *p
		c.Location = extractor.LocationFromPath(name)
		out = append(out, &c)
	}
	return out
}

// fileAPI is what the extractors' FileRequired see of a tar entry.
type fileAPI struct {
	path string
	info fs.FileInfo
}

func (f fileAPI) Path() string               { return f.path }
func (f fileAPI) Stat() (fs.FileInfo, error) { return f.info, nil }

// file handles a regular file: keeps it if it is an os-release, and hands
// it to the extractors that ask for it.
func (x *Extractor) file(ctx context.Context, rec *layerRecord, tmp, name string, hdr *tar.Header, tr io.Reader) error {
	if isOSRelease(name) {
		if hdr.Size > osReleaseLimit {
			rec.Notes = append(rec.Notes, fmt.Sprintf("/%s skipped: %s is over the %s os-release limit",
				name, humanize.IBytes(uint64(hdr.Size)), humanize.IBytes(osReleaseLimit)))
			rec.Others = append(rec.Others, name)
			return nil
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		rec.OSRelease[name] = b
		return nil
	}
	api := fileAPI{path: name, info: hdr.FileInfo()}
	var accept []filesystem.Extractor
	for _, p := range x.plugins {
		if p.FileRequired(api) {
			accept = append(accept, p)
		}
	}
	if len(accept) == 0 {
		if hdr.Size > x.opts.fileLimit && looksExecutable(hdr) {
			// The extractors decline files over their limit themselves.
			rec.Notes = append(rec.Notes, fmt.Sprintf("/%s skipped: %s is over the %s file limit",
				name, humanize.IBytes(uint64(hdr.Size)), humanize.IBytes(uint64(x.opts.fileLimit))))
		}
		rec.Others = append(rec.Others, name)
		return nil
	}
	rec.Files[name] = nil
	if hdr.Size > x.opts.fileLimit {
		rec.Notes = append(rec.Notes, fmt.Sprintf("/%s skipped: %s is over the %s file limit",
			name, humanize.IBytes(uint64(hdr.Size)), humanize.IBytes(uint64(x.opts.fileLimit))))
		return nil
	}
	// Each file gets a root of its own: the extractors see a file system
	// holding just it, and no earlier file's directories are in its way.
	root, err := os.MkdirTemp(tmp, "f")
	if err != nil {
		return fmt.Errorf("%w: %w", errLocal, err)
	}
	defer os.RemoveAll(root)
	full := filepath.Join(root, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
		return fmt.Errorf("%w: %w", errLocal, err)
	}
	f, err := os.OpenFile(full, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("%w: %w", errLocal, err)
	}
	defer f.Close()
	if _, err := io.Copy(localWriter{f}, tr); err != nil {
		return err
	}
	fsys := scalibrfs.DirFS(root)
	for _, p := range accept {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("%w: %w", errLocal, err)
		}
		in := &filesystem.ScanInput{FS: fsys, Path: name, Root: root, Info: api.info, Reader: f}
		pkgs, err := extract(ctx, p, in)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rec.Notes = append(rec.Notes, fmt.Sprintf("/%s: %s: %v", name, p.Name(), err))
		}
		for _, pk := range pkgs {
			pk.Plugins = []string{p.Name()}
		}
		rec.Files[name] = append(rec.Files[name], pkgs...)
	}
	return nil
}

func looksExecutable(hdr *tar.Header) bool { return hdr.Mode&0o111 != 0 }

// extract runs one extractor on one file; a panic in it is an error of that
// file, not of the scan.
func extract(ctx context.Context, p filesystem.Extractor, in *filesystem.ScanInput) (pkgs []*extractor.Package, err error) {
	defer func() {
		if r := recover(); r != nil {
			pkgs, err = nil, fmt.Errorf("extractor failed: %v", r)
		}
	}()
	inv, err := p.Extract(ctx, in)
	return inv.Packages, err
}

// sniff tells the compression of a layer of unknown media type from its
// first bytes.
func sniff(r *bufio.Reader) string {
	head, _ := r.Peek(4)
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return "gzip"
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "zstd"
	}
	return ""
}

// sourceReader checks the context and marks the errors of the blob reader,
// which are not the layer's fault.
type sourceReader struct {
	ctx context.Context
	r   io.Reader
	n   int64 // bytes read
}

type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

func (s *sourceReader) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	if err != nil && err != io.EOF {
		err = &sourceError{err}
	}
	return n, err
}

// countingReader counts the uncompressed bytes, fails past the limit, and
// checks the context.
type countingReader struct {
	ctx   context.Context
	r     io.Reader
	n     int64
	limit int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	// Read at most one byte past the limit: enough to know it is passed.
	if rest := c.limit - c.n + 1; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.limit {
		return 0, fmt.Errorf("%w: more than %s uncompressed (the layer limit)", ErrTooLarge, humanize.IBytes(uint64(c.limit)))
	}
	return n, err
}

// localWriter marks the errors of writing a temporary file, which are not
// the layer's fault.
type localWriter struct{ w io.Writer }

func (l localWriter) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	if err != nil {
		err = fmt.Errorf("%w: %w", errLocal, err)
	}
	return n, err
}
