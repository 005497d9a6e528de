package registry

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/store"
)

// getBlob serves GET (with Range) and HEAD of a blob.
func (h *handler) getBlob(w http.ResponseWriter, r *http.Request, rt route, _ auth.Identity) error {
	ctx := r.Context()
	d, err := store.ParseDigest(rt.ref)
	if err != nil {
		return err
	}
	fetch := func() error { return h.fallback.FetchBlob(ctx, h.name, rt.repo, d) }
	src, streams := h.fallback.(BlobSource)
	if r.Method == http.MethodHead {
		size, err := h.st.StatBlob(ctx, h.name, rt.repo, d)
		if err != nil && streams && isNotFound(err) {
			return h.streamBlob(w, r, src, rt.repo, d, err)
		}
		if err != nil {
			if err := h.fallbackFor(err, fetch); err != nil {
				return err
			}
			if size, err = h.st.StatBlob(ctx, h.name, rt.repo, d); err != nil {
				return err
			}
		}
		setBlobHeaders(w, d)
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
		return nil
	}
	f, size, err := h.st.OpenBlob(ctx, h.name, rt.repo, d)
	if err != nil && streams && isNotFound(err) && r.Header.Get("Range") == "" {
		return h.streamBlob(w, r, src, rt.repo, d, err)
	}
	if err != nil {
		if err := h.fallbackFor(err, fetch); err != nil {
			return err
		}
		if f, size, err = h.st.OpenBlob(ctx, h.name, rt.repo, d); err != nil {
			return err
		}
	}
	defer f.Close()
	setBlobHeaders(w, d)
	if zeroSuffixRange(r.Header.Get("Range")) {
		// http.ServeContent answers 206 with no bytes; RFC 9110 makes a
		// zero-length suffix unsatisfiable.
		w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return nil
	}
	// ServeContent answers Range requests (206, 416) and copies the file
	// with sendfile.
	http.ServeContent(w, r, "", time.Time{}, f)
	return nil
}

// streamBlob answers a HEAD or GET of blob d, missing from the store (miss
// is the store's error), from a BlobSource.
func (h *handler) streamBlob(w http.ResponseWriter, r *http.Request, src BlobSource, repo string, d digest.Digest, miss error) error {
	rc, size, err := src.OpenBlob(r.Context(), h.name, repo, d)
	if err != nil {
		if isNotFound(err) {
			return miss
		}
		return fmt.Errorf("fetching from upstream: %w", err)
	}
	defer rc.Close()
	setBlobHeaders(w, d)
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	if n, err := io.Copy(w, rc); err != nil || n != size {
		// The status line is sent: cut the connection, so the client sees
		// a truncated body rather than a complete wrong one.
		level := slog.LevelWarn
		if r.Context().Err() != nil {
			level = slog.LevelDebug // the client went away
		}
		h.log.Log(r.Context(), level, "streaming blob from upstream failed", "registry", h.name, "repository", repo,
			"digest", d, "sent", n, "size", size, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// fallbackFor consults the Fallback after a miss (err is a not-found
// error): it returns nil if the content was supplied (the caller reads
// again), err if there is none, or the fallback's own failure (an
// unreachable or throttling upstream).
func (h *handler) fallbackFor(err error, fetch func() error) error {
	if h.fallback == nil || !isNotFound(err) {
		return err
	}
	if ferr := fetch(); ferr != nil {
		if isNotFound(ferr) {
			return err
		}
		return fmt.Errorf("fetching from upstream: %w", ferr)
	}
	return nil
}

func setBlobHeaders(w http.ResponseWriter, d digest.Digest) {
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Docker-Content-Digest", d.String())
	hd.Set("Etag", `"`+d.String()+`"`)
	hd.Set("Accept-Ranges", "bytes")
	hd.Set("Cache-Control", "max-age=31536000")
}

func (h *handler) deleteBlob(w http.ResponseWriter, r *http.Request, rt route, _ auth.Identity) error {
	d, err := store.ParseDigest(rt.ref)
	if err != nil {
		return err
	}
	if err := h.st.DeleteBlob(r.Context(), h.name, rt.repo, d); err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// zeroSuffixRange reports a Range header that asks only for zero-length
// suffixes ("bytes=-0").
func zeroSuffixRange(h string) bool {
	spec, ok := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !ok || spec == "" {
		return false
	}
	for _, part := range strings.Split(spec, ",") {
		if strings.TrimSpace(part) != "-0" {
			return false
		}
	}
	return true
}
