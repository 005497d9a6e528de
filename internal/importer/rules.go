package importer

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/oci"
	"github.com/gantryhq/gantry/internal/store"
)

// MaxCacheRules is how many cache rules a registry may have (ACR's limit).
const MaxCacheRules = 1000

// CacheRule maps repositories of a registry to an upstream repository:
// pulls that miss are fetched from the source, stored and served (a
// pull-through cache). A static rule maps one repository; a wildcard rule
// ("library/*" from "upstream.example/library/*", or "*" from
// "upstream.example/*") maps every repository under a prefix.
type CacheRule struct {
	Registry string
	// Name is 5-50 letters, digits and dashes.
	Name string
	// SourceRepository is the upstream: login-server/path, ending in "/*"
	// exactly when TargetRepository does ("docker.io" is Docker Hub, whose
	// one-component names get "library/").
	SourceRepository string
	// TargetRepository is a repository name, "prefix/*" or "*".
	TargetRepository string
	// CredentialSet names the credential set used to log in to the source,
	// "" for anonymous access.
	CredentialSet string
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

var ruleName = regexp.MustCompile(`^[a-zA-Z0-9-]{5,50}$`)

func validRuleName(kind, name string) error {
	if !ruleName.MatchString(name) {
		return invalid("%s name %q: want 5-50 letters, digits and dashes", kind, name)
	}
	return nil
}

// pattern is a parsed target or source path: a name, or a prefix with a
// trailing wildcard ("" for "*").
type pattern struct {
	wildcard bool
	// path is the repository name, or the prefix before "/*".
	path string
}

func parsePattern(s string) (pattern, error) {
	switch {
	case s == "*":
		return pattern{wildcard: true}, nil
	case strings.HasSuffix(s, "/*"):
		p := strings.TrimSuffix(s, "/*")
		if err := store.ValidRepository(p); err != nil {
			return pattern{}, err
		}
		return pattern{wildcard: true, path: p}, nil
	case strings.Contains(s, "*"):
		return pattern{}, fmt.Errorf("%q: a wildcard may only end the path, as prefix/* or *", s)
	default:
		if err := store.ValidRepository(s); err != nil {
			return pattern{}, err
		}
		return pattern{path: s}, nil
	}
}

// covers reports whether two wildcard patterns overlap: the same prefix, or
// one nested in the other ("*" overlaps every wildcard).
func (p pattern) overlaps(q pattern) bool {
	if p.path == "" || q.path == "" || p.path == q.path {
		return true
	}
	return strings.HasPrefix(p.path, q.path+"/") || strings.HasPrefix(q.path, p.path+"/")
}

// match returns the part of repo under a wildcard pattern's prefix.
func (p pattern) match(repo string) (string, bool) {
	if !p.wildcard {
		return "", p.path == repo
	}
	if p.path == "" {
		return repo, true
	}
	rest, ok := strings.CutPrefix(repo, p.path+"/")
	return rest, ok && rest != ""
}

// source is a parsed SourceRepository.
type source struct {
	host string // login server, normalised
	pattern
}

func parseSource(s string) (source, error) {
	host, path, ok := strings.Cut(s, "/")
	if !ok || path == "" {
		return source{}, fmt.Errorf("source %q: want login-server/repository (or login-server/prefix/*, login-server/*)", s)
	}
	host = oci.NormalizeHost(host)
	if err := validHost(host); err != nil {
		return source{}, fmt.Errorf("source %q: %v", s, err)
	}
	p, err := parsePattern(path)
	if err != nil {
		return source{}, fmt.Errorf("source %q: %v", s, err)
	}
	return source{host: host, pattern: p}, nil
}

// upstream returns the source repository that target repository repo maps
// to under the rule (whose target pattern matched it, leaving rest).
func (s source) upstream(rest string) string {
	repo := s.path
	if s.wildcard {
		if repo == "" {
			repo = rest
		} else {
			repo += "/" + rest
		}
	}
	if s.host == oci.DockerHub && !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	return repo
}

// compiledRule is a validated rule ready for matching.
type compiledRule struct {
	CacheRule
	target pattern
	source source
}

// compileRule validates a rule's name and patterns.
func compileRule(r CacheRule) (compiledRule, error) {
	if err := validRuleName("cache rule", r.Name); err != nil {
		return compiledRule{}, err
	}
	t, err := parsePattern(r.TargetRepository)
	if err != nil {
		return compiledRule{}, invalid("cache rule %q: target repository %v", r.Name, err)
	}
	s, err := parseSource(r.SourceRepository)
	if err != nil {
		return compiledRule{}, invalid("cache rule %q: %v", r.Name, err)
	}
	if t.wildcard != s.wildcard {
		return compiledRule{}, invalid("cache rule %q: source %q and target %q must both end in a wildcard (prefix/* or *) or neither",
			r.Name, r.SourceRepository, r.TargetRepository)
	}
	if r.CredentialSet != "" {
		if err := validRuleName("credential set", r.CredentialSet); err != nil {
			return compiledRule{}, err
		}
	}
	r.SourceRepository = s.host + "/" + r.SourceRepository[strings.Index(r.SourceRepository, "/")+1:]
	return compiledRule{CacheRule: r, target: t, source: s}, nil
}

// ruleSet is the cache rules of one registry.
type ruleSet struct {
	static   map[string]*compiledRule
	wildcard []*compiledRule // longest prefix first
}

func newRuleSet(rules []compiledRule) *ruleSet {
	rs := &ruleSet{static: map[string]*compiledRule{}}
	for i := range rules {
		r := &rules[i]
		if r.target.wildcard {
			rs.wildcard = append(rs.wildcard, r)
		} else {
			rs.static[r.target.path] = r
		}
	}
	sort.Slice(rs.wildcard, func(i, j int) bool { return len(rs.wildcard[i].target.path) > len(rs.wildcard[j].target.path) })
	return rs
}

// match returns the rule covering repo and the upstream repository it maps
// to: a static rule wins over a wildcard one, and (wildcards cannot nest)
// at most one wildcard rule can match.
func (rs *ruleSet) match(repo string) (*compiledRule, string, bool) {
	if rs == nil {
		return nil, "", false
	}
	if r, ok := rs.static[repo]; ok {
		return r, r.source.upstream(""), true
	}
	for _, r := range rs.wildcard {
		if rest, ok := r.target.match(repo); ok {
			return r, r.source.upstream(rest), true
		}
	}
	return nil, "", false
}

// checkOverlap applies ACR's rules to a new or changed rule against the
// others of its registry: wildcard rules may not overlap each other (the
// same or a nested prefix), static rules may not share a target; a static
// rule may sit under a wildcard one (it is more specific and wins).
func checkOverlap(r compiledRule, others []compiledRule) error {
	for _, o := range others {
		if o.Name == r.Name {
			continue
		}
		switch {
		case r.target.wildcard && o.target.wildcard && r.target.overlaps(o.target):
			return fmt.Errorf("cache rule %q: wildcard target %q overlaps %q of cache rule %q: %w",
				r.Name, r.TargetRepository, o.TargetRepository, o.Name, ErrConflict)
		case !r.target.wildcard && !o.target.wildcard && r.target.path == o.target.path:
			return fmt.Errorf("cache rule %q: target %q is already the target of cache rule %q: %w",
				r.Name, r.TargetRepository, o.Name, ErrConflict)
		}
	}
	return nil
}
