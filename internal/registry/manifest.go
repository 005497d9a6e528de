package registry

import (
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/store"
)

// getManifest serves GET and HEAD of a manifest by tag or digest.
func (h *handler) getManifest(w http.ResponseWriter, r *http.Request, rt route, _ auth.Identity) error {
	ctx := r.Context()
	if !store.IsDigest(rt.ref) {
		if err := store.ValidTag(rt.ref); err != nil {
			// No manifest can have an invalid tag.
			return fmt.Errorf("%w: %w", store.ErrManifestUnknown, err)
		}
	}
	if src, ok := h.fallback.(ManifestSource); ok {
		m, handled, err := src.LookupManifest(ctx, h.name, rt.repo, rt.ref)
		if handled {
			if err != nil {
				return err
			}
			return writeManifest(w, r, m)
		}
	}
	m, err := h.st.GetManifest(ctx, h.name, rt.repo, rt.ref)
	if err != nil {
		if err := h.fallbackFor(err, func() error { return h.fallback.FetchManifest(ctx, h.name, rt.repo, rt.ref) }); err != nil {
			return err
		}
		if m, err = h.st.GetManifest(ctx, h.name, rt.repo, rt.ref); err != nil {
			return err
		}
	}
	if h.gate != nil && r.Method == http.MethodGet {
		if err := h.gate.AdmitPull(ctx, h.name, rt.repo, m); err != nil {
			return err
		}
	}
	return writeManifest(w, r, m)
}

// writeManifest answers a manifest GET or HEAD with m.
func writeManifest(w http.ResponseWriter, r *http.Request, m store.Manifest) error {
	hd := w.Header()
	hd.Set("Content-Type", m.MediaType)
	hd.Set("Content-Length", strconv.Itoa(len(m.Body)))
	hd.Set("Docker-Content-Digest", m.Digest.String())
	hd.Set("Etag", `"`+m.Digest.String()+`"`)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(m.Body)
	}
	return nil
}

// putManifest stores a manifest under a tag or digest, plus any ?tag=
// parameters.
func (h *handler) putManifest(w http.ResponseWriter, r *http.Request, rt route, id auth.Identity) error {
	if r.ContentLength > h.maxManifest {
		return fmt.Errorf("manifest of %d bytes, limit %d: %w", r.ContentLength, h.maxManifest, store.ErrManifestTooLarge)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.maxManifest+1))
	if err != nil {
		return fmt.Errorf("reading manifest: %w: %w", store.ErrManifestInvalid, err)
	}
	if int64(len(body)) > h.maxManifest {
		return fmt.Errorf("manifest larger than %d bytes: %w", h.maxManifest, store.ErrManifestTooLarge)
	}
	tags := r.URL.Query()["tag"]
	m, err := h.st.PutManifest(r.Context(), h.name, rt.repo, store.PutManifestRequest{
		Reference: rt.ref,
		MediaType: r.Header.Get("Content-Type"),
		Body:      body,
		Tags:      tags,
		By:        actor(id),
	})
	if err != nil {
		return err
	}
	hd := w.Header()
	hd.Set("Location", "/v2/"+rt.repo+"/manifests/"+m.Digest.String())
	hd.Set("Docker-Content-Digest", m.Digest.String())
	if m.Subject != "" {
		hd.Set("OCI-Subject", m.Subject.String())
	}
	for _, t := range tags {
		hd.Add("OCI-Tag", t)
	}
	hd.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// deleteManifest deletes a manifest (by digest) or a tag.
func (h *handler) deleteManifest(w http.ResponseWriter, r *http.Request, rt route, id auth.Identity) error {
	if store.IsDigest(rt.ref) {
		d, err := store.ParseDigest(rt.ref)
		if err != nil {
			return err
		}
		if err := h.st.DeleteManifest(r.Context(), h.name, rt.repo, d, actor(id)); err != nil {
			return err
		}
	} else {
		if err := store.ValidTag(rt.ref); err != nil {
			return fmt.Errorf("%w: %w", store.ErrManifestUnknown, err)
		}
		if err := h.st.Untag(r.Context(), h.name, rt.repo, rt.ref, actor(id)); err != nil {
			return err
		}
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// referrers serves the referrers API, optionally filtered by artifactType.
func (h *handler) referrers(w http.ResponseWriter, r *http.Request, rt route, _ auth.Identity) error {
	d, err := store.ParseDigest(rt.ref)
	if err != nil {
		return err
	}
	at := r.URL.Query().Get("artifactType")
	descs, err := h.st.Referrers(r.Context(), h.name, rt.repo, d, at)
	if err != nil {
		return err
	}
	if at != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	return writeJSON(w, r, http.StatusOK, ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: descs,
	})
}
