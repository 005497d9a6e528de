package plan

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/taskfile"
)

func newPlan(t *testing.T, src string) *Plan {
	t.Helper()
	r, err := taskfile.Render(context.Background(), []byte(src), taskfile.Options{Run: taskfile.Run{ID: "ca1", Registry: "127.0.0.1:5001"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(r)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlanGraph(t *testing.T) {
	t.Parallel()
	p := newPlan(t, `steps:
  - {id: a, cmd: alpine}
  - {id: b, cmd: alpine}
  - {id: c, cmd: alpine, when: ["-"]}
  - {id: d, cmd: alpine, when: [b, c]}
  - {id: e, cmd: alpine}
`)
	if got := p.Order(); !slices.Equal(got, []string{"a", "b", "c", "d", "e"}) {
		t.Errorf("Order = %q", got)
	}
	if got := p.Roots(); !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("Roots = %q", got)
	}
	for id, want := range map[string][2][]string{
		"a": {nil, {"b"}},
		"b": {{"a"}, {"d"}},
		"c": {nil, {"d"}},
		"d": {{"b", "c"}, {"e"}},
		"e": {{"d"}, nil},
	} {
		s, ok := p.Step(id)
		if !ok || !slices.Equal(s.Parents, want[0]) || !slices.Equal(s.Children, want[1]) {
			t.Errorf("step %s: parents %q children %q; want %q %q", id, s.Parents, s.Children, want[0], want[1])
		}
	}
	if _, ok := p.Step("nope"); ok {
		t.Error("Step(nope) found a step")
	}
	// Every parent comes before its child in Order.
	pos := map[string]int{}
	for i, id := range p.Order() {
		pos[id] = i
	}
	for _, s := range p.Steps {
		for _, parent := range s.Parents {
			if pos[parent] >= pos[s.ID] {
				t.Errorf("%s before its parent %s", s.ID, parent)
			}
		}
	}
}

func TestPlanEffectiveValues(t *testing.T) {
	t.Parallel()
	p := newPlan(t, `stepTimeout: 0
env: ["A=1,B=2", "C=3"]
steps:
  - {id: a, cmd: alpine, env: [B=step], retryDelay: 2, timeout: 7, startDelay: 3}
  - {id: b, build: -t x --build-arg A --build-arg B --build-arg Z ., env: [DOCKER_BUILDKIT=1]}
`)
	a, _ := p.Step("a")
	if a.Timeout != 7*time.Second || a.RetryDelay != 2*time.Second || a.StartDelay != 3*time.Second {
		t.Errorf("a: %v %v %v", a.Timeout, a.RetryDelay, a.StartDelay)
	}
	if !slices.Equal(a.Env, []string{"B=step", "A=1", "C=3"}) {
		t.Errorf("a env = %q", a.Env)
	}
	b, _ := p.Step("b")
	if b.Timeout != 600*time.Second || b.RetryDelay != 5*time.Second {
		t.Errorf("b: %v %v", b.Timeout, b.RetryDelay)
	}
	if !b.Build.BuildKit {
		t.Error("BuildKit not detected")
	}
	if got := b.Build.BuildArgMap(); len(got) != 2 || got["A"] != "1" || got["B"] != "2" {
		t.Errorf("build args = %v", got)
	}
	if p.Networks[0].Name != DefaultNetworkName || a.Network != DefaultNetworkName {
		t.Errorf("networks %v, step network %q", p.Networks, a.Network)
	}
}

func TestPlanErrorIsTaskfileError(t *testing.T) {
	t.Parallel()
	r, err := taskfile.Render(context.Background(), []byte("steps:\n  - cmd: alpine a | b\n  - build: .\n    id: x\n  - build: nope\n    id: y\n"), taskfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(r)
	var e *taskfile.Error
	if !errors.As(err, &e) || !errors.Is(err, taskfile.ErrInvalid) || len(e.Problems) != 1 {
		t.Fatalf("err = %v", err)
	}
	if e.Problems[0].Line != 2 || e.Problems[0].Field != "steps[0].cmd" {
		t.Errorf("problem = %+v", e.Problems[0])
	}
}

func TestSplitShell(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want []string // words, then "|op" for operators
		err  string
	}{
		{in: "a b  c", want: []string{"a", "b", "c"}},
		{in: `a 'b c' "d e" f\ g`, want: []string{"a", "b c", "d e", "f g"}},
		{in: `"a\"b" "\$x" "\\" "\q"`, want: []string{`a"b`, "$x", `\`, `\q`}},
		{in: `'' ""`, want: []string{"", ""}},
		{in: "a\\\nb", want: []string{"ab"}},
		{in: "a # c d", want: []string{"a"}},
		{in: "a#b", want: []string{"a#b"}},
		{in: "a $ b$", want: []string{"a", "$", "b$"}},
		{in: "'$HOME' '$(x)' '`y`'", want: []string{"$HOME", "$(x)", "`y`"}},
		{in: "a|b", want: []string{"a", "|op|", "b"}},
		{in: "a 2>/dev/null", want: []string{"a", "2|op>", "/dev/null"}},
		{in: "a 12>x", want: []string{"a", "12|op>", "x"}},
		{in: "a b2>x", want: []string{"a", "b2", "|op>", "x"}},
		{in: "a '2'>x", want: []string{"a", "2", "|op>", "x"}},
		{in: "a&&b;c||d&>e>>f", want: []string{"a", "|op&&", "b", "|op;", "c", "|op||", "d", "|op&>", "e", "|op>>", "f"}},
		{in: "a\nb", want: []string{"a", "|op\n", "b"}},
		{in: "a 'b", err: "has an unterminated single quote"},
		{in: `a "b`, err: "has an unterminated double quote"},
		{in: "a $(b)", err: "command substitution $(...) is not supported"},
		{in: `a "$(b)"`, err: "command substitution $(...) is not supported"},
		{in: "a `b`", err: "command substitution `...` is not supported"},
		{in: "a $HOME", err: `variable expansion "$HOME" is not supported`},
		{in: "a ${HOME:-x}", err: `variable expansion "${HOME:-x}" is not supported`},
		{in: `a "x$_y"`, err: `variable expansion "$_y" is not supported`},
		{in: "a $1", err: `shell parameter expansion "$1" is not supported`},
		{in: "a $?", err: `shell parameter expansion "$?" is not supported`},
	} {
		tokens, err := splitShell(tt.in)
		if tt.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
				t.Errorf("splitShell(%q) error = %v; want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("splitShell(%q): %v", tt.in, err)
			continue
		}
		var got []string
		for _, tok := range tokens {
			if tok.op != "" {
				fd := ""
				if tok.fd >= 0 {
					fd = strconv.Itoa(tok.fd)
				}
				got = append(got, fd+"|op"+tok.op)
			} else {
				got = append(got, tok.text)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("splitShell(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestRedirections(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in             string
		stdout, stderr Output
		err            string
	}{
		{in: "a", stdout: OutputLog, stderr: OutputLog},
		{in: "a > /dev/null", stdout: OutputDiscard, stderr: OutputLog},
		{in: "a 1>>/dev/null", stdout: OutputDiscard, stderr: OutputLog},
		{in: "a 2>/dev/null", stdout: OutputLog, stderr: OutputDiscard},
		{in: "a >/dev/null 2>&1", stdout: OutputDiscard, stderr: OutputDiscard},
		{in: "a 2>&1 >/dev/null", stdout: OutputDiscard, stderr: OutputLog},
		{in: "a 2>/dev/null 1>&2", stdout: OutputDiscard, stderr: OutputDiscard},
		{in: "a &>/dev/null", stdout: OutputDiscard, stderr: OutputDiscard},
		{in: "a </dev/null", stdout: OutputLog, stderr: OutputLog},
		{in: "a >| /dev/null", stdout: OutputDiscard, stderr: OutputLog},
		{in: "a > out.txt", err: `redirection to a file "> out.txt" is not supported`},
		{in: "a < in.txt", err: `input redirection "< in.txt" is not supported`},
		{in: "a 3>/dev/null", err: `redirection "3>" is not supported`},
		{in: "a 2>&3", err: `redirection ">&3" is not supported`},
		{in: "a >", err: `redirection ">" has no target`},
		{in: "a << EOF", err: `unquoted shell operator "<<" is not supported`},
		{in: "a\n", stdout: OutputLog, stderr: OutputLog},
	} {
		tokens, err := splitShell(tt.in)
		if err != nil {
			t.Fatalf("splitShell(%q): %v", tt.in, err)
		}
		c, err := simpleCommand(tokens, true)
		if tt.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
				t.Errorf("%q: error = %v; want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if c.stdout != tt.stdout || c.stderr != tt.stderr || len(c.words) != 1 {
			t.Errorf("%q: stdout %s stderr %s words %d; want %s %s 1", tt.in, c.stdout, c.stderr, len(c.words), tt.stdout, tt.stderr)
		}
	}
	tokens, _ := splitShell("a > /dev/null")
	if _, err := simpleCommand(tokens, false); err == nil {
		t.Error("redirection accepted where it is not allowed")
	}
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	specs := []flagSpec{{long: "--tag", short: "-t", value: true}, {long: "--quiet", short: "-q"}}
	flags, ops, err := parseFlags([]string{"-t", "a", "--tag=b", "-tc", "-t=d", "-q", "--quiet=false", "x", "--", "-t"}, specs, "cmd")
	if err != nil {
		t.Fatal(err)
	}
	want := []Flag{{"--tag", "a"}, {"--tag", "b"}, {"--tag", "c"}, {"--tag", "d"}, {"--quiet", "true"}, {"--quiet", "false"}}
	if !slices.Equal(flags, want) || !slices.Equal(ops, []string{"x", "-t"}) {
		t.Errorf("flags %v operands %q", flags, ops)
	}
	for args, msg := range map[string]string{
		"--nope":        `unknown flag "--nope" for cmd`,
		"-x":            `unknown flag "-x" for cmd`,
		"-qt":           `unknown flag "-qt" for cmd (combined short flags are not supported)`,
		"--quiet=maybe": `flag --quiet of cmd needs true or false, not "maybe"`,
		"--tag":         "flag --tag of cmd needs a value",
		"-t":            "flag -t of cmd needs a value",
	} {
		if _, _, err := parseFlags(strings.Fields(args), specs, "cmd"); err == nil || err.Error() != msg {
			t.Errorf("parseFlags(%q) = %v; want %q", args, err, msg)
		}
	}
}

func TestSupportedDockerSubcommands(t *testing.T) {
	t.Parallel()
	want := []string{"build", "images", "inspect", "login", "logout", "pull", "push", "rmi", "tag"}
	if got := SupportedDockerSubcommands(); !slices.Equal(got, want) {
		t.Errorf("SupportedDockerSubcommands = %q", got)
	}
}
