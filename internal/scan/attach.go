package scan

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/gantryhq/gantry/internal/store"
)

// Artifact types of what a scan attaches to the scanned manifest through
// the OCI referrers API.
const (
	// SPDXArtifactType: the image's SBOM, SPDX 2.3 JSON.
	SPDXArtifactType = "application/spdx+json"
	// CycloneDXArtifactType: the same SBOM, CycloneDX 1.6 JSON.
	CycloneDXArtifactType = "application/vnd.cyclonedx+json"
	// ReportArtifactType: the vulnerability report (Report as JSON).
	ReportArtifactType = "application/vnd.gantry.scan.report.v1+json"
	// annotationScanner marks the referrers gantry attached, which the
	// next scan replaces.
	annotationScanner = "io.gantry.scan"
)

var errNoRows = sql.ErrNoRows

// attach attaches an image's SBOM (SPDX and CycloneDX) and report to its
// manifest.
func (s *Service) attach(ctx context.Context, t Target, img image, rep *Report) error {
	for _, f := range []struct {
		artifactType string
		encode       func(string) ([]byte, error)
	}{{SPDXArtifactType, img.inv.SPDX}, {CycloneDXArtifactType, img.inv.CycloneDX}} {
		doc, err := f.encode(rep.Image)
		if err != nil {
			return fmt.Errorf("writing the %s SBOM: %w", f.artifactType, err)
		}
		if err := s.replaceReferrer(ctx, t, img.digest, f.artifactType, doc); err != nil {
			return err
		}
	}
	return s.attachReport(ctx, t, img.digest, rep)
}

func (s *Service) attachReport(ctx context.Context, t Target, subject digest.Digest, rep *Report) error {
	doc, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	return s.replaceReferrer(ctx, t, subject, ReportArtifactType, doc)
}

// replaceReferrer pushes doc as an artifact of artifactType referring to
// subject, then deletes the ones earlier scans attached.
func (s *Service) replaceReferrer(ctx context.Context, t Target, subject digest.Digest, artifactType string, doc []byte) error {
	sm, err := s.store.GetManifest(ctx, t.Registry, t.Repository, subject.String())
	if err != nil {
		return err
	}
	old, err := s.store.Referrers(ctx, t.Registry, t.Repository, subject, artifactType)
	if err != nil {
		return err
	}
	empty := []byte("{}")
	emptyDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeEmptyJSON, Digest: digest.FromBytes(empty), Size: int64(len(empty))}
	layer := ocispec.Descriptor{MediaType: artifactType, Digest: digest.FromBytes(doc), Size: int64(len(doc))}
	for _, b := range []struct {
		d    ocispec.Descriptor
		body []byte
	}{{emptyDesc, empty}, {layer, doc}} {
		if _, err := s.store.PutBlob(ctx, t.Registry, t.Repository, b.d.Digest, b.d.Size, bytes.NewReader(b.body)); err != nil {
			return fmt.Errorf("storing %s: %w", b.d.MediaType, err)
		}
	}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       emptyDesc,
		Layers:       []ocispec.Descriptor{layer},
		Subject:      &ocispec.Descriptor{MediaType: sm.MediaType, Digest: sm.Digest, Size: int64(len(sm.Body))},
		Annotations: map[string]string{
			annotationScanner:         "true",
			ocispec.AnnotationCreated: s.now().UTC().Format("2006-01-02T15:04:05Z"),
		},
	}
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	put, err := s.store.PutManifest(ctx, t.Registry, t.Repository, store.PutManifestRequest{MediaType: ocispec.MediaTypeImageManifest, Body: body})
	if err != nil {
		return fmt.Errorf("storing the %s referrer: %w", artifactType, err)
	}
	for _, o := range old {
		if o.Annotations[annotationScanner] != "true" || o.Digest == put.Digest {
			continue
		}
		if err := s.store.DeleteManifest(ctx, t.Registry, t.Repository, o.Digest, store.Actor{}); err != nil {
			s.log.WarnContext(ctx, "removing an older scan referrer", "digest", o.Digest, "err", err)
		}
	}
	return nil
}
