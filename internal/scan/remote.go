package scan

import (
	"context"
	"errors"
	"fmt"
	"io"

	digest "github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/egress"
	"github.com/gantryhq/gantry/internal/oci"
	"github.com/gantryhq/gantry/internal/remote"
	"github.com/gantryhq/gantry/internal/sbom"
)

// Remote is the registry client that reads images of other registries
// (*remote.Client).
type Remote interface {
	Scheme(host string) string
	Repository(scheme, host, repo string, cred remote.Credential, reach egress.Reach, actions ...string) *remote.Repository
}

// errNoRemote: the service has no registry client.
var errNoRemote = errors.New("this server scans only images of its own registries")

// remoteSource reads an image from another registry.
type remoteSource struct {
	repo *remote.Repository
}

func (s remoteSource) manifest(ctx context.Context, ref string) (string, []byte, digest.Digest, error) {
	m, err := s.repo.Manifest(ctx, remote.Policy{}, ref)
	if err != nil {
		return "", nil, "", err
	}
	return m.MediaType, m.Body, m.Digest, nil
}

func (s remoteSource) OpenLayer(ctx context.Context, l sbom.Layer) (io.ReadCloser, error) {
	rc, _, err := s.repo.Blob(ctx, remote.Policy{}, l.Digest)
	return rc, err
}

func (s *Service) remoteSource(ref oci.Reference, cred remote.Credential, reach egress.Reach) (remoteSource, error) {
	if s.remote == nil {
		return remoteSource{}, errNoRemote
	}
	ref = ref.Normalize()
	return remoteSource{repo: s.remote.Repository(s.remote.Scheme(ref.Domain), ref.Domain, ref.Path, cred, reach)}, nil
}

// ScanRemote scans an image of another registry with the caller's
// credential. Nothing is stored but the layer cache: the image is not
// gantry's.
func (s *Service) ScanRemote(ctx context.Context, ref oci.Reference, cred remote.Credential, reach egress.Reach, run string) (*Report, error) {
	src, err := s.remoteSource(ref, cred, reach)
	if err != nil {
		return nil, err
	}
	if err := s.acquire(ctx); err != nil {
		return nil, err
	}
	defer s.release()
	rep, _, _, err := s.scan(ctx, src, ref.String(), ref.Ref(), "")
	if err != nil {
		return nil, fmt.Errorf("scanning %s: %w", ref, err)
	}
	rep.Run = run
	return rep, nil
}
