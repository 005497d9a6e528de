package taskfile

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// renderExpr renders a one-step task file whose cmd holds expr.
func renderExpr(t *testing.T, expr string) (string, error) {
	t.Helper()
	r, err := render(t, "version: v1.1.0\nsteps:\n  - id: a\n    cmd: alpine echo {{ "+expr+" }}\n", Options{})
	if err != nil {
		return "", err
	}
	return strings.TrimPrefix(r.Task.Steps[0].Cmd, "alpine echo "), nil
}

// TestCappedFunctions: every function that builds a value from a count or
// multiplies its input refuses, before allocating, a result over the budget,
// and behaves as before within it.
func TestCappedFunctions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, ok, want, over, error string
	}{
		{"repeat", `repeat 3 "ab"`, "ababab", `repeat 1000000000000 "x"`, "the result would be 1000000000000 bytes, more than the 4 MiB"},
		{"repeat overflow", `repeat 2 "x"`, "xx", `repeat 9223372036854775807 "xx"`, "the result would be more than 2^62 bytes"},
		{"until", `until 3 | toString`, "[0 1 2]", `until 1000000000000`, "the result would have 1000000000000 elements, more than the 100000"},
		{"until negative", `until -2 | toString`, "[0 -1]", `until -1000000000000`, "1000000000000 elements"},
		{"range over until", `range until 2 }}x{{ end`, "xx", `range until 1000000000000 }}x{{ end`, "1000000000000 elements"},
		{"untilStep", `untilStep 1 10 4 | toString`, "[1 5 9]", `untilStep 0 1000000000000 2`, "500000000000 elements"},
		{"untilStep overflow", `untilStep 9223372036854775800 9223372036854775807 3 | toString`, "[9223372036854775800 9223372036854775803 9223372036854775806]",
			`untilStep -9223372036854775808 9223372036854775807 1`, "18446744073709551615 elements"},
		{"seq", `seq 3`, "1 2 3", `seq 1000000000000`, "1000000000000 elements"},
		{"seq down", `seq 5 -2 1`, "5 3 1", `seq 0 -1 -1000000000000`, "1000000000001 elements"},
		{"randAlpha", `randAlpha 5 | len`, "5", `randAlpha 1000000000000`, "1000000000000 bytes"},
		{"randAlphaNum", `randAlphaNum 5 | len`, "5", `randAlphaNum 1000000000000`, "1000000000000 bytes"},
		{"randAscii", `randAscii 5 | len`, "5", `randAscii 1000000000000`, "1000000000000 bytes"},
		{"randNumeric", `randNumeric 5 | len`, "5", `randNumeric 1000000000000`, "1000000000000 bytes"},
		{"randBytes", `randBytes 3 | len`, "4", `randBytes 1000000000000`, "2000000000000 bytes"},
		{"indent", `"a" | indent 2 | quote`, `"  a"`, `"a\nb" | indent 1000000000000`, "2000000000003 bytes"},
		{"nindent", `"a" | nindent 1 | len`, "3", `"a" | nindent 1000000000000`, "1000000000002 bytes"},
		{"wrap", `wrap 3 "ab cd" | len`, "5", `wrap 1 (repeat 1500000 "x ")`, "6000001 bytes"},
		{"wrapWith", `wrapWith 2 "|" "ab cd"`, "ab|cd", `wrapWith 1 (repeat 4000 "-") (repeat 2000 "x ")`, "16008000 bytes"},
		{"replace", `"a-b" | replace "-" "_"`, "a_b", `repeat 4000 "x" | replace "" (repeat 4000 "y")`, "16008000 bytes"},
		{"regexReplaceAll", `regexReplaceAll "a(x*)b" "-axxb-" "${1}W"`, "-xxW-", `regexReplaceAll "(x+)" (repeat 4000 "x") (repeat 4000 "$1")`, "16012000 bytes"},
		{"mustRegexReplaceAll", `mustRegexReplaceAll "b" "abc" "X"`, "aXc", `mustRegexReplaceAll "" (repeat 4000 "x") (repeat 4000 "y")`, "16008000 bytes"},
		{"regexReplaceAllLiteral", `regexReplaceAllLiteral "b" "abc" "$1"`, "a$1c", `regexReplaceAllLiteral "" (repeat 4000 "x") (repeat 4000 "y")`, "16008000 bytes"},
		{"regexReplaceAll matches", `regexReplaceAll "x" "xx" "y"`, "yy", `regexReplaceAll "" (repeat 200000 "x") "y"`, "100001 elements"},
		{"regexFindAll", `regexFindAll "a" "aba" -1 | len`, "2", `regexFindAll "" (repeat 200000 "x") -1`, "100001 elements"},
		{"regexSplit", `regexSplit "," "a,b" -1 | len`, "2", `mustRegexSplit "" (repeat 200000 "x") -1`, "100001 elements"},
		{"split", `(split "," "a,b")._1`, "b", `split "" (repeat 200000 "x")`, "200000 elements"},
		{"splitList", `splitList "," "a,b" | len`, "2", `splitList "" (repeat 200000 "x")`, "200000 elements"},
		{"splitn", `(splitn "," 2 "a,b,c")._1`, "b,c", `splitn "" -1 (repeat 200000 "x")`, "200000 elements"},
		{"join", `list 1 2 | join "-"`, "1-2", `until 100000 | join (repeat 1000 "-")`, "more than the 4 MiB"},
		{"printf", `printf "%03d" 7`, "007", `printf "%0999999d%0999999d%0999999d%0999999d%0999999d" 1 2 3 4 5`, "more than the 4 MiB"},
		{"printf index", `printf "%[1]s%[1]s" "ab"`, "abab", `printf (repeat 2000 "%[1]s") (repeat 4000 "x")`, "more than the 4 MiB"},
		{"print", `print "a" 1 2`, "a1 2", `print (repeat 3000000 "x") (repeat 3000000 "x")`, "the arguments are larger than the 4 MiB"},
		{"cat", `cat "a" "b"`, "a b", `$x := repeat 2000000 "x" }}{{ cat $x $x $x`, "the arguments are larger than the 4 MiB"},
		{"toJson", `list 1 | toJson`, "[1]", `$x := repeat 2000000 "x" }}{{ toJson (list $x $x $x)`, "the arguments are larger than the 4 MiB"},
		{"uniq", `list 1 1 2 | uniq | len`, "2", `until 5000 | uniq`, "the list has 5000 elements, more than the 2896"},
		{"self-containing dict", `dict "a" 1 | toJson`, `{"a":1}`, `$d := dict }}{{ set $d "self" $d`, "nested more than 100 levels deep or contains itself"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := renderExpr(t, tt.ok)
			if err != nil || got != tt.want {
				t.Errorf("{{ %s }} = %q, %v; want %q", tt.ok, got, err, tt.want)
			}
			start := time.Now()
			_, err = renderExpr(t, tt.over)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "over the render budget") || !strings.Contains(err.Error(), tt.error) {
				t.Errorf("{{ %s }}: err = %v; want the render budget error %q", tt.over, err, tt.error)
			} else if !strings.HasPrefix(err.Error(), "acr-task.yaml:4:") || !strings.Contains(err.Error(), ": steps[0]: template: at <") {
				t.Errorf("{{ %s }}: err = %v; want it at line 4, naming steps[0] and the expression", tt.over, err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("{{ %s }} took %s to fail", tt.over, d)
			}
		})
	}
}

// TestBudgetErrorFormat: the error names the file position, the step and the
// expression, as other template errors do.
func TestBudgetErrorFormat(t *testing.T) {
	t.Parallel()
	src := "version: v1.1.0\nsteps:\n  - id: small\n    cmd: alpine echo hi\n  - id: big\n    cmd: alpine echo {{ repeat 1000000000000 \"x\" }}\n"
	_, err := render(t, src, Options{})
	want := `acr-task.yaml:6:24: steps[1]: template: at <repeat 1000000000000 "x">: error calling repeat: over the render budget: ` +
		`the result would be 1000000000000 bytes, more than the 4 MiB a template function may produce`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant  %s", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || len(e.Problems) != 1 || e.Problems[0].Field != "steps[1]" || e.Problems[0].Line != 6 {
		t.Errorf("problems = %+v", e)
	}
}

// TestRenderTimeBudget: loops and recursion that allocate little stop at the
// time budget, naming the loop.
func TestRenderTimeBudget(t *testing.T) {
	t.Parallel()
	lim := defaultLimits
	lim.time = 100 * time.Millisecond
	tests := []struct{ name, text, want string }{
		{"nested range", "steps:\n  - cmd: {{ range until 100000 }}{{ range until 100000 }}{{ end }}{{ end }}\n", "steps[0]: template: at <range until 100000>"},
		{"range over an integer", "steps:\n  - cmd: {{ range 1000000000000 }}{{ end }}\n", "steps[0]: template: at <range 1000000000000>"},
		{"range over a variable", "steps:\n  - cmd: {{ $l := until 100000 }}{{ range $l }}{{ range $l }}{{ end }}{{ end }}\n", "steps[0]: template: at <range $l>"},
		{"recursion", "{{ define \"r\" }}{{ if lt . 40 }}{{ template \"r\" (add . 1) }}{{ template \"r\" (add . 1) }}{{ end }}{{ end }}steps:\n  - cmd: {{ template \"r\" 0 }}\n", "acr-task.yaml:1:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ps := &problems{file: "acr-task.yaml"}
			start := time.Now()
			_, ok := executeWithin(ps, tt.text, templateData(testRun, nil), lim)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("stopped after %s", d)
			}
			err := ps.err()
			if ok || err == nil {
				t.Fatal("rendered")
			}
			msg := err.Error()
			if !strings.Contains(msg, "over the render budget: rendering took longer than 100ms") || !strings.Contains(msg, tt.want) ||
				strings.Contains(msg, budgetCheck) {
				t.Errorf("err = %v", err)
			}
		})
	}
}

// TestRenderTotalBudget: a loop cannot accumulate what its functions produce
// past the total budget, even when each value is small enough.
func TestRenderTotalBudget(t *testing.T) {
	t.Parallel()
	_, err := renderExpr(t, `range until 100 }}{{ $x := repeat 4000000 "x" }}{{ end`)
	if err == nil || !strings.Contains(err.Error(), "the template functions produced more than 64 MiB in total") {
		t.Errorf("err = %v", err)
	}
	// Returning an argument (set returns its dict) costs nothing new.
	got, err := renderExpr(t, `$d := dict }}{{ range $i := until 500 }}{{ $_ := set $d (toString $i) $i }}{{ end }}{{ len $d`)
	if err != nil || got != "500" {
		t.Errorf("building a dict = %q, %v", got, err)
	}
}

func TestStepAt(t *testing.T) {
	t.Parallel()
	text := "version: v1.1.0\nsteps:\n  - id: a\n    cmd: x\n\n  - id: b\n    env:\n      - A=1\n    cmd: y\nsecrets:\n  - id: s\n"
	for line, want := range map[int]string{1: "", 2: "", 3: "steps[0]", 4: "steps[0]", 6: "steps[1]", 8: "steps[1]", 9: "steps[1]", 11: "", 99: ""} {
		if got := stepAt(text, line); got != want {
			t.Errorf("stepAt(%d) = %q; want %q", line, got, want)
		}
	}
	if got := stepAt("steps:\n- cmd: a\n- cmd: b\n", 3); got != "steps[1]" {
		t.Errorf("unindented list: %q", got)
	}
}
