// Package manifest parses and validates the manifest formats a registry
// accepts — OCI image manifests and indexes (with artifactType and subject),
// Docker v2 schema 2 manifests and manifest lists — and lists what each one
// references, so the store can check that the referenced content exists.
package manifest

import (
	"bytes"
	_ "crypto/sha256" // digest algorithms must be linked in to validate
	_ "crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of the manifests this package understands.
const (
	MediaTypeOCIManifest        = ocispec.MediaTypeImageManifest
	MediaTypeOCIIndex           = ocispec.MediaTypeImageIndex
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerSchema1      = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeDockerSchema1JWS   = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	mediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// Errors returned (wrapped) by Parse.
var (
	// ErrInvalid means the body is not a well-formed manifest of its type.
	ErrInvalid = errors.New("manifest invalid")
	// ErrUnsupported means the media type is known but not accepted
	// (Docker schema 1) or not a manifest type at all.
	ErrUnsupported = errors.New("manifest type unsupported")
)

// Manifest is the part of a parsed manifest or index the registry needs.
type Manifest struct {
	// MediaType is the resolved media type: the body's mediaType field, else
	// the Content-Type the client sent, else inferred from the structure.
	MediaType string
	// ArtifactType is what the referrers API reports: the artifactType field,
	// or for image manifests without one, the config media type.
	ArtifactType string
	// Config is set for image manifests.
	Config *ocispec.Descriptor
	// Layers of an image manifest.
	Layers []ocispec.Descriptor
	// Manifests of an index or manifest list.
	Manifests []ocispec.Descriptor
	// Subject is the manifest this one refers to, if any.
	Subject *ocispec.Descriptor
	// Annotations are the manifest-level annotations.
	Annotations map[string]string
}

// IsIndex reports whether mediaType is an index or manifest list.
func IsIndex(mediaType string) bool {
	return mediaType == MediaTypeOCIIndex || mediaType == MediaTypeDockerManifestList
}

// Supported reports whether mediaType is a manifest type Parse accepts.
func Supported(mediaType string) bool {
	switch mediaType {
	case MediaTypeOCIManifest, MediaTypeOCIIndex, MediaTypeDockerManifest, MediaTypeDockerManifestList:
		return true
	}
	return false
}

// NonDistributable reports whether a layer may legitimately be absent from
// the registry: non-distributable (foreign) layer media types and layers
// fetched from external URLs.
func NonDistributable(d ocispec.Descriptor) bool {
	if len(d.URLs) > 0 {
		return true
	}
	return strings.Contains(d.MediaType, ".nondistributable.") || d.MediaType == mediaTypeDockerForeignLayer
}

// Blobs returns the blobs the registry must hold for the manifest to be
// complete: the config and every distributable layer.
func (m *Manifest) Blobs() []ocispec.Descriptor {
	var out []ocispec.Descriptor
	if m.Config != nil {
		out = append(out, *m.Config)
	}
	for _, l := range m.Layers {
		if !NonDistributable(l) {
			out = append(out, l)
		}
	}
	return out
}

// wire is the union of every accepted format's top-level fields.
type wire struct {
	SchemaVersion *int                 `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	ArtifactType  string               `json:"artifactType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Manifests     []ocispec.Descriptor `json:"manifests"`
	Subject       *ocispec.Descriptor  `json:"subject"`
	Annotations   map[string]string    `json:"annotations"`
	FSLayers      json.RawMessage      `json:"fsLayers"`
}

// Parse validates body as a manifest sent with the given Content-Type (which
// may be empty) and returns what it references. Errors wrap ErrInvalid or
// ErrUnsupported.
func Parse(contentType string, body []byte) (*Manifest, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, fmt.Errorf("body is not a JSON object: %w", ErrInvalid)
	}
	var w wire
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("decoding JSON: %v: %w", err, ErrInvalid)
	}
	ct := normalizeContentType(contentType)
	mt := w.MediaType
	switch {
	case mt != "" && ct != "" && mt != ct:
		return nil, fmt.Errorf("content type %q does not match mediaType %q: %w", ct, mt, ErrInvalid)
	case mt == "" && ct != "":
		mt = ct
	case mt == "" && w.Manifests != nil:
		mt = MediaTypeOCIIndex
	case mt == "" && w.Config != nil:
		mt = MediaTypeOCIManifest
	}
	switch mt {
	case mediaTypeDockerSchema1, mediaTypeDockerSchema1JWS:
		return nil, fmt.Errorf("docker schema 1 manifests: %w", ErrUnsupported)
	case "":
		if w.FSLayers != nil {
			return nil, fmt.Errorf("docker schema 1 manifests: %w", ErrUnsupported)
		}
		return nil, fmt.Errorf("cannot determine the manifest media type: %w", ErrInvalid)
	}
	if !Supported(mt) {
		return nil, fmt.Errorf("media type %q: %w", mt, ErrUnsupported)
	}
	if w.SchemaVersion == nil || *w.SchemaVersion != 2 {
		return nil, fmt.Errorf("schemaVersion must be 2: %w", ErrInvalid)
	}
	m := &Manifest{MediaType: mt, ArtifactType: w.ArtifactType, Annotations: w.Annotations}
	if w.Subject != nil {
		if err := validDescriptor("subject", *w.Subject); err != nil {
			return nil, err
		}
		if mt == MediaTypeDockerManifest || mt == MediaTypeDockerManifestList {
			return nil, fmt.Errorf("subject in a Docker manifest: %w", ErrInvalid)
		}
		m.Subject = w.Subject
	}
	if IsIndex(mt) {
		if w.Manifests == nil {
			return nil, fmt.Errorf("index without manifests: %w", ErrInvalid)
		}
		for i, d := range w.Manifests {
			if err := validDescriptor(fmt.Sprintf("manifests[%d]", i), d); err != nil {
				return nil, err
			}
		}
		m.Manifests = w.Manifests
		return m, nil
	}
	if w.Manifests != nil {
		return nil, fmt.Errorf("image manifest with a manifests list: %w", ErrInvalid)
	}
	if w.Config == nil {
		return nil, fmt.Errorf("image manifest without config: %w", ErrInvalid)
	}
	if err := validDescriptor("config", *w.Config); err != nil {
		return nil, err
	}
	for i, d := range w.Layers {
		if err := validDescriptor(fmt.Sprintf("layers[%d]", i), d); err != nil {
			return nil, err
		}
	}
	m.Config = w.Config
	m.Layers = w.Layers
	if m.ArtifactType == "" {
		m.ArtifactType = w.Config.MediaType
	}
	return m, nil
}

// normalizeContentType drops parameters and treats generic types as absent.
func normalizeContentType(ct string) string {
	if ct == "" {
		return ""
	}
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		ct = mt
	}
	switch ct {
	case "application/json", "application/octet-stream", "text/plain":
		return ""
	}
	return ct
}

func validDescriptor(field string, d ocispec.Descriptor) error {
	if d.MediaType == "" {
		return fmt.Errorf("%s: missing mediaType: %w", field, ErrInvalid)
	}
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("%s: digest %q: %v: %w", field, d.Digest, err, ErrInvalid)
	}
	if d.Size < 0 {
		return fmt.Errorf("%s: negative size: %w", field, ErrInvalid)
	}
	if d.Data != nil {
		if int64(len(d.Data)) != d.Size {
			return fmt.Errorf("%s: data length %d does not match size %d: %w", field, len(d.Data), d.Size, ErrInvalid)
		}
		if d.Digest.Algorithm().FromBytes(d.Data) != d.Digest {
			return fmt.Errorf("%s: data does not match digest %s: %w", field, d.Digest, ErrInvalid)
		}
	}
	return nil
}
