package plan

import (
	"fmt"
	"strings"
)

// token is a word or an operator of a command line.
type token struct {
	op   string // "" for a word
	text string // the word after quote removal
	// fd is the explicit file descriptor of a redirection ("2>"), or -1.
	fd int
	// quoted reports that some part of the word was quoted.
	quoted bool
}

// shellError is a command line gantry cannot run the way ACR's runner shell would.
// The message names the offending part of the line ("what" + detail + rest); Generic
// leaves the detail out, for lines that hold a secret value.
type shellError struct {
	what, detail, rest string
}

func (e *shellError) Error() string {
	if e.detail == "" {
		return e.what + " " + e.rest
	}
	return e.what + " " + e.detail + " " + e.rest
}

// Generic returns the message without the quoted part of the command line.
func (e *shellError) Generic() string { return e.what + " " + e.rest }

func shErr(what, detail, rest string) *shellError {
	return &shellError{what: strings.TrimSpace(what), detail: detail, rest: strings.TrimSpace(rest)}
}

const runnerShellHint = "(ACR runs cmd through the runner's sh -c; gantry starts the container directly)"

// splitShell splits a command line into words and operators with POSIX sh quoting:
// blanks separate words; '...' is literal; "..." and \ escape as in sh; an escaped
// newline joins lines; # starts a comment at the start of a word. Expansions the
// runner's shell would perform ($VAR, ${...}, $(...), `...`) are errors, because
// gantry passes the words to the container as they are.
func splitShell(s string) ([]token, error) {
	var out []token
	var b strings.Builder
	inWord, quoted := false, false
	rs := []rune(s)
	endWord := func() {
		if inWord {
			out = append(out, token{text: b.String(), fd: -1, quoted: quoted})
		}
		b.Reset()
		inWord, quoted = false, false
	}
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			endWord()
		case c == '\n':
			endWord()
			out = append(out, token{op: "\n", fd: -1})
		case c == '\\':
			if i+1 < len(rs) && rs[i+1] == '\n' {
				i++
				continue
			}
			inWord, quoted = true, true
			if i+1 < len(rs) {
				i++
				b.WriteRune(rs[i])
			} else {
				b.WriteRune(c)
			}
		case c == '\'':
			end := i + 1
			for end < len(rs) && rs[end] != '\'' {
				end++
			}
			if end >= len(rs) {
				return nil, shErr("has an unterminated", "", "single quote")
			}
			b.WriteString(string(rs[i+1 : end]))
			inWord, quoted = true, true
			i = end
		case c == '"':
			inWord, quoted = true, true
			i++
			for ; i < len(rs) && rs[i] != '"'; i++ {
				switch rs[i] {
				case '\\':
					if i+1 < len(rs) && strings.ContainsRune("$`\"\\\n", rs[i+1]) {
						i++
						if rs[i] != '\n' {
							b.WriteRune(rs[i])
						}
					} else {
						b.WriteRune('\\')
					}
				case '$':
					if err := expansion(rs, i); err != nil {
						return nil, err
					}
					b.WriteRune('$')
				case '`':
					return nil, shErr("command substitution", "`...`", "is not supported "+runnerShellHint+": single-quote it, or run it inside the container with bash -c '...'")
				default:
					b.WriteRune(rs[i])
				}
			}
			if i >= len(rs) {
				return nil, shErr("has an unterminated", "", "double quote")
			}
		case c == '$':
			if err := expansion(rs, i); err != nil {
				return nil, err
			}
			inWord = true
			b.WriteRune(c)
		case c == '`':
			return nil, shErr("command substitution", "`...`", "is not supported "+runnerShellHint+": single-quote it, or run it inside the container with bash -c '...'")
		case c == '#' && !inWord:
			for i+1 < len(rs) && rs[i+1] != '\n' {
				i++
			}
		case strings.ContainsRune("|&;<>()", c):
			fd := -1
			if inWord && !quoted && (c == '<' || c == '>') && isDigits(b.String()) {
				fmt.Sscan(b.String(), &fd)
				b.Reset()
				inWord = false
			}
			endWord()
			op := operator(rs, i)
			out = append(out, token{op: op, fd: fd})
			i += len([]rune(op)) - 1
		default:
			inWord = true
			b.WriteRune(c)
		}
	}
	endWord()
	return out, nil
}

func isDigits(s string) bool {
	if s == "" || len(s) > 2 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// operator returns the longest shell operator starting at rs[i].
func operator(rs []rune, i int) string {
	rest := string(rs[i:min(i+3, len(rs))])
	for _, op := range []string{"&>>", "<<-", "<<<", ">>", ">&", ">|", "<<", "<&", "<>", "&&", "&>", "||", "|&", ";;"} {
		if strings.HasPrefix(rest, op) {
			return op
		}
	}
	return string(rs[i])
}

// expansion reports an error when rs[i] == '$' starts an expansion the runner's
// shell would perform.
func expansion(rs []rune, i int) error {
	if i+1 >= len(rs) {
		return nil
	}
	c := rs[i+1]
	switch {
	case c == '(':
		return shErr("command substitution", "$(...)", "is not supported "+runnerShellHint+": single-quote it, or run it inside the container with bash -c '...'")
	case c == '{' || c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
		end := i + 1
		if c == '{' {
			for end < len(rs) && rs[end] != '}' {
				end++
			}
			end = min(end+1, len(rs))
		} else {
			for end < len(rs) && (rs[end] == '_' || (rs[end] >= 'a' && rs[end] <= 'z') || (rs[end] >= 'A' && rs[end] <= 'Z') || (rs[end] >= '0' && rs[end] <= '9')) {
				end++
			}
		}
		return shErr("variable expansion", fmt.Sprintf("%q", string(rs[i:end])), "is not supported "+runnerShellHint+": single-quote it to pass it literally, or use bash -c '...' to expand it inside the container")
	case (c >= '0' && c <= '9') || strings.ContainsRune("@*#?$!-", c):
		return shErr("shell parameter expansion", fmt.Sprintf("%q", string(rs[i:i+2])), "is not supported "+runnerShellHint+": single-quote it to pass it literally")
	}
	return nil
}

// Output says where a stream of a cmd step goes.
type Output string

// Outputs of a cmd step.
const (
	// OutputLog sends the stream to the run log (the default).
	OutputLog Output = "log"
	// OutputDiscard discards the stream (the step's cmd ends in > /dev/null).
	OutputDiscard Output = "discard"
)

// command is a command line after the operators gantry can honour are applied.
type command struct {
	words          []token
	stdout, stderr Output
}

// simpleCommand accepts a single command with redirections of stdout/stderr to
// /dev/null (which ACR's runner shell applies to the container's output) and rejects
// every other operator.
func simpleCommand(tokens []token, allowRedirects bool) (*command, error) {
	c := &command{stdout: OutputLog, stderr: OutputLog}
	fds := map[int]Output{1: OutputLog, 2: OutputLog}
	for i := 0; i < len(tokens); i++ {
		t := tokens[i]
		if t.op == "" {
			c.words = append(c.words, t)
			continue
		}
		if t.op == "\n" && i == len(tokens)-1 {
			continue
		}
		if !allowRedirects || !strings.ContainsAny(t.op, "<>") || t.op == "<<" || t.op == "<<-" || t.op == "<<<" || t.op == "<>" || t.op == "<&" {
			return nil, operatorError(t.op)
		}
		if i+1 >= len(tokens) || tokens[i+1].op != "" {
			return nil, shErr("redirection", fmt.Sprintf("%q", t.op), "has no target")
		}
		target := tokens[i+1].text
		i++
		fd := t.fd
		switch t.op {
		case "<":
			if target != "/dev/null" {
				return nil, shErr("input redirection", fmt.Sprintf("%q", "< "+target), "is not supported "+runnerShellHint)
			}
			continue
		case ">&":
			if fd < 0 {
				fd = 1
			}
			src := map[string]int{"1": 1, "2": 2}[target]
			if src == 0 || (fd != 1 && fd != 2) {
				return nil, shErr("redirection", fmt.Sprintf("%q", t.op+target), "is not supported (only 2>&1 and 1>&2 are)")
			}
			fds[fd] = fds[src]
			continue
		}
		if target != "/dev/null" {
			return nil, shErr("redirection to a file", fmt.Sprintf("%q", t.op+" "+target), "is not supported "+runnerShellHint+": write the file inside the container with bash -c '... > /workspace/file' (only > /dev/null is honoured)")
		}
		switch {
		case t.op == "&>" || t.op == "&>>":
			fds[1], fds[2] = OutputDiscard, OutputDiscard
		case fd < 0 || fd == 1:
			fds[1] = OutputDiscard
		case fd == 2:
			fds[2] = OutputDiscard
		default:
			return nil, shErr("redirection", fmt.Sprintf("%q", fmt.Sprint(fd)+t.op), "is not supported (only stdout, 1, and stderr, 2, can be redirected)")
		}
	}
	c.stdout, c.stderr = fds[1], fds[2]
	return c, nil
}

func operatorError(op string) error {
	name := op
	if op == "\n" {
		name = "newline"
	}
	return shErr("unquoted shell operator", fmt.Sprintf("%q", name), "is not supported "+runnerShellHint+": quote it, or run the command line inside the container with bash -c '...' or sh -c '...'")
}
