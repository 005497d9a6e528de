package docker

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// matcher decides which paths .dockerignore patterns exclude. It follows the
// semantics of the docker CLI (moby/patternmatcher): patterns are matched in
// order against the slash path relative to the context root and against
// each of its parent directories; the last matching pattern wins, and a
// pattern starting with "!" re-includes. "*" and "?" do not cross "/", "**"
// matches any number of directories, "[...]" is a character class and "\"
// escapes.
type matcher struct {
	patterns   []ignorePattern
	exceptions bool
}

type ignorePattern struct {
	re        *regexp.Regexp
	exception bool
}

func newMatcher(patterns []string) (*matcher, error) {
	m := &matcher{}
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		exception := strings.HasPrefix(p, "!")
		if exception {
			p = strings.TrimSpace(p[1:])
			m.exceptions = true
		}
		if p == "" {
			if exception {
				return nil, fmt.Errorf("illegal exclusion pattern: %q", "!")
			}
			continue
		}
		p = path.Clean(p)
		if len(p) > 1 && p[0] == '/' {
			p = p[1:]
		}
		re, err := compilePattern(p)
		if err != nil {
			return nil, fmt.Errorf("bad ignore pattern %q: %w", p, err)
		}
		m.patterns = append(m.patterns, ignorePattern{re: re, exception: exception})
	}
	return m, nil
}

// hasExceptions reports whether some "!" pattern may re-include a path
// below an excluded directory.
func (m *matcher) hasExceptions() bool { return m.exceptions }

// excluded reports whether the slash path rel is excluded.
func (m *matcher) excluded(rel string) bool {
	if m == nil || len(m.patterns) == 0 {
		return false
	}
	var parents []string
	for d := path.Dir(rel); d != "."; d = path.Dir(d) {
		parents = append(parents, d)
	}
	matched := false
	for _, p := range m.patterns {
		// An exclusion cannot change an excluded path, an exception an
		// included one.
		if p.exception != matched {
			continue
		}
		hit := p.re.MatchString(rel)
		for i := len(parents) - 1; !hit && i >= 0; i-- {
			hit = p.re.MatchString(parents[i])
		}
		if hit {
			matched = !p.exception
		}
	}
	return matched
}

// compilePattern translates one cleaned pattern into an anchored regular
// expression.
func compilePattern(p string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	rs := []rune(p)
	for i := 0; i < len(rs); i++ {
		ch := rs[i]
		switch ch {
		case '*':
			if i+1 < len(rs) && rs[i+1] == '*' {
				i++
				if i+1 < len(rs) && rs[i+1] == '/' {
					i++ // "**/" is "**"
				}
				if i+1 == len(rs) {
					b.WriteString(".*")
				} else {
					b.WriteString("(.*/)?")
				}
				continue
			}
			b.WriteString("[^/]*")
		case '?':
			b.WriteString("[^/]")
		case '\\':
			if i+1 < len(rs) {
				i++
				b.WriteString(regexp.QuoteMeta(string(rs[i])))
			} else {
				b.WriteString(`\\`)
			}
		case '[':
			j := i + 1
			if j < len(rs) && (rs[j] == '!' || rs[j] == '^') {
				j++
			}
			if j < len(rs) && rs[j] == ']' {
				j++
			}
			for j < len(rs) && rs[j] != ']' {
				j++
			}
			if j >= len(rs) {
				return nil, fmt.Errorf("unterminated character class")
			}
			class := string(rs[i+1 : j])
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			b.WriteString("[" + strings.ReplaceAll(class, `\`, `\\`) + "]")
			i = j
		default:
			b.WriteString(regexp.QuoteMeta(string(ch)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}
