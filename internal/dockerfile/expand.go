package dockerfile

import (
	"fmt"
	"strings"
)

// expand performs the variable substitution Dockerfile instructions apply to their
// arguments: $VAR, ${VAR}, ${VAR:-word}, ${VAR-word}, ${VAR:+word}, ${VAR+word},
// ${VAR:?msg}, ${VAR?msg}; quote removal ('...' literal, "..." with substitution); and
// the escape character, which makes the next character literal. Unset variables expand
// to "". lookup reports whether a variable is set.
func expand(word string, escape rune, lookup func(string) (string, bool)) (string, error) {
	x := expander{src: []rune(word), escape: escape, lookup: lookup}
	return x.run(0)
}

type expander struct {
	src    []rune
	pos    int
	escape rune
	lookup func(string) (string, bool)
}

// run expands until the end of input or, when depth > 0, until the '}' closing a
// ${...} word.
func (x *expander) run(depth int) (string, error) {
	var b strings.Builder
	inDouble := false
	for x.pos < len(x.src) {
		c := x.src[x.pos]
		switch {
		case c == x.escape:
			x.pos++
			if x.pos < len(x.src) {
				b.WriteRune(x.src[x.pos])
				x.pos++
			} else {
				b.WriteRune(c)
			}
		case c == '\'' && !inDouble && depth == 0:
			x.pos++
			end := x.pos
			for end < len(x.src) && x.src[end] != '\'' {
				end++
			}
			if end >= len(x.src) {
				return "", fmt.Errorf("unterminated single quote")
			}
			b.WriteString(string(x.src[x.pos:end]))
			x.pos = end + 1
		case c == '"' && depth == 0:
			inDouble = !inDouble
			x.pos++
		case c == '}' && depth > 0 && !inDouble:
			return b.String(), nil
		case c == '$':
			v, err := x.variable(depth)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
		default:
			b.WriteRune(c)
			x.pos++
		}
	}
	if inDouble {
		return "", fmt.Errorf("unterminated double quote")
	}
	if depth > 0 {
		return "", fmt.Errorf("missing '}' in variable substitution")
	}
	return b.String(), nil
}

func isNameStart(c rune) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isNameChar(c rune) bool { return isNameStart(c) || (c >= '0' && c <= '9') }

// variable expands the substitution starting at x.src[x.pos] == '$'.
func (x *expander) variable(depth int) (string, error) {
	x.pos++ // '$'
	if x.pos >= len(x.src) {
		return "$", nil
	}
	c := x.src[x.pos]
	if isNameStart(c) {
		start := x.pos
		for x.pos < len(x.src) && isNameChar(x.src[x.pos]) {
			x.pos++
		}
		v, _ := x.lookup(string(x.src[start:x.pos]))
		return v, nil
	}
	if c != '{' {
		return "$", nil
	}
	x.pos++ // '{'
	start := x.pos
	for x.pos < len(x.src) && isNameChar(x.src[x.pos]) {
		x.pos++
	}
	name := string(x.src[start:x.pos])
	if name == "" {
		return "", fmt.Errorf("bad substitution: missing variable name after ${")
	}
	if x.pos >= len(x.src) {
		return "", fmt.Errorf("missing '}' in variable substitution ${%s", name)
	}
	value, set := x.lookup(name)
	op := x.src[x.pos]
	if op == '}' {
		x.pos++
		return value, nil
	}
	colon := false
	if op == ':' {
		colon = true
		x.pos++
		if x.pos >= len(x.src) {
			return "", fmt.Errorf("missing '}' in variable substitution ${%s", name)
		}
		op = x.src[x.pos]
	}
	if op != '-' && op != '+' && op != '?' {
		return "", fmt.Errorf("unsupported modifier %q in ${%s}", string(op), name)
	}
	x.pos++
	word, err := x.run(depth + 1)
	if err != nil {
		return "", err
	}
	x.pos++ // '}'
	present := set && (!colon || value != "")
	switch op {
	case '-':
		if present {
			return value, nil
		}
		return word, nil
	case '+':
		if present {
			return word, nil
		}
		return "", nil
	default: // '?'
		if present {
			return value, nil
		}
		if word == "" {
			word = "is not allowed to be unset"
		}
		return "", fmt.Errorf("%s: %s", name, word)
	}
}
