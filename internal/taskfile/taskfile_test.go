package taskfile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var testRun = Run{
	ID:           "ca1",
	Registry:     "127.0.0.1:5001",
	RegistryName: "contoso",
	Date:         time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600)),
	OS:           "linux",
	Architecture: "amd64",
}

func render(t *testing.T, src string, opts Options) (*Rendered, error) {
	t.Helper()
	if opts.Run.ID == "" {
		opts.Run = testRun
	}
	return Render(context.Background(), []byte(src), opts)
}

func mustRender(t *testing.T, src string, opts Options) *Rendered {
	t.Helper()
	r, err := render(t, src, opts)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return r
}

func TestRenderSecrets(t *testing.T) {
	t.Parallel()
	src := `version: v1.1.0
secrets:
  - id: user
    keyvault: https://{{.Values.kv}}.vault.azure.net/secrets/{{.Run.RegistryName}}-user
  - id: pass-word
    keyvault: vault://{{.Values.kv}}/secrets/pw
volumes:
  - name: v
    secret:
      pw: {{index .Secrets "pass-word" | b64enc}}
steps:
  - cmd: docker login $Registry -u {{.Secrets.user}} -p '{{index .Secrets "pass-word"}}'
`
	var mu sync.Mutex
	var asked []string
	r := mustRender(t, src, Options{
		Set: []string{"kv=contosovault"},
		ResolveSecret: func(_ context.Context, id, uri string) (string, error) {
			mu.Lock()
			asked = append(asked, id+" "+uri)
			mu.Unlock()
			return map[string]string{"user": "admin", "pass-word": "s3cr3t!pw"}[id], nil
		},
	})
	slices.Sort(asked)
	want := []string{
		"pass-word vault://contosovault/secrets/pw",
		"user https://contosovault.vault.azure.net/secrets/contoso-user",
	}
	if !slices.Equal(asked, want) {
		t.Errorf("resolver calls = %q; want %q", asked, want)
	}
	if got := r.Task.Steps[0].Cmd; got != "docker login 127.0.0.1:5001 -u admin -p 's3cr3t!pw'" {
		t.Errorf("cmd = %q", got)
	}
	if got := r.Task.Volumes[0].Secret["pw"]; got != "czNjcjN0IXB3" {
		t.Errorf("volume value = %q", got)
	}
	wantSecrets := []string{"czNjcjN0IXB3", "s3cr3t!pw", "YWRtaW4=", "admin"}
	if got := r.SecretValues(); !slices.Equal(got, wantSecrets) {
		t.Errorf("SecretValues = %q; want %q", got, wantSecrets)
	}
	if got := r.Mask("login admin s3cr3t!pw czNjcjN0IXB3"); got != "login *** *** ***" {
		t.Errorf("Mask = %q", got)
	}
	if !strings.Contains(r.Text, "s3cr3t!pw") {
		t.Errorf("rendered text lacks the secret")
	}
}

func TestRenderSecretErrors(t *testing.T) {
	t.Parallel()
	src := "secrets:\n  - id: a\n    keyvault: vault://v/secrets/a\nsteps: [{cmd: alpine}]\n"
	notFound := errors.New("not found")
	_, err := render(t, src, Options{ResolveSecret: func(context.Context, string, string) (string, error) { return "", notFound }})
	if !errors.Is(err, ErrSecret) || !errors.Is(err, notFound) {
		t.Fatalf("err = %v; want ErrSecret wrapping the resolver's error", err)
	}
	if want := `secret "a" (vault://v/secrets/a): resolving secret: not found`; err.Error() != want {
		t.Errorf("err = %q; want %q", err, want)
	}
	_, err = render(t, src, Options{})
	if !errors.Is(err, ErrSecret) {
		t.Fatalf("err = %v; want ErrSecret without a resolver", err)
	}

	// An invalid secrets list is not resolved; every problem is reported.
	called := false
	_, err = render(t, "secrets:\n  - id: a\n  - id: b\n    keyvault: x\nsteps:\n  - cmd: alpine\n    retries: -1\n", Options{
		ResolveSecret: func(context.Context, string, string) (string, error) { called = true; return "", nil },
	})
	var e *Error
	if !errors.As(err, &e) || len(e.Problems) != 2 || called {
		t.Fatalf("err = %v (resolver called: %v); want two problems and no resolution", err, called)
	}
}

func TestRenderSecretConcurrency(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("secrets:\n")
	for i := range 12 {
		fmt.Fprintf(&b, "  - id: s%d\n    keyvault: vault://v/secrets/s%d\n", i, i)
	}
	b.WriteString("steps: [{cmd: alpine}]\n")
	var cur, peak atomic.Int32
	r := mustRender(t, b.String(), Options{ResolveSecret: func(_ context.Context, id, _ string) (string, error) {
		n := cur.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		cur.Add(-1)
		return "value-" + id, nil
	}})
	if p := peak.Load(); p > 5 || p < 2 {
		t.Errorf("peak concurrency = %d; want 2..5", p)
	}
	if len(r.SecretValues()) != 24 {
		t.Errorf("SecretValues has %d entries; want 24", len(r.SecretValues()))
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Render(ctx, []byte(b.String()), Options{Run: testRun, ResolveSecret: func(ctx context.Context, _, _ string) (string, error) {
		return "", ctx.Err()
	}})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrSecret) {
		t.Errorf("err = %v; want ErrSecret wrapping context.Canceled", err)
	}
}

func TestErrorsMaskSecrets(t *testing.T) {
	t.Parallel()
	src := "secrets:\n  - id: s\n    keyvault: vault://v/secrets/s\nsteps:\n  - id: a\n    cmd: alpine\n  - when: ['{{.Secrets.s}}']\n    cmd: alpine\n"
	_, err := render(t, src, Options{ResolveSecret: func(context.Context, string, string) (string, error) { return "hunter2", nil }})
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), `"***" is not defined`) {
		t.Fatalf("err = %v; want the secret masked", err)
	}
}

func TestRenderValuesErrors(t *testing.T) {
	t.Parallel()
	src := "steps: [{cmd: alpine}]\n"
	for _, tt := range []struct {
		opts Options
		want string
	}{
		{Options{Set: []string{"novalue"}}, `--set "novalue": invalid values: expected key=value`},
		{Options{Set: []string{"=x"}}, `--set: invalid values: empty key in "=x"`},
		{Options{Values: []byte("a: [")}, "values file: invalid values: yaml: line 1: did not find expected node content"},
		{Options{Values: []byte("- a")}, "values file: invalid values: yaml: unmarshal errors:\n  line 1: cannot unmarshal !!seq into map[string]interface {}"},
	} {
		_, err := render(t, src, tt.opts)
		if !errors.Is(err, ErrValues) || err.Error() != tt.want {
			t.Errorf("err = %q; want %q wrapping ErrValues", err, tt.want)
		}
	}
}

func TestRenderValues(t *testing.T) {
	t.Parallel()
	r := mustRender(t, "steps:\n  - cmd: alpine {{.Values.a.b}} {{.Values.c}} {{index .Values \"d.e\"}} {{.Values.f}}\n", Options{
		Values: []byte("a: {b: nested}\nc: from-file\nf: 2\n"),
		Set:    []string{"c=from-set=with=equals", "d.e=flat"},
	})
	if got := r.Task.Steps[0].Cmd; got != "alpine nested from-set=with=equals flat 2" {
		t.Errorf("cmd = %q", got)
	}
}

func TestRenderRunData(t *testing.T) {
	t.Parallel()
	run := testRun
	run.RegistryName = ""
	run.Registry = "myreg.azurecr.io"
	r, err := Render(context.Background(), []byte(`steps:
  - cmd: alpine {{.Run.Date}} {{.Run.RegistryName}} {{.Build.ID}} {{.Run.Nope}}{{.Nope}}
    env:
      - >-
        V={{.ValuesJSON}}
      - >-
        R={{.RunJSON}}
`), Options{Run: run, Set: []string{"k=it's"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Task.Steps[0].Cmd; got != "alpine 20260102-020405z myreg ca1" {
		t.Errorf("cmd = %q", got)
	}
	if got := r.Task.Steps[0].Env[0]; got != `V='{"k":"it'"'"'s"}'` {
		t.Errorf("ValuesJSON env = %q", got)
	}
	if got := r.Task.Steps[0].Env[1]; !strings.HasPrefix(got, `R='{"Architecture":"amd64","Branch":""`) {
		t.Errorf("RunJSON env = %q", got)
	}
}

func TestRenderDefaults(t *testing.T) {
	t.Parallel()
	r := mustRender(t, "steps:\n  - cmd: bash echo\n  - id: x\n    cmd: alpine\n    retryDelay: -1\n    timeout: 0\n", Options{})
	task := r.Task
	if task.Version != DefaultVersion || task.StepTimeout != DefaultStepTimeout || len(r.Notices) != 0 {
		t.Errorf("version %q stepTimeout %d notices %q", task.Version, task.StepTimeout, r.Notices)
	}
	if task.Steps[0].ID != "acb_step_0" || task.Steps[1].ID != "x" {
		t.Errorf("ids %q %q", task.Steps[0].ID, task.Steps[1].ID)
	}
	if task.Steps[0].RetryDelay != DefaultRetryDelay || task.Steps[1].RetryDelay != DefaultRetryDelay {
		t.Errorf("retry delays %d %d", task.Steps[0].RetryDelay, task.Steps[1].RetryDelay)
	}
	if task.Steps[0].Cmd != "bash echo" {
		t.Errorf("v1.0.0 expanded an image alias: %q", task.Steps[0].Cmd)
	}
	if task.Steps[0].Kind() != KindCmd || task.AliasesEnabled() {
		t.Errorf("kind %q aliases %v", task.Steps[0].Kind(), task.AliasesEnabled())
	}
}

func TestRenderAliases(t *testing.T) {
	t.Parallel()
	src := `# leading comment
version: "V1.1.0" # upper case is valid
alias:
  values:
    img: "{{.Run.Registry}}/app"
    bash: 127.0.0.1:5000/bash:custom
  src: [a.yaml, b.yaml]
env: ['A=$ID', 'B=$$ID', 'C=$img:$ID', 'D=$unknown', 'E=$fromA $fromB $both']
steps:
  - cmd: bash -c 'echo $ID'
  - cmd: curl -s http://x
  - cmd: img run
  - cmd: ID
`
	var read []string
	r := mustRender(t, src, Options{
		ReadAliasSource: func(_ context.Context, src string) ([]byte, error) {
			read = append(read, src)
			return []byte(map[string]string{"a.yaml": "fromA: a\nboth: a\n", "b.yaml": "fromB: b\nboth: b\n"}[src]), nil
		},
		ImageAliases: map[string]string{"curl": "127.0.0.1:5000/curl:1", "bash": "ignored"},
	})
	if !slices.Equal(read, []string{"b.yaml", "a.yaml"}) {
		t.Errorf("sources read in order %q; want later ones first", read)
	}
	wantEnv := []string{"A=ca1", "B=$ID", "C=127.0.0.1:5001/app:ca1", "D=$unknown", "E=a b b"}
	if !slices.Equal(r.Task.Env, wantEnv) {
		t.Errorf("env = %q; want %q", r.Task.Env, wantEnv)
	}
	var cmds []string
	for _, s := range r.Task.Steps {
		cmds = append(cmds, s.Cmd)
	}
	wantCmds := []string{
		"127.0.0.1:5000/bash:custom -c 'echo ca1'",
		"127.0.0.1:5000/curl:1 -s http://x",
		"127.0.0.1:5001/app run",
		"ID", // predefined run aliases are not image aliases
	}
	if !slices.Equal(cmds, wantCmds) {
		t.Errorf("cmds = %q; want %q", cmds, wantCmds)
	}
	if !slices.Equal(r.Notices, []string{AliasNotice}) {
		t.Errorf("notices = %q", r.Notices)
	}
	if r.Task.Alias == nil || r.Task.Alias.Values["img"] != "127.0.0.1:5001/app" || !slices.Equal(r.Task.Alias.Src, []string{"a.yaml", "b.yaml"}) {
		t.Errorf("alias = %+v", r.Task.Alias)
	}
}

func TestRenderAliasSourceErrors(t *testing.T) {
	t.Parallel()
	src := "version: v1.1.0\nalias:\n  src: [x.yaml]\nsteps: [{cmd: alpine}]\n"
	boom := errors.New("boom")
	_, err := render(t, src, Options{ReadAliasSource: func(context.Context, string) ([]byte, error) { return nil, boom }})
	if !errors.Is(err, ErrAliasSource) || !errors.Is(err, boom) || err.Error() != `alias.src[0] "x.yaml": reading alias source: boom` {
		t.Errorf("err = %v", err)
	}
	_, err = render(t, src, Options{})
	if !errors.Is(err, ErrAliasSource) {
		t.Errorf("err = %v; want ErrAliasSource without a reader", err)
	}
	_, err = render(t, src, Options{ReadAliasSource: func(context.Context, string) ([]byte, error) { return []byte("bad-key: 1\n"), nil }})
	if err == nil || err.Error() != `acr-task.yaml: alias.src[0]: "x.yaml": alias name "bad-key" may only contain letters and digits` {
		t.Errorf("err = %v", err)
	}
}

func TestSubstitute(t *testing.T) {
	t.Parallel()
	set := &aliasSet{directive: '$', values: map[string]string{"ID": "ca1", "a": "A", "b": "B"}}
	for in, want := range map[string]string{
		"$ID":          "ca1",
		"x$ID.y":       "xca1.y",
		"$$ID":         "$ID",
		"$$":           "$",
		"$a$b":         "AB",
		"$a$b$":        "AB$",
		"$nope $a":     "$nope A",
		"$nope$a":      "$nope$a", // ACR ends the unknown name at the directive
		"${a}":         "${a}",
		"$(date)":      "$(date)",
		"cost: 5$":     "cost: 5$",
		"tail $ID":     "tail ca1",
		"$ID\n$a\t$b ": "ca1\nA\tB ",
	} {
		if got := set.substitute(in); got != want {
			t.Errorf("substitute(%q) = %q; want %q", in, got, want)
		}
	}
	amp := &aliasSet{directive: '&', values: map[string]string{"x": "X"}}
	if got := amp.substitute("&x && $x &&x"); got != "X & $x &x" {
		t.Errorf("custom directive: %q", got)
	}
}

func TestSplitAlias(t *testing.T) {
	t.Parallel()
	lines := strings.Split("version: v1.1.0\nalias:\n  values:\n    a: b\n- src\nsteps:\n  - cmd: x\nalias: again", "\n")
	alias, rest, found := splitAlias(lines)
	if !found || len(alias) != len(lines) || len(rest) != len(lines) {
		t.Fatalf("found %v, %d/%d lines", found, len(alias), len(rest))
	}
	// As in ACR, a second "alias:" line starts another alias block.
	if got := strings.Join(alias, "|"); got != "|alias:|  values:|    a: b|- src|||alias: again" {
		t.Errorf("alias = %q", got)
	}
	if got := strings.Join(rest, "|"); got != "version: v1.1.0|||||steps:|  - cmd: x|" {
		t.Errorf("rest = %q", got)
	}
}

func TestFindVersion(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"version: v1.1.0":              "v1.1.0",
		"steps: []\nversion: 'v1.1.0'": "v1.1.0",
		"version: \"v1.1.0\" # x":      "v1.1.0",
		"  version: v1.1.0":            "",
		"versions: v1":                 "",
	} {
		if got := findVersion(strings.Split(in, "\n")); got != want {
			t.Errorf("findVersion(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestTemplateFunctions(t *testing.T) {
	t.Parallel()
	r := mustRender(t, `steps:
  - cmd: alpine [{{ .Values.nil | b64enc }}] [{{ "hi" | b64enc }}] [{{ .Values.missing }}] [{{ upper "x" }}] [{{ "a-b" | replace "-" "_" }}]
`, Options{})
	if got := r.Task.Steps[0].Cmd; got != "alpine [] [aGk=] [] [X] [a_b]" {
		t.Errorf("cmd = %q", got)
	}
	for _, fn := range []string{`env "HOME"`, `expandenv "$HOME"`, `getHostByName "example.com"`} {
		_, err := render(t, "steps:\n  - cmd: alpine {{ "+fn+" }}\n", Options{})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "is disabled") {
			t.Errorf("%s: err = %v", fn, err)
		}
	}
}

func TestRenderSizeLimit(t *testing.T) {
	t.Parallel()
	_, err := render(t, "steps:\n  - cmd: alpine {{ range until 100000 }}0123456789012345678901234567890123456789012345678901234567890123456789{{ end }}\n", Options{})
	if err == nil || !strings.Contains(err.Error(), "larger than 4 MiB") {
		t.Errorf("err = %v", err)
	}
}

func TestRenderedLineNumbers(t *testing.T) {
	t.Parallel()
	// A template that adds lines shifts positions: the error says they refer to the
	// rendered text.
	_, err := render(t, "env: []{{ \"\\n\\n\" }}\nsteps:\n  - cmd: alpine\n    retries: -1\n", Options{})
	if err == nil || err.Error() != "acr-task.yaml (rendered):6:14: steps[0].retries: must be >= 0, not -1" {
		t.Errorf("err = %v", err)
	}
	// Comments and the alias block keep line numbers.
	_, err = render(t, "version: v1.1.0\n# c\nalias:\n  values:\n    a: b\n\n# c\nsteps:\n  - cmd: alpine\n    retries: -1\n", Options{})
	if err == nil || err.Error() != "acr-task.yaml:10:14: steps[0].retries: must be >= 0, not -1" {
		t.Errorf("err = %v", err)
	}
}

func TestDecodeYAMLFeatures(t *testing.T) {
	t.Parallel()
	src := "version: v1.1.0\r\nx-defaults: &d\r\n  timeout: 30\r\n  retries: 2\r\nsteps:\r\n  - <<: *d\r\n    cmd: alpine\r\n    retries: 1\r\n    keep: yes\r\n    detach: Off\r\n    timeout: 0x10\r\n"
	_, err := render(t, src, Options{})
	if err == nil || err.Error() != `acr-task.yaml:2:1: unknown key "x-defaults" (valid keys: version, stepTimeout, workingDirectory, env, secrets, volumes, networks, alias, steps)` {
		t.Fatalf("err = %v", err)
	}
	src = strings.Replace(src, "x-defaults: &d", "stepTimeout: &d", 1)
	_, err = render(t, src, Options{})
	if err == nil || !strings.Contains(err.Error(), "stepTimeout: must be a number, not a mapping") {
		t.Fatalf("err = %v", err)
	}
	r := mustRender(t, "version: v1.1.0\nsteps:\n  - &s\n    cmd: alpine\n    retries: 2\n  - <<: *s\n    retries: 1\n    keep: yes\n    detach: Off\n    timeout: 0x10\n", Options{})
	s := r.Task.Steps[1]
	if s.Cmd != "alpine" || s.Retries != 1 || !s.Keep || s.Detach || s.Timeout != 16 {
		t.Errorf("merged step = %+v", s)
	}
}

func TestProblemFormat(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		p    Problem
		want string
	}{
		{Problem{File: "f.yaml", Pos: Pos{Line: 3, Column: 7}, Field: "steps[0].cmd", Message: "m"}, "f.yaml:3:7: steps[0].cmd: m"},
		{Problem{File: "f.yaml", Pos: Pos{Line: 3}, Message: "m"}, "f.yaml:3: m"},
		{Problem{File: "f.yaml", Field: "steps", Message: "m"}, "f.yaml: steps: m"},
	} {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q; want %q", got, tt.want)
		}
	}
	if err := NewError("f", nil); err != nil {
		t.Errorf("NewError with no problems = %v", err)
	}
	err := NewError("f", []Problem{{File: "f", Pos: Pos{Line: 9}, Message: "b"}, {File: "f", Pos: Pos{Line: 2}, Message: "a"}})
	if !errors.Is(err, ErrInvalid) || err.Error() != "f: 2 problems:\n  f:2: a\n  f:9: b" {
		t.Errorf("err = %q", err)
	}
}

func TestClosest(t *testing.T) {
	t.Parallel()
	keys := []string{"volumeMounts", "entryPoint", "retries", "retryDelay", "when", "id"}
	for in, want := range map[string]string{
		"volumeMount": "volumeMounts", "entrypoint": "entryPoint", "retires": "retries",
		"retryDelays": "retryDelay", "wehn": "when", "ID": "id", "xyz": "", "retry": "",
	} {
		if got := closest(in, keys); got != want {
			t.Errorf("closest(%q) = %q; want %q", in, got, want)
		}
	}
}
