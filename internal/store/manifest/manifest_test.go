package manifest_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/store/manifest"
)

var (
	d1 = digest.FromString("one")
	d2 = digest.FromString("two")
)

func desc(mt string, d digest.Digest, n int) string {
	return `{"mediaType":"` + mt + `","digest":"` + d.String() + `","size":` + strconv.Itoa(n) + `}`
}

const (
	cfgMT   = "application/vnd.oci.image.config.v1+json"
	layerMT = "application/vnd.oci.image.layer.v1.tar+gzip"
)

var seeds = map[string]string{
	"oci image":   `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":` + desc(cfgMT, d1, 2) + `,"layers":[` + desc(layerMT, d2, 3) + `]}`,
	"oci no type": `{"schemaVersion":2,"config":` + desc(cfgMT, d1, 2) + `,"layers":[]}`,
	"oci index":   `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + desc("application/vnd.oci.image.manifest.v1+json", d1, 10) + `]}`,
	"docker v2":   `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":` + desc("application/vnd.docker.container.image.v1+json", d1, 2) + `,"layers":[` + desc("application/vnd.docker.image.rootfs.diff.tar.gzip", d2, 3) + `]}`,
	"docker list": `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[` + desc("application/vnd.docker.distribution.manifest.v2+json", d1, 10) + `]}`,
	"artifact":    `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example","config":` + desc("application/vnd.oci.empty.v1+json", digest.FromString("{}"), 2) + `,"layers":[],"subject":` + desc("application/vnd.oci.image.manifest.v1+json", d2, 5) + `}`,
	"nondistributable": `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":` + desc(cfgMT, d1, 2) + `,"layers":[` +
		desc("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", d2, 3) + `,{"mediaType":"` + layerMT + `","digest":"` + digest.FromString("u").String() + `","size":1,"urls":["https://example.com/u"]}]}`,
	"data field": `{"schemaVersion":2,"config":{"mediaType":"` + cfgMT + `","digest":"` + digest.FromString("{}").String() + `","size":2,"data":"e30="},"layers":[]}`,
}

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		contentType string
		body        string
		wantType    string
		wantArt     string
		wantBlobs   int
		wantErr     error
	}{
		{"oci image", "application/vnd.oci.image.manifest.v1+json", seeds["oci image"], manifest.MediaTypeOCIManifest, cfgMT, 2, nil},
		{"oci image inferred", "", seeds["oci no type"], manifest.MediaTypeOCIManifest, cfgMT, 1, nil},
		{"oci image with charset", "application/vnd.oci.image.manifest.v1+json; charset=utf-8", seeds["oci image"], manifest.MediaTypeOCIManifest, cfgMT, 2, nil},
		{"oci index", "", seeds["oci index"], manifest.MediaTypeOCIIndex, "", 0, nil},
		{"docker v2", "application/vnd.docker.distribution.manifest.v2+json", seeds["docker v2"], manifest.MediaTypeDockerManifest, "application/vnd.docker.container.image.v1+json", 2, nil},
		{"docker list", "", seeds["docker list"], manifest.MediaTypeDockerManifestList, "", 0, nil},
		{"artifact", "", seeds["artifact"], manifest.MediaTypeOCIManifest, "application/vnd.example", 1, nil},
		{"non-distributable layers are not required", "", seeds["nondistributable"], manifest.MediaTypeOCIManifest, cfgMT, 1, nil},
		{"data field", "", seeds["data field"], manifest.MediaTypeOCIManifest, cfgMT, 1, nil},
		{"generic content type", "application/json", seeds["oci index"], manifest.MediaTypeOCIIndex, "", 0, nil},
		{"type mismatch", manifest.MediaTypeOCIIndex, seeds["oci image"], "", "", 0, manifest.ErrInvalid},
		{"schema 1", "application/vnd.docker.distribution.manifest.v1+prettyjws", `{"schemaVersion":1,"fsLayers":[]}`, "", "", 0, manifest.ErrUnsupported},
		{"schema 1 untyped", "", `{"schemaVersion":1,"fsLayers":[]}`, "", "", 0, manifest.ErrUnsupported},
		{"unknown type", "application/x-thing", `{"schemaVersion":2}`, "", "", 0, manifest.ErrUnsupported},
		{"no schemaVersion", "", `{"config":` + desc(cfgMT, d1, 2) + `}`, "", "", 0, manifest.ErrInvalid},
		{"schemaVersion 3", "", `{"schemaVersion":3,"config":` + desc(cfgMT, d1, 2) + `}`, "", "", 0, manifest.ErrInvalid},
		{"empty", "", ``, "", "", 0, manifest.ErrInvalid},
		{"array", "", `[]`, "", "", 0, manifest.ErrInvalid},
		{"truncated", "", seeds["oci image"][:40], "", "", 0, manifest.ErrInvalid},
		{"undeterminable", "", `{"schemaVersion":2}`, "", "", 0, manifest.ErrInvalid},
		{"image without config", manifest.MediaTypeOCIManifest, `{"schemaVersion":2,"layers":[]}`, "", "", 0, manifest.ErrInvalid},
		{"index without manifests", manifest.MediaTypeOCIIndex, `{"schemaVersion":2}`, "", "", 0, manifest.ErrInvalid},
		{"image with manifests", manifest.MediaTypeOCIManifest, `{"schemaVersion":2,"config":` + desc(cfgMT, d1, 2) + `,"manifests":[]}`, "", "", 0, manifest.ErrInvalid},
		{"bad layer digest", "", `{"schemaVersion":2,"config":` + desc(cfgMT, d1, 2) + `,"layers":[{"mediaType":"x","digest":"sha256:abc","size":1}]}`, "", "", 0, manifest.ErrInvalid},
		{"negative size", "", `{"schemaVersion":2,"config":` + desc(cfgMT, d1, -1) + `}`, "", "", 0, manifest.ErrInvalid},
		{"descriptor without media type", "", `{"schemaVersion":2,"config":{"digest":"` + d1.String() + `","size":1}}`, "", "", 0, manifest.ErrInvalid},
		{"data not matching digest", "", `{"schemaVersion":2,"config":{"mediaType":"` + cfgMT + `","digest":"` + d1.String() + `","size":2,"data":"e30="}}`, "", "", 0, manifest.ErrInvalid},
		{"subject in docker manifest", "", strings.Replace(seeds["docker v2"], `"layers"`, `"subject":`+desc(manifest.MediaTypeOCIManifest, d1, 1)+`,"layers"`, 1), "", "", 0, manifest.ErrInvalid},
		{"bad subject", "", strings.Replace(seeds["artifact"], d2.String(), "sha256:00", 1), "", "", 0, manifest.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := manifest.Parse(tt.contentType, []byte(tt.body))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.MediaType != tt.wantType || m.ArtifactType != tt.wantArt || len(m.Blobs()) != tt.wantBlobs {
				t.Fatalf("got type %q artifact %q blobs %d", m.MediaType, m.ArtifactType, len(m.Blobs()))
			}
		})
	}
}

// FuzzParse checks that Parse never panics and that whatever it accepts is
// consistent: a supported type, and only valid digests to look up.
func FuzzParse(f *testing.F) {
	for _, s := range seeds {
		f.Add("", []byte(s))
		f.Add(manifest.MediaTypeOCIManifest, []byte(s))
	}
	f.Add(manifest.MediaTypeDockerManifestList, []byte(`{"schemaVersion":2,"manifests":null}`))
	f.Add("", []byte(`{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha512:`+strings.Repeat("a", 128)+`","size":0}}`))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		m, err := manifest.Parse(contentType, body)
		if err != nil {
			if !errors.Is(err, manifest.ErrInvalid) && !errors.Is(err, manifest.ErrUnsupported) {
				t.Fatalf("error without sentinel: %v", err)
			}
			return
		}
		if !manifest.Supported(m.MediaType) {
			t.Fatalf("accepted unsupported type %q", m.MediaType)
		}
		if manifest.IsIndex(m.MediaType) == (m.Config != nil) {
			t.Fatalf("index %v with config %v", manifest.IsIndex(m.MediaType), m.Config)
		}
		for _, d := range append(m.Blobs(), m.Manifests...) {
			if err := d.Digest.Validate(); err != nil {
				t.Fatalf("accepted invalid digest %q", d.Digest)
			}
			if d.Size < 0 {
				t.Fatalf("accepted negative size")
			}
		}
	})
}
