package registry

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/store"
)

// mountCandidates bounds how many repositories a mount without "from" tries.
const mountCandidates = 16

// startUpload serves POST /blobs/uploads/: a mount (?mount=, with or without
// from), a monolithic upload in one request (?digest=), or the start of an
// upload session.
func (h *handler) startUpload(w http.ResponseWriter, r *http.Request, rt route, _ auth.Identity) error {
	ctx := r.Context()
	q := r.URL.Query()
	if m := q.Get("mount"); m != "" {
		d, err := store.ParseDigest(m)
		if err != nil {
			return err
		}
		ok, err := h.mount(r, rt.repo, q.Get("from"), d)
		if err != nil {
			return err
		}
		if ok {
			return blobCreated(w, rt.repo, d)
		}
		// Not mountable: fall back to an upload session, as the spec asks.
	} else if ds := q.Get("digest"); ds != "" {
		d, err := store.ParseDigest(ds)
		if err != nil {
			return err
		}
		if _, err := h.st.PutBlob(ctx, h.name, rt.repo, d, r.ContentLength, r.Body); err != nil {
			return err
		}
		return blobCreated(w, rt.repo, d)
	}
	id, err := h.st.StartUpload(ctx, h.name, rt.repo, digest.Algorithm(q.Get("digest-algorithm")))
	if err != nil {
		return err
	}
	return uploadAccepted(w, http.StatusAccepted, rt.repo, id, 0)
}

// mount links blob d into repo from another repository of this registry the
// caller may pull from: from, or when from is empty any that holds it. It
// reports false when there is nothing to mount, so the client uploads.
func (h *handler) mount(r *http.Request, repo, from string, d digest.Digest) (bool, error) {
	ctx := r.Context()
	var sources []string
	if from != "" {
		if store.ValidRepository(from) != nil {
			return false, nil
		}
		sources = []string{from}
	} else {
		var err error
		if sources, err = h.st.BlobRepositories(ctx, h.name, d, mountCandidates); err != nil {
			return false, err
		}
		// Already readable in the target: nothing to check or link.
		for _, src := range sources {
			if src == repo {
				return true, nil
			}
		}
	}
	for _, src := range sources {
		if src != repo {
			// Pull access on the source is checked on its own: a caller who
			// may not read it gets an upload session instead. But a named
			// source whose pull the credentials do not cover (a bearer token
			// without that scope) is answered 401, with a challenge that
			// includes it, so the client can fetch a token that does.
			if _, err := h.auth.Authorize(r, h.name, repoAccess(src, auth.ActionPull)); err != nil {
				if from != "" && errors.Is(err, auth.ErrUnauthenticated) {
					return false, err
				}
				continue
			}
		}
		_, err := h.st.LinkBlob(ctx, d, store.RepoRef{Registry: h.name, Repository: src}, store.RepoRef{Registry: h.name, Repository: repo})
		if errors.Is(err, store.ErrBlobUnknown) {
			continue
		}
		if err != nil {
			return false, err
		}
		return true, nil
	}
	return false, nil
}

func blobCreated(w http.ResponseWriter, repo string, d digest.Digest) error {
	hd := w.Header()
	hd.Set("Location", "/v2/"+repo+"/blobs/"+d.String())
	hd.Set("Docker-Content-Digest", d.String())
	hd.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

func uploadAccepted(w http.ResponseWriter, status int, repo, id string, offset int64) error {
	hd := w.Header()
	hd.Set("Location", "/v2/"+repo+"/blobs/uploads/"+id)
	hd.Set("Docker-Upload-UUID", id)
	hd.Set("Range", rangeHeader(offset))
	if status != http.StatusNoContent {
		hd.Set("Content-Length", "0")
	}
	w.WriteHeader(status)
	return nil
}

// rangeHeader is the Range of an upload holding offset bytes ("0-0" when
// empty, as Distribution sends).
func rangeHeader(offset int64) string {
	if offset > 0 {
		offset--
	}
	return "0-" + strconv.FormatInt(offset, 10)
}

// chunk returns where the request body starts in the upload (-1 when the
// client did not say) and the body to append, checking Content-Range
// against Content-Length.
func chunk(r *http.Request) (int64, io.Reader, error) {
	start, end, ok, err := parseContentRange(r)
	if err != nil {
		return 0, nil, err
	}
	if !ok {
		return -1, r.Body, nil
	}
	n := end - start + 1
	if r.ContentLength >= 0 && r.ContentLength != n {
		return 0, nil, fmt.Errorf("Content-Range covers %d bytes, Content-Length is %d: %w", n, r.ContentLength, store.ErrSizeInvalid)
	}
	return start, io.LimitReader(r.Body, n), nil
}

// patchUpload appends a chunk (Content-Range) or a stream (no Content-Range).
func (h *handler) patchUpload(w http.ResponseWriter, r *http.Request, rt route, _ auth.Identity) error {
	start, body, err := chunk(r)
	if err != nil {
		return err
	}
	offset, err := h.st.AppendUpload(r.Context(), h.name, rt.repo, rt.ref, start, body)
	if err != nil {
		return err
	}
	return uploadAccepted(w, http.StatusAccepted, rt.repo, rt.ref, offset)
}

// finishUpload completes an upload with ?digest=, appending the body if any.
func (h *handler) finishUpload(w http.ResponseWriter, r *http.Request, rt route, _ auth.Identity) error {
	ds := r.URL.Query().Get("digest")
	if ds == "" {
		return fmt.Errorf("digest parameter missing: %w", store.ErrDigestInvalid)
	}
	d, err := store.ParseDigest(ds)
	if err != nil {
		return err
	}
	start, body, err := chunk(r)
	if err != nil {
		return err
	}
	if r.ContentLength == 0 {
		body = nil
	}
	if _, err := h.st.FinishUpload(r.Context(), h.name, rt.repo, rt.ref, start, body, d); err != nil {
		return err
	}
	return blobCreated(w, rt.repo, d)
}

func (h *handler) uploadStatus(w http.ResponseWriter, r *http.Request, rt route, _ auth.Identity) error {
	offset, err := h.st.UploadOffset(r.Context(), h.name, rt.repo, rt.ref)
	if err != nil {
		return err
	}
	return uploadAccepted(w, http.StatusNoContent, rt.repo, rt.ref, offset)
}

func (h *handler) cancelUpload(w http.ResponseWriter, r *http.Request, rt route, _ auth.Identity) error {
	if err := h.st.CancelUpload(r.Context(), h.name, rt.repo, rt.ref); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// parseContentRange reads a chunk's "start-end" Content-Range (an optional
// "bytes " or "bytes=" prefix is tolerated). ok is false if absent.
func parseContentRange(r *http.Request) (start, end int64, ok bool, err error) {
	v := r.Header.Get("Content-Range")
	if v == "" {
		return 0, 0, false, nil
	}
	v = strings.TrimPrefix(strings.TrimPrefix(v, "bytes "), "bytes=")
	a, b, found := strings.Cut(v, "-")
	if found {
		start, err = strconv.ParseInt(a, 10, 64)
		if err == nil {
			end, err = strconv.ParseInt(b, 10, 64)
		}
	}
	if !found || err != nil || start < 0 || end < start {
		return 0, 0, false, fmt.Errorf("Content-Range %q: %w", r.Header.Get("Content-Range"), store.ErrRangeInvalid)
	}
	return start, end, true, nil
}
