package importer

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/oci"
	"github.com/gantryhq/gantry/internal/store"
)

// LocalScheme prefixes a source naming a registry of this server by name:
// gantry://<registry>/<repository>:<tag>. A source whose host is a
// registry's login server (its listen address) is recognised as local too.
const LocalScheme = "gantry://"

// Reference is a parsed image reference: where the source lives and which
// manifest to take.
type Reference struct {
	// Host is the login server (host[:port]), normalised ("docker.io" for
	// Docker Hub). Empty for a LocalScheme reference.
	Host string
	// Local is the gantry registry named by a LocalScheme reference.
	Local string
	// Scheme is "https" or "http" (loopback hosts and hosts allowed with
	// WithInsecureRegistries, unless the reference said https://).
	Scheme string
	// Repository is the repository path on the source.
	Repository string
	// Tag and Digest select the manifest; at least one is set. With both,
	// the digest wins and the tag is only a name for the target.
	Tag    string
	Digest digest.Digest
}

// String returns the reference in the form it was given (normalised).
func (r Reference) String() string {
	s := r.Host + "/" + r.Repository
	if r.Local != "" {
		s = LocalScheme + r.Local + "/" + r.Repository
	}
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest.String()
	}
	return s
}

// ref is what to ask the source for: the digest if known, else the tag.
func (r Reference) ref() string {
	if r.Digest != "" {
		return r.Digest.String()
	}
	return r.Tag
}

// ParseReference parses an import source: [https://|http://]host[:port]/repo[:tag][@digest],
// gantry://registry/repo[:tag][@digest], or a Docker Hub short form
// (node:15 means docker.io/library/node:15). A reference without tag or
// digest means the tag "latest". insecure reports whether a host may be
// reached over plain HTTP when no scheme is given; loopback hosts always may.
func ParseReference(s string, insecure func(host string) bool) (Reference, error) {
	var r Reference
	rest := s
	forced := ""
	switch {
	case strings.HasPrefix(rest, LocalScheme):
		rest = strings.TrimPrefix(rest, LocalScheme)
		reg, path, ok := strings.Cut(rest, "/")
		if !ok || store.ValidRegistry(reg) != nil {
			return r, invalid("source %q: want %s<registry>/<repository>[:tag][@digest]", s, LocalScheme)
		}
		r.Local, rest = reg, path
	case strings.HasPrefix(rest, "https://"):
		forced, rest = "https", strings.TrimPrefix(rest, "https://")
	case strings.HasPrefix(rest, "http://"):
		forced, rest = "http", strings.TrimPrefix(rest, "http://")
	case strings.Contains(rest, "://"):
		return r, invalid("source %q: unsupported scheme (want https://, http:// or %s)", s, LocalScheme)
	}
	p, err := oci.ParseReference(rest)
	if err != nil {
		var re *oci.ReferenceError
		if errors.As(err, &re) {
			return r, invalid("source %q: %s", s, re.Reason)
		}
		return r, invalid("source %q: %v", s, err)
	}
	if r.Local == "" {
		p = p.Normalize()
		r.Host = oci.NormalizeHost(p.Domain)
		if err := validHost(r.Host); err != nil {
			return r, invalid("source %q: %v", s, err)
		}
	}
	r.Repository, r.Tag = p.Path, p.Tag
	if p.Digest != "" {
		d, err := store.ParseDigest(p.Digest)
		if err != nil {
			return r, invalid("source %q: %v", s, err)
		}
		r.Digest = d
	}
	if r.Tag != "" {
		if err := store.ValidTag(r.Tag); err != nil {
			return r, invalid("source %q: %v", s, err)
		}
	}
	if err := store.ValidRepository(r.Repository); err != nil {
		return r, invalid("source %q: %v", s, err)
	}
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	if r.Local == "" {
		r.Scheme = "https"
		switch {
		case forced != "":
			r.Scheme = forced
		case oci.IsLoopback(r.Host) || (insecure != nil && insecure(r.Host)):
			r.Scheme = "http"
		}
		if r.Scheme == "http" && !oci.IsLoopback(r.Host) && (insecure == nil || !insecure(r.Host)) {
			return r, invalid("source %q: plain HTTP is only allowed for loopback hosts and insecure registries", s)
		}
	}
	return r, nil
}

// validHost checks a login server: a host name or IP with an optional port.
func validHost(h string) error {
	if h == "" || len(h) > 255 || strings.ContainsAny(h, "/@?#\\ \t") {
		return fmt.Errorf("host %q is not a host[:port]", h)
	}
	host := h
	if hp, port, err := net.SplitHostPort(h); err == nil {
		host = hp
		if port == "" || strings.Trim(port, "0123456789") != "" {
			return fmt.Errorf("host %q has a bad port", h)
		}
	} else if strings.Contains(h, ":") && !strings.HasPrefix(h, "[") {
		return fmt.Errorf("host %q is not a host[:port]", h)
	}
	if host == "" {
		return errors.New("empty host")
	}
	return nil
}

// Target is one place an import writes: a repository and, unless the
// import is untagged, a tag.
type Target struct {
	Repository string
	Tag        string
}

func (t Target) String() string {
	if t.Tag == "" {
		return t.Repository
	}
	return t.Repository + ":" + t.Tag
}

// parseTarget parses "repo:tag" or "repo" (the tag then defaults to def).
func parseTarget(s, def string) (Target, error) {
	t := Target{Repository: s, Tag: def}
	if i := strings.LastIndex(s, ":"); i >= 0 && !strings.Contains(s[i:], "/") {
		t.Repository, t.Tag = s[:i], s[i+1:]
	}
	if strings.Contains(t.Repository, "@") {
		return t, invalid("target %q: a target names a repository and tag, not a digest", s)
	}
	if err := store.ValidRepository(t.Repository); err != nil {
		return t, invalid("target %q: %v", s, err)
	}
	if t.Tag == "" {
		return t, invalid("target %q: no tag (the source has none); give repo:tag, or --repository for an untagged import", s)
	}
	if err := store.ValidTag(t.Tag); err != nil {
		return t, invalid("target %q: %v", s, err)
	}
	return t, nil
}
