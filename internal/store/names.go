package store

import (
	"fmt"
	"regexp"

	"github.com/opencontainers/go-digest"
)

var (
	// repositoryRE is the distribution-spec <name> grammar.
	repositoryRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	// tagRE is the distribution-spec <reference> grammar for tags.
	tagRE = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
	// registryRE keeps registry names usable in paths, URLs and scopes.
	registryRE = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$`)
)

// maxRepositoryName bounds a repository name; with a host name in front a
// reference must stay under 255 characters.
const maxRepositoryName = 200

// ValidRepository reports an error wrapping ErrNameInvalid unless name is a
// valid repository name. Path components such as ".." never match.
func ValidRepository(name string) error {
	if len(name) == 0 || len(name) > maxRepositoryName || !repositoryRE.MatchString(name) {
		return fmt.Errorf("repository name %q: %w", name, ErrNameInvalid)
	}
	return nil
}

// ValidTag reports an error wrapping ErrNameInvalid unless tag is a valid tag.
func ValidTag(tag string) error {
	if !tagRE.MatchString(tag) {
		return fmt.Errorf("tag %q: %w", tag, ErrNameInvalid)
	}
	return nil
}

// ValidRegistry reports an error wrapping ErrNameInvalid unless name is a
// valid registry name: lowercase letters, digits and inner dashes, at most
// 64 characters.
func ValidRegistry(name string) error {
	if !registryRE.MatchString(name) {
		return fmt.Errorf("registry name %q: %w", name, ErrNameInvalid)
	}
	return nil
}

// ParseDigest parses s as a sha256 or sha512 digest. Errors wrap
// ErrDigestInvalid.
func ParseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", fmt.Errorf("digest %q: %v: %w", s, err, ErrDigestInvalid)
	}
	switch d.Algorithm() {
	case digest.SHA256, digest.SHA512:
		return d, nil
	}
	return "", fmt.Errorf("digest %q: algorithm %s unsupported: %w", s, d.Algorithm(), ErrDigestInvalid)
}

// IsDigest reports whether ref looks like a digest rather than a tag (tags
// cannot contain ':').
func IsDigest(ref string) bool {
	for i := 0; i < len(ref); i++ {
		if ref[i] == ':' {
			return true
		}
	}
	return false
}
