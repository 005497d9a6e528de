package oci

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// ErrInvalidReference is wrapped by every error ParseReference returns.
var ErrInvalidReference = errors.New("invalid image reference")

// ReferenceError is an invalid image reference; it matches
// ErrInvalidReference.
type ReferenceError struct {
	Ref    string
	Reason string // the part at fault: `invalid tag "x"`
}

func (e *ReferenceError) Error() string {
	return fmt.Sprintf("%s: %q: %s", ErrInvalidReference, e.Ref, e.Reason)
}

func (e *ReferenceError) Unwrap() error { return ErrInvalidReference }

// Docker Hub's names: the login server users write, the host its registry
// API is served on, and the key the Docker CLI stores its login under.
const (
	DockerHub       = "docker.io"
	DockerHubAPI    = "registry-1.docker.io"
	DockerHubConfig = "https://index.docker.io/v1/"
)

// IsDockerHub reports whether host is one of Docker Hub's names.
func IsDockerHub(host string) bool {
	switch strings.ToLower(host) {
	case DockerHub, "index.docker.io", DockerHubAPI, "registry.hub.docker.com", DockerHubConfig:
		return true
	}
	return false
}

// NormalizeHost returns a login server in its canonical form: lower case,
// Docker Hub's names folded into "docker.io".
func NormalizeHost(host string) string {
	h := strings.ToLower(host)
	if IsDockerHub(h) || IsDockerHub(strings.TrimSuffix(h, "/")) {
		return DockerHub
	}
	return strings.TrimSuffix(h, "/")
}

// IsLoopback reports whether a host[:port] names this machine's loopback:
// localhost, or an address in 127.0.0.0/8 or ::1. Registries there are
// spoken to over plain HTTP, as Docker does.
func IsLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// APIHost is the host a login server's registry API is served on.
func APIHost(loginServer string) string {
	if NormalizeHost(loginServer) == DockerHub {
		return DockerHubAPI
	}
	return loginServer
}

// Reference is an image reference split into its parts, as written:
// ParseReference does not fill in defaults; Normalize does.
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

var anchoredDomain = regexp.MustCompile(`^(?:` + reference.DomainRegexp.String() + `)$`)
var anchoredTag = regexp.MustCompile(`^(?:` + reference.TagRegexp.String() + `)$`)
var anchoredComponent = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)

// ParseReference parses an image reference with the Docker CLI's grammar
// (github.com/distribution/reference): [domain/]path[:tag][@digest]. The
// first path component is a domain when it contains '.' or ':', is
// "localhost", or has upper-case letters. No defaults are applied. An
// invalid reference's error names the part that is wrong.
func ParseReference(s string) (Reference, error) {
	if s == "" {
		return Reference{}, fmt.Errorf("%w: empty reference", ErrInvalidReference)
	}
	r, hasTag := split(s)
	named, err := reference.ParseNormalizedNamed(s)
	if err == nil && r.Domain != "" && !anchoredDomain.MatchString(r.Domain) {
		// The library reads an invalid first component as a path one.
		err = reference.ErrReferenceInvalidFormat
	}
	if err != nil {
		return Reference{}, &ReferenceError{Ref: s, Reason: diagnose(r, hasTag, err)}
	}
	if r.Digest != "" {
		if c, ok := named.(reference.Digested); ok {
			r.Digest = c.Digest().String()
		}
	}
	return r, nil
}

// split cuts s into its parts as written; hasTag reports a tag separator
// (the tag may be empty).
func split(s string) (r Reference, hasTag bool) {
	name := s
	if i := strings.IndexByte(name, '@'); i >= 0 {
		name, r.Digest = name[:i], name[i+1:]
	}
	if i := strings.LastIndexByte(name, ':'); i >= 0 && !strings.Contains(name[i+1:], "/") {
		name, r.Tag, hasTag = name[:i], name[i+1:], true
	}
	if first, rest, ok := strings.Cut(name, "/"); ok &&
		(strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first) {
		r.Domain, name = first, rest
	}
	r.Path = name
	return r, hasTag
}

// diagnose names the part of r that the parser refused.
func diagnose(r Reference, hasTag bool, err error) string {
	switch {
	case r.Digest != "" && digest.Digest(r.Digest).Validate() != nil:
		return fmt.Sprintf("invalid digest %q", r.Digest)
	case hasTag && !anchoredTag.MatchString(r.Tag):
		return fmt.Sprintf("invalid tag %q", r.Tag)
	case r.Path == "":
		return "missing repository name"
	case r.Domain != "" && !anchoredDomain.MatchString(r.Domain):
		return fmt.Sprintf("invalid registry host %q", r.Domain)
	case errors.Is(err, reference.ErrNameContainsUppercase):
		return "repository name must be lowercase"
	case errors.Is(err, reference.ErrNameTooLong):
		return "repository name longer than 255 characters"
	}
	for _, c := range strings.Split(r.Path, "/") {
		if !anchoredComponent.MatchString(c) {
			if strings.ToLower(c) != c {
				return "repository name must be lowercase"
			}
			return fmt.Sprintf("invalid repository name component %q", c)
		}
	}
	return err.Error()
}

// Normalize returns the canonical form of r: Docker Hub references get the
// "docker.io" domain ("index.docker.io" and "registry-1.docker.io" are
// folded into it) and the "library/" namespace for single-component paths,
// and a reference with neither tag nor digest gets the tag "latest". Other
// domains, including host:port, are kept.
func (r Reference) Normalize() Reference {
	if r.Domain == "" || IsDockerHub(r.Domain) {
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

// Ref is what a registry is asked for a manifest by: the digest, else the
// tag, else "latest".
func (r Reference) Ref() string {
	switch {
	case r.Digest != "":
		return r.Digest
	case r.Tag != "":
		return r.Tag
	}
	return "latest"
}

// Name returns domain/path (or just path when there is no domain).
func (r Reference) Name() string {
	if r.Domain == "" {
		return r.Path
	}
	return r.Domain + "/" + r.Path
}

// String returns the reference in the form it was parsed from, or the
// canonical form after Normalize.
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

// Normalize parses s and returns its canonical form, e.g. "node:15-alpine"
// → "docker.io/library/node:15-alpine" and "127.0.0.1:5001/node" →
// "127.0.0.1:5001/node:latest".
func Normalize(s string) (string, error) {
	r, err := ParseReference(s)
	if err != nil {
		return "", err
	}
	return r.Normalize().String(), nil
}
