package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/egress"
	"github.com/gantryhq/gantry/internal/oci"
	"github.com/gantryhq/gantry/internal/remote"
)

// dockerHub is the credential key of Docker Hub, whatever its spelling.
const dockerHub = oci.DockerHub

// errUnreachable marks a registry that could not be contacted at all (as
// opposed to one that refused the credentials).
var errUnreachable = errors.New("registry unreachable")

// errUnauthorized marks refused credentials.
var errUnauthorized = errors.New("unauthorized")

// registryKey normalizes a login server for credential lookups:
// "https://index.docker.io/v1/" and "registry-1.docker.io" are docker.io.
func registryKey(host string) string {
	h := strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://")
	h, _, _ = strings.Cut(h, "/")
	if h == "" {
		return oci.DockerHub
	}
	return oci.NormalizeHost(h)
}

// engineErr marks errors of talking to the engine itself (as opposed to
// the engine reporting a failure: it is unreachable, or its API does not
// fit) with ErrEngine.
func engineErr(err error) error {
	if errors.Is(err, docker.ErrUnavailable) || errors.Is(err, docker.ErrUnsupported) {
		return fmt.Errorf("%w: %w", ErrEngine, err)
	}
	return err
}

// imageOf splits a reference into an Image (canonical form: docker.io and
// library/ for Docker Hub, :latest when neither tag nor digest is given).
func imageOf(ref string) Image {
	r, err := oci.ParseReference(ref)
	if err != nil {
		return Image{Repository: ref}
	}
	r = r.Normalize()
	return Image{Registry: r.Domain, Repository: r.Path, Tag: r.Tag, Digest: r.Digest}
}

// auth is the engine's form of a login for the server address host: the
// identity token alone when there is one.
func (c Credential) auth(host string) docker.AuthConfig {
	if c.IdentityToken != "" {
		return docker.AuthConfig{Username: c.Username, IdentityToken: c.IdentityToken, ServerAddress: host}
	}
	return docker.AuthConfig{Username: c.Username, Password: c.Password, ServerAddress: host}
}

// remoteCred is a login in the registry client's form (anonymous for nil).
func remoteCred(c *Credential) remote.Credential {
	if c == nil {
		return remote.Credential{}
	}
	return remote.Credential{Username: c.Username, Password: c.Password, IdentityToken: c.IdentityToken}
}

// pingRegistry verifies a login the way docker login does (the registry
// client's handshake and GET /v2/). A refused login matches
// errUnauthorized, anything else errUnreachable.
func pingRegistry(ctx context.Context, rc *remote.Client, c Credential) error {
	err := rc.Ping(ctx, c.Registry, remoteCred(&c), egress.Local, remote.Policy{Attempts: 1})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, remote.ErrUpstreamAuth):
		return fmt.Errorf("%w%.0w", err, errUnauthorized)
	}
	return fmt.Errorf("%w%.0w", err, errUnreachable)
}

// headDigest asks the registry for the digest of img's tag.
func headDigest(ctx context.Context, rc *remote.Client, img Image, cred *Credential) (string, error) {
	if img.Digest != "" {
		return img.Digest, nil
	}
	d, err := rc.Repository(rc.Scheme(img.Registry), img.Registry, img.Repository, remoteCred(cred), egress.Local).
		Head(ctx, remote.Policy{Attempts: 1}, img.Tag)
	if err != nil {
		return "", err
	}
	if d == "" {
		return "", fmt.Errorf("HEAD %s: no Docker-Content-Digest", img.Reference())
	}
	return d.String(), nil
}
