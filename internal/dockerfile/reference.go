package dockerfile

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// ErrInvalidReference is wrapped by every error ParseReference returns.
var ErrInvalidReference = errors.New("invalid image reference")

// DockerHub is the canonical domain of Docker Hub references.
const DockerHub = "docker.io"

var (
	// One path component of a repository name (distribution/reference grammar).
	componentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	// A registry host (DNS name or IPv4) with an optional port, or a bracketed IPv6 address.
	domainRE = regexp.MustCompile(`^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$`)
	tagRE    = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
	digestRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$`)
)

// Reference is an image reference split into its parts, as written: ParseReference does not
// fill in defaults; Normalize does.
type Reference struct {
	// Domain is the registry host[:port], or "" when the reference names none.
	Domain string
	// Path is the repository path inside the registry, e.g. "library/node" or "node".
	Path string
	// Tag is the tag without the colon, or "".
	Tag string
	// Digest is "algorithm:hex", or "".
	Digest string
}

// ParseReference parses an image reference with the grammar of the Docker CLI
// (github.com/distribution/reference): [domain/]path[:tag][@digest]. The first path
// component is a domain when it contains '.' or ':', is "localhost", or has upper-case
// letters. No defaults are applied.
func ParseReference(s string) (Reference, error) {
	var r Reference
	if s == "" {
		return r, fmt.Errorf("%w: empty reference", ErrInvalidReference)
	}
	name := s
	if i := strings.IndexByte(name, '@'); i >= 0 {
		r.Digest = name[i+1:]
		name = name[:i]
		if !digestRE.MatchString(r.Digest) {
			return Reference{}, fmt.Errorf("%w: %q: invalid digest %q", ErrInvalidReference, s, r.Digest)
		}
	}
	if i := strings.LastIndexByte(name, ':'); i >= 0 && !strings.Contains(name[i+1:], "/") {
		r.Tag = name[i+1:]
		name = name[:i]
		if !tagRE.MatchString(r.Tag) {
			return Reference{}, fmt.Errorf("%w: %q: invalid tag %q", ErrInvalidReference, s, r.Tag)
		}
	}
	if name == "" {
		return Reference{}, fmt.Errorf("%w: %q: missing repository name", ErrInvalidReference, s)
	}
	if len(name) > 255 {
		return Reference{}, fmt.Errorf("%w: %q: repository name longer than 255 characters", ErrInvalidReference, s)
	}
	if i := strings.IndexByte(name, '/'); i >= 0 {
		first := name[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first {
			r.Domain = first
			name = name[i+1:]
			if !domainRE.MatchString(r.Domain) {
				return Reference{}, fmt.Errorf("%w: %q: invalid registry host %q", ErrInvalidReference, s, r.Domain)
			}
		}
	}
	for _, c := range strings.Split(name, "/") {
		if !componentRE.MatchString(c) {
			if strings.ToLower(c) != c {
				return Reference{}, fmt.Errorf("%w: %q: repository name must be lowercase", ErrInvalidReference, s)
			}
			return Reference{}, fmt.Errorf("%w: %q: invalid repository name component %q", ErrInvalidReference, s, c)
		}
	}
	r.Path = name
	return r, nil
}

// Normalize returns the canonical form of r: Docker Hub references get the "docker.io"
// domain ("index.docker.io" and "registry-1.docker.io" are folded into it) and the
// "library/" namespace for single-component paths, and a reference with neither tag
// nor digest gets the tag "latest". Other domains, including host:port, are kept.
func (r Reference) Normalize() Reference {
	switch r.Domain {
	case "", "index.docker.io", "registry-1.docker.io":
		r.Domain = DockerHub
	}
	if r.Domain == DockerHub && !strings.Contains(r.Path, "/") {
		r.Path = "library/" + r.Path
	}
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	return r
}

// Name returns domain/path (or just path when there is no domain).
func (r Reference) Name() string {
	if r.Domain == "" {
		return r.Path
	}
	return r.Domain + "/" + r.Path
}

// String returns the reference in the form it was parsed from, or the canonical form
// after Normalize.
func (r Reference) String() string {
	s := r.Name()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// Normalize parses s and returns its canonical form, e.g. "node:15-alpine" →
// "docker.io/library/node:15-alpine" and "127.0.0.1:5001/node" → "127.0.0.1:5001/node:latest".
func Normalize(s string) (string, error) {
	r, err := ParseReference(s)
	if err != nil {
		return "", err
	}
	return r.Normalize().String(), nil
}
