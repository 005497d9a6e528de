// Package dockerfile discovers the base images a Dockerfile builds from, the input of
// base-image triggers.
//
// Scan reads every FROM instruction in order, substitutes global ARGs (declared before
// the first FROM, defaults overridden by build arguments, plus the automatic platform
// ARGs BUILDPLATFORM, TARGETPLATFORM and their OS/ARCH/VARIANT parts), resolves stage
// references (FROM builder names an earlier stage, not an image; FROM scratch names no
// image) and reports the runtime dependency (origin image of the final stage, or of the
// --target stage) and the buildtime dependencies (every other FROM origin of the stages
// the build runs), each in canonical reference form (see oci.Normalize).
//
// The lexer follows Docker's: parser directives (# escape=`), case-insensitive
// instructions, line continuations, comment lines (also inside continuations) and
// heredocs (RUN/COPY/ADD <<EOF ... EOF), whose bodies are never read as instructions.
// Unlike ACR's scanner, FROM --platform=... is understood.
package dockerfile

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/gantryhq/gantry/internal/errdefs"
	"github.com/gantryhq/gantry/internal/oci"
)

// ErrInvalid is wrapped by every error Scan returns for a Dockerfile it cannot read.
var ErrInvalid = errdefs.New("invalid Dockerfile", errdefs.ErrInvalid)

// ErrTargetNotFound is returned (wrapped) when the requested target stage does not exist.
var ErrTargetNotFound = errors.New("target stage not found")

// Error is a problem at a line of a Dockerfile. It wraps ErrInvalid, and also the
// cause (e.g. oci.ErrInvalidReference) when there is one.
type Error struct {
	Line int
	Msg  string
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("Dockerfile line %d: %s", e.Line, e.Msg) }

// Unwrap returns ErrInvalid and the underlying cause, if any.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrInvalid, e.Err}
	}
	return []error{ErrInvalid}
}

// Stage is one FROM instruction.
type Stage struct {
	// Index is the 0-based position of the stage among the FROM instructions.
	Index int
	// Line is the 1-based line of the FROM instruction.
	Line int
	// Name is the stage name given with AS, lower-cased, or "".
	Name string
	// Platform is the --platform value after ARG substitution, or "".
	Platform string
	// Raw is the image argument as written, before substitution.
	Raw string
	// Image is the image argument after substitution.
	Image string
	// Parent is the index of the earlier stage this FROM refers to, or -1 when it
	// names an image or scratch.
	Parent int
	// Scratch reports FROM scratch.
	Scratch bool
	// Ref is the canonical reference of the image this FROM names; "" when Parent >= 0
	// or Scratch.
	Ref string
	// Origin is the canonical reference of the image at the root of this stage's
	// chain of parents; "" when the chain ends in scratch.
	Origin string
}

// Result is what Scan found.
type Result struct {
	// Stages lists every FROM in file order.
	Stages []Stage
	// Target is the index of the stage the build produces (the last one, or the
	// --target stage).
	Target int
	// Runtime is the origin image of the target stage ("" for an image built FROM scratch).
	Runtime string
	// Buildtime lists the other origin images of the stages up to the target, without
	// duplicates and without Runtime, in file order.
	Buildtime []string
	// Reads lists the images (not stages) that COPY --from=IMAGE and
	// RUN --mount=from=IMAGE read, in canonical form, without duplicates, in
	// file order: the builder fetches them as it does bases, but they are
	// not dependencies of the image (base-image triggers do not follow them).
	Reads []string
}

// Option configures Scan.
type Option func(*options)

type options struct {
	platform      string
	buildPlatform string
}

// WithPlatform sets the target platform (os/arch[/variant]) that TARGETPLATFORM and its
// parts expand to. The default is linux/GOARCH.
func WithPlatform(p string) Option { return func(o *options) { o.platform = p } }

// WithBuildPlatform sets the platform BUILDPLATFORM and its parts expand to. The
// default is linux/GOARCH.
func WithBuildPlatform(p string) Option { return func(o *options) { o.buildPlatform = p } }

var (
	utf8BOM     = []byte{0xEF, 0xBB, 0xBF}
	directiveRE = regexp.MustCompile(`^#\s*([a-zA-Z][a-zA-Z0-9_]*)\s*=\s*(.*?)\s*$`)
	heredocRE   = regexp.MustCompile(`^<<(-?)(["']?)([A-Za-z_][A-Za-z0-9_.-]*)(["']?)`)
	stageNameRE = regexp.MustCompile(`^[a-z][a-z0-9_.-]*$`)
)

// Scan reads a Dockerfile and returns its FROM instructions and base-image
// dependencies. buildArgs are the --build-arg values of the build (they override
// the defaults of global ARGs); target is the --target stage name or "".
func Scan(src []byte, buildArgs map[string]string, target string, opts ...Option) (*Result, error) {
	o := options{platform: "linux/" + runtime.GOARCH, buildPlatform: "linux/" + runtime.GOARCH}
	for _, opt := range opts {
		opt(&o)
	}
	src = bytes.TrimPrefix(src, utf8BOM)
	text := strings.ReplaceAll(string(src), "\r\n", "\n")
	lines := strings.Split(text, "\n")

	s := scanner{
		lines:     lines,
		escape:    '\\',
		buildArgs: buildArgs,
		args:      map[string]string{},
	}
	s.platformArgs("BUILD", o.buildPlatform)
	s.platformArgs("TARGET", o.platform)
	if err := s.directives(); err != nil {
		return nil, err
	}
	if err := s.instructions(); err != nil {
		return nil, err
	}
	return s.result(target)
}

type scanner struct {
	lines     []string
	pos       int // next line index
	escape    rune
	buildArgs map[string]string
	args      map[string]string // global ARG values usable in FROM
	auto      map[string]string // automatic platform ARGs
	stages    []Stage
	reads     []read // COPY --from and RUN --mount from= sources, in file order
}

// read is the source of a COPY --from or a RUN --mount from=: a stage (by
// name or index) or an image, told apart when the scan ends.
type read struct {
	line int
	raw  string // as written
	from string // after substitution of the global ARGs
}

func (s *scanner) platformArgs(prefix, platform string) {
	if s.auto == nil {
		s.auto = map[string]string{}
	}
	parts := strings.SplitN(platform, "/", 3)
	s.auto[prefix+"PLATFORM"] = platform
	s.auto[prefix+"OS"] = parts[0]
	if len(parts) > 1 {
		s.auto[prefix+"ARCH"] = parts[1]
	}
	if len(parts) > 2 {
		s.auto[prefix+"VARIANT"] = parts[2]
	}
}

func (s *scanner) lookup(name string) (string, bool) {
	if v, ok := s.args[name]; ok {
		return v, true
	}
	v, ok := s.auto[name]
	return v, ok
}

// directives reads the parser directives at the top of the file.
func (s *scanner) directives() error {
	seen := map[string]bool{}
	for s.pos < len(s.lines) {
		m := directiveRE.FindStringSubmatch(s.lines[s.pos])
		if m == nil {
			return nil
		}
		key := strings.ToLower(m[1])
		if key != "escape" && key != "syntax" && key != "check" {
			return nil // an unknown directive is a comment and ends the directives
		}
		if seen[key] {
			return &Error{Line: s.pos + 1, Msg: fmt.Sprintf("only one %s parser directive can be used", key)}
		}
		seen[key] = true
		if key == "escape" {
			switch m[2] {
			case "\\":
				s.escape = '\\'
			case "`":
				s.escape = '`'
			default:
				return &Error{Line: s.pos + 1, Msg: fmt.Sprintf("invalid escape token %q does not match ` or \\", m[2])}
			}
		}
		s.pos++
	}
	return nil
}

// continued reports whether line ends with the escape character (trailing blanks
// allowed) and returns the line without it.
func (s *scanner) continued(line string) (string, bool) {
	t := strings.TrimRight(line, " \t")
	if strings.HasSuffix(t, string(s.escape)) {
		return strings.TrimSuffix(t, string(s.escape)), true
	}
	return line, false
}

func (s *scanner) instructions() error {
	for s.pos < len(s.lines) {
		start := s.pos
		line := s.lines[s.pos]
		s.pos++
		trimmed := strings.TrimLeft(line, " \t")
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		logical, more := s.continued(trimmed)
		for more && s.pos < len(s.lines) {
			next := s.lines[s.pos]
			s.pos++
			nt := strings.TrimLeft(next, " \t")
			if nt == "" || strings.HasPrefix(nt, "#") {
				continue // empty and comment lines inside a continuation are dropped
			}
			var part string
			part, more = s.continued(next)
			logical += part
		}
		keyword, rest, _ := strings.Cut(strings.TrimSpace(logical), " ")
		if i := strings.IndexByte(keyword, '\t'); i >= 0 {
			keyword, rest = keyword[:i], keyword[i+1:]+" "+rest
		}
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(keyword) {
		case "FROM":
			if err := s.from(start+1, rest); err != nil {
				return err
			}
		case "ARG":
			if err := s.arg(start+1, rest); err != nil {
				return err
			}
		case "RUN", "COPY", "ADD":
			s.sources(start+1, strings.ToUpper(keyword), rest)
			if err := s.heredocs(start+1, rest); err != nil {
				return err
			}
		}
	}
	return nil
}

// sources records what a COPY --from=X or a RUN --mount=...,from=X,...
// reads. The instruction's flags come before its arguments.
func (s *scanner) sources(line int, keyword, args string) {
	for _, w := range words(args) {
		if !strings.HasPrefix(w, "--") {
			return
		}
		name, value, _ := strings.Cut(w[2:], "=")
		switch {
		case keyword == "COPY" && strings.EqualFold(name, "from"):
			s.addRead(line, value)
		case keyword == "RUN" && strings.EqualFold(name, "mount"):
			for _, kv := range strings.Split(unquote(value), ",") {
				if k, v, ok := strings.Cut(kv, "="); ok && strings.EqualFold(strings.TrimSpace(k), "from") {
					s.addRead(line, v)
				}
			}
		}
	}
}

func (s *scanner) addRead(line int, raw string) {
	raw = unquote(raw)
	from, err := expand(raw, s.escape, s.lookup)
	if err != nil {
		from = raw
	}
	s.reads = append(s.reads, read{line: line, raw: raw, from: from})
}

// unquote drops one pair of surrounding quotes.
func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

// heredocs skips the bodies of the heredocs an instruction opens.
func (s *scanner) heredocs(line int, args string) error {
	for _, w := range words(args) {
		if strings.HasPrefix(w, "<<<") {
			continue
		}
		m := heredocRE.FindStringSubmatch(w)
		if m == nil || m[2] != m[4] {
			continue
		}
		stripTabs, name := m[1] == "-", m[3]
		for {
			if s.pos >= len(s.lines) {
				return &Error{Line: line, Msg: fmt.Sprintf("unterminated heredoc %q", name)}
			}
			body := s.lines[s.pos]
			s.pos++
			if stripTabs {
				body = strings.TrimLeft(body, "\t")
			}
			if body == name {
				break
			}
		}
	}
	return nil
}

// words splits s at blanks outside quotes, keeping the quotes.
func words(s string) []string {
	var out []string
	var b strings.Builder
	var quote rune
	for _, c := range s {
		switch {
		case quote != 0:
			b.WriteRune(c)
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
			b.WriteRune(c)
		case c == ' ' || c == '\t':
			if b.Len() > 0 {
				out = append(out, b.String())
				b.Reset()
			}
		default:
			b.WriteRune(c)
		}
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}

func (s *scanner) arg(line int, args string) error {
	if len(s.stages) > 0 {
		return nil // stage-scoped ARGs are not visible to FROM
	}
	ws := words(args)
	if len(ws) == 0 {
		return &Error{Line: line, Msg: "ARG requires at least one argument"}
	}
	for _, w := range ws {
		name, def, hasDefault := strings.Cut(w, "=")
		if name == "" || !isNameStart([]rune(name)[0]) {
			return &Error{Line: line, Msg: fmt.Sprintf("invalid ARG name %q", name)}
		}
		if hasDefault {
			v, err := expand(def, s.escape, s.lookup)
			if err != nil {
				return &Error{Line: line, Msg: fmt.Sprintf("ARG %s: %v", name, err)}
			}
			def = v
		}
		if v, ok := s.buildArgs[name]; ok {
			s.args[name] = v
		} else if hasDefault {
			s.args[name] = def
		} else if _, ok := s.args[name]; !ok {
			s.args[name] = s.auto[name] // declaring ARG BUILDPLATFORM keeps its value
		}
	}
	return nil
}

func (s *scanner) from(line int, args string) error {
	ws := strings.Fields(args)
	st := Stage{Index: len(s.stages), Line: line, Parent: -1}
	for len(ws) > 0 && strings.HasPrefix(ws[0], "--") {
		flag, value, ok := strings.Cut(ws[0][2:], "=")
		if !ok || strings.ToLower(flag) != "platform" {
			return &Error{Line: line, Msg: fmt.Sprintf("unknown flag %q in FROM (only --platform=<platform> is allowed)", ws[0])}
		}
		p, err := expand(value, s.escape, s.lookup)
		if err != nil {
			return &Error{Line: line, Msg: fmt.Sprintf("FROM --platform: %v", err)}
		}
		st.Platform = p
		ws = ws[1:]
	}
	switch {
	case len(ws) == 1:
	case len(ws) == 3 && strings.EqualFold(ws[1], "AS"):
		st.Name = strings.ToLower(ws[2])
		if !stageNameRE.MatchString(st.Name) {
			return &Error{Line: line, Msg: fmt.Sprintf("invalid stage name %q: names start with a letter and use only letters, digits, '-', '_' and '.'", ws[2])}
		}
		for _, prev := range s.stages {
			if prev.Name == st.Name {
				return &Error{Line: line, Msg: fmt.Sprintf("duplicate stage name %q (first defined at line %d)", st.Name, prev.Line)}
			}
		}
	case len(ws) == 0:
		return &Error{Line: line, Msg: "FROM requires an image"}
	default:
		return &Error{Line: line, Msg: fmt.Sprintf("cannot understand %q: expected FROM [--platform=<platform>] <image> [AS <name>]", "FROM "+args)}
	}
	st.Raw = ws[0]
	image, err := expand(st.Raw, s.escape, s.lookup)
	if err != nil {
		return &Error{Line: line, Msg: fmt.Sprintf("FROM %s: %v", st.Raw, err)}
	}
	if image == "" {
		return &Error{Line: line, Msg: fmt.Sprintf("FROM %s: the image name is empty after ARG substitution", st.Raw)}
	}
	st.Image = image
	lower := strings.ToLower(image)
	for _, prev := range s.stages {
		if prev.Name != "" && prev.Name == lower {
			st.Parent = prev.Index
			st.Origin = prev.Origin
			break
		}
	}
	if st.Parent < 0 {
		if image == "scratch" {
			st.Scratch = true
		} else {
			ref, err := oci.Normalize(image)
			if err != nil {
				return &Error{Line: line, Msg: fmt.Sprintf("FROM %s: %v", st.Raw, err), Err: err}
			}
			st.Ref, st.Origin = ref, ref
		}
	}
	s.stages = append(s.stages, st)
	return nil
}

func (s *scanner) result(target string) (*Result, error) {
	if len(s.stages) == 0 {
		return nil, fmt.Errorf("%w: no FROM instruction", ErrInvalid)
	}
	r := &Result{Stages: s.stages, Target: len(s.stages) - 1}
	if target != "" {
		i := slices.IndexFunc(s.stages, func(st Stage) bool { return st.Name == strings.ToLower(target) })
		if i < 0 {
			return nil, fmt.Errorf("%w: %q", ErrTargetNotFound, target)
		}
		r.Target = i
	}
	r.Runtime = s.stages[r.Target].Origin
	for _, st := range s.stages[:r.Target+1] {
		if st.Ref != "" && st.Ref != r.Runtime && !slices.Contains(r.Buildtime, st.Ref) {
			r.Buildtime = append(r.Buildtime, st.Ref)
		}
	}
	for _, rd := range s.reads {
		if s.isStage(rd.from) {
			continue
		}
		if rd.from == "" {
			return nil, &Error{Line: rd.line, Msg: fmt.Sprintf("--from=%s is empty after ARG substitution (only global ARGs, declared before the first FROM, name the image a build reads)", rd.raw)}
		}
		ref, err := oci.Normalize(rd.from)
		if err != nil {
			return nil, &Error{Line: rd.line, Msg: fmt.Sprintf("--from=%s: %v", rd.raw, err), Err: err}
		}
		if !slices.Contains(r.Reads, ref) {
			r.Reads = append(r.Reads, ref)
		}
	}
	return r, nil
}

// isStage reports whether a --from value names a stage: by its name, or by
// its index.
func (s *scanner) isStage(from string) bool {
	if n, err := strconv.Atoi(from); err == nil {
		return n >= 0 && n < len(s.stages)
	}
	return slices.ContainsFunc(s.stages, func(st Stage) bool { return st.Name != "" && st.Name == strings.ToLower(from) })
}
