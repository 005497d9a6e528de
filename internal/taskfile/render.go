package taskfile

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// DateLayout is the Go layout of .Run.Date (UTC), e.g. 20190211-213245z.
const DateLayout = "20060102-150405z"

// DefaultFile is the file name used in problems when Options.File is empty.
const DefaultFile = "acr-task.yaml"

// Run is the run data templates see as .Run (and legacy .Build.ID).
type Run struct {
	ID string
	// Registry is the login server of the run's registry, host:port.
	Registry string
	// RegistryName is the registry's name. When empty it is derived as ACR does: the
	// text of Registry before the first '.'.
	RegistryName string
	// Date is the run's start; templates see it in UTC with DateLayout.
	Date         time.Time
	OS           string
	OSVersion    string
	Architecture string
	Commit       string
	Branch       string
	TaskName     string
	SharedVolume string
	// Repository, GitTag and TriggeredBy are undocumented in ACR but available.
	Repository  string
	GitTag      string
	TriggeredBy string
}

// SecretResolver returns the value of the secret declared with id at uri (the
// rendered keyvault property). It is called concurrently, at most 5 calls at a time.
type SecretResolver func(ctx context.Context, id, uri string) (string, error)

// SourceReader returns the contents of an alias src entry (a path in the context or a
// URL); the caller decides what is reachable.
type SourceReader func(ctx context.Context, src string) ([]byte, error)

// Options are the inputs of Render besides the file itself.
type Options struct {
	// File names the task file in problems; DefaultFile when empty.
	File string
	Run  Run
	// Values is the content of the values file (YAML), or nil.
	Values []byte
	// Set holds --set entries, key=value split at the first '='; they override
	// top-level keys of Values. Keys are flat: a dotted key stays literal.
	Set []string
	// ResolveSecret resolves the secrets list. Required when the file declares secrets.
	ResolveSecret SecretResolver
	// ReadAliasSource reads alias src entries. Required when the file uses alias src.
	ReadAliasSource SourceReader
	// ImageAliases replaces DefaultImageAliases when non-nil.
	ImageAliases map[string]string
}

// Rendered is a rendered, validated task file: the input of plan.New.
type Rendered struct {
	Task *Task
	Run  Run
	// Text is the final rendered YAML. It contains secret values: pass it through
	// Mask before showing it to anyone.
	Text string
	// Notices are lines the runner should log before the steps, e.g. AliasNotice.
	Notices []string

	secrets []string
	byID    map[string]string // resolved secrets by their id
}

// Secret returns the value of the secret with the given id of the file's
// secrets list, and whether it is there.
func (r *Rendered) Secret(id string) (string, bool) {
	v, ok := r.byID[id]
	return v, ok
}

// SecretValues returns every resolved secret value and its base64 form, longest
// first, so that an executor can mask them in logs. The slice is a copy.
func (r *Rendered) SecretValues() []string { return slices.Clone(r.secrets) }

// Mask replaces every secret value in s with "***".
func (r *Rendered) Mask(s string) string { return Mask(s, r.secrets) }

// Mask replaces every occurrence of the given values in s with "***"; values should be
// ordered longest first.
func Mask(s string, values []string) string {
	for _, v := range values {
		if v != "" {
			s = strings.ReplaceAll(s, v, "***")
		}
	}
	return s
}

var registryNameRE = regexp.MustCompile(`^[^.]*`)

// Render turns the bytes of an acr-task.yaml into a validated Task, as ACR's runner
// does: for v1.1.0 the alias block is split out and rendered, $aliases are
// substituted; the file is rendered once to discover its secrets, the secrets are
// resolved, and the file is rendered again with .Secrets; the result is decoded and
// validated, defaults are applied, and image aliases are expanded in cmd. Full-line
// comments are ignored in every version.
//
// A file that cannot run yields an *Error (wrapping ErrInvalid) listing every problem
// with its file, line, column and field; values, secrets and alias sources fail with
// errors wrapping ErrValues, ErrSecret and ErrAliasSource. No message contains a
// secret value.
func Render(ctx context.Context, src []byte, opts Options) (*Rendered, error) {
	file := cmp.Or(opts.File, DefaultFile)
	data, r, err := begin(opts)
	if err != nil {
		return nil, err
	}

	text := strings.ReplaceAll(string(src), "\r\n", "\n")
	lines := strings.Split(text, "\n")
	blankComments(lines)
	ps := &problems{file: file}
	d := &decoder{ps: ps}

	version := findVersion(lines)
	var aliases *aliasSet
	var decl *Alias
	if aliasVersion(version) {
		r.Notices = append(r.Notices, AliasNotice)
		aliasLines, rest, found := splitAlias(lines)
		decl = &Alias{}
		if found {
			out, ok := execute(ps, strings.Join(aliasLines, "\n"), data)
			if !ok {
				return nil, ps.err()
			}
			if root := d.parse(out); root != nil {
				decl = d.alias(root)
			}
			if err := ps.err(); err != nil {
				return nil, err
			}
		}
		if aliases, err = resolveAliases(ctx, d, decl, &opts); err != nil {
			return nil, err
		}
		if err := ps.err(); err != nil {
			return nil, err
		}
		lines = rest
		text = aliases.substitute(strings.Join(lines, "\n"))
	} else {
		text = strings.Join(lines, "\n")
	}
	srcLines := len(lines) - 1

	// Phase 1: render without secrets to discover the secrets list.
	secrets := map[string]any{}
	data["Secrets"] = secrets
	if strings.Contains(text, "secrets") {
		first, ok := execute(ps, text, data)
		if !ok {
			return nil, ps.err()
		}
		ps1 := &problems{file: renderedName(file, srcLines, first)}
		d1 := &decoder{ps: ps1}
		root := d1.parse(first)
		if root == nil {
			return nil, ps1.err()
		}
		var list []Secret
		for _, p := range d1.mapping(root, "") {
			if p.key.Value == "secrets" {
				list = d1.secrets(p.val)
			}
		}
		// An invalid secrets list is reported, with everything else, by the full
		// decode below; resolve only a valid one.
		if len(ps1.list) == 0 && len(list) > 0 {
			resolved, err := resolveSecrets(ctx, list, opts.ResolveSecret)
			if err != nil {
				return nil, err
			}
			r.byID = make(map[string]string, len(list))
			for _, s := range list {
				secrets[s.ID] = resolved[s.ID]
				r.byID[s.ID] = resolved[s.ID]
				r.addSecret(resolved[s.ID])
			}
		}
	}

	// Phase 2: the full render.
	out, ok := execute(ps, text, data)
	if !ok {
		return nil, ps.err()
	}
	r.Text = out
	ps.file = renderedName(file, srcLines, out)
	root := d.parse(out)
	if root == nil {
		return nil, r.masked(ps.err())
	}
	task := d.task(root, ps.file)
	if err := ps.err(); err != nil {
		return nil, r.masked(err)
	}
	if aliases != nil {
		for i := range task.Steps {
			if task.Steps[i].Cmd != "" {
				task.Steps[i].Cmd = aliases.expandImage(task.Steps[i].Cmd)
			}
		}
		if len(decl.Values) > 0 || len(decl.Src) > 0 || decl.Directive != "" {
			task.Alias = decl
		}
	}
	r.Task = task
	sortLongestFirst(r.secrets)
	return r, nil
}

func sortLongestFirst(values []string) {
	slices.SortStableFunc(values, func(a, b string) int { return len(b) - len(a) })
}

// renderedName is the file name for problems found in rendered text: when rendering
// changed the number of lines, positions refer to the rendered text and say so.
func renderedName(file string, srcLines int, out string) string {
	if strings.Count(out, "\n") != srcLines {
		return file + " (rendered)"
	}
	return file
}

func (r *Rendered) addSecret(v string) {
	if v == "" {
		return
	}
	for _, s := range []string{v, base64.StdEncoding.EncodeToString([]byte(v))} {
		if !slices.Contains(r.secrets, s) {
			r.secrets = append(r.secrets, s)
		}
	}
}

// masked removes secret values from the messages of an *Error.
func (r *Rendered) masked(err error) error {
	e, ok := err.(*Error)
	if !ok || len(r.secrets) == 0 {
		return err
	}
	sortLongestFirst(r.secrets)
	for i := range e.Problems {
		e.Problems[i].Message = r.Mask(e.Problems[i].Message)
		e.Problems[i].Field = r.Mask(e.Problems[i].Field)
	}
	return e
}

func resolveSecrets(ctx context.Context, decl []Secret, resolve SecretResolver) (map[string]string, error) {
	if resolve == nil {
		return nil, fmt.Errorf("secret %q: %w: no secret resolver is configured", decl[0].ID, ErrSecret)
	}
	out := make([]string, len(decl))
	errs := make([]error, len(decl))
	sem := make(chan struct{}, 5)
	var wg sync.WaitGroup
	for i, s := range decl {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			out[i], errs[i] = resolve(ctx, s.ID, s.KeyVault)
		}()
	}
	wg.Wait()
	m := map[string]string{}
	for i, s := range decl {
		if errs[i] != nil {
			return nil, fmt.Errorf("secret %q (%s): %w: %w", s.ID, s.KeyVault, ErrSecret, errs[i])
		}
		m[s.ID] = out[i]
	}
	return m, nil
}

// begin starts a rendering: the template data (the run, filled in, and
// the merged values) and the Rendered to fill.
func begin(opts Options) (map[string]any, *Rendered, error) {
	values, err := mergeValues(opts.Values, opts.Set)
	if err != nil {
		return nil, nil, err
	}
	run := opts.Run
	if run.RegistryName == "" {
		run.RegistryName = registryNameRE.FindString(run.Registry)
	}
	return templateData(run, values), &Rendered{Run: run}, nil
}

// mergeValues decodes the values file and applies the --set entries.
func mergeValues(file []byte, set []string) (map[string]any, error) {
	values := map[string]any{}
	if len(strings.TrimSpace(string(file))) > 0 {
		if err := yaml.Unmarshal(file, &values); err != nil {
			return nil, fmt.Errorf("values file: %w: %w", ErrValues, err)
		}
		if values == nil {
			values = map[string]any{}
		}
	}
	for _, s := range set {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("--set %q: %w: expected key=value", s, ErrValues)
		}
		if k == "" {
			return nil, fmt.Errorf("--set: %w: empty key in %q", ErrValues, s)
		}
		values[k] = v
	}
	return values, nil
}

// templateData builds the template data ACR provides.
func templateData(run Run, values map[string]any) map[string]any {
	runMap := map[string]any{
		"ID":           run.ID,
		"Registry":     run.Registry,
		"RegistryName": run.RegistryName,
		"Date":         run.Date.UTC().Format(DateLayout),
		"OS":           run.OS,
		"OSVersion":    run.OSVersion,
		"Architecture": run.Architecture,
		"Commit":       run.Commit,
		"Branch":       run.Branch,
		"TaskName":     run.TaskName,
		"SharedVolume": run.SharedVolume,
		"Repository":   run.Repository,
		"GitTag":       run.GitTag,
		"TriggeredBy":  run.TriggeredBy,
	}
	valuesJSON, _ := json.Marshal(values)
	runJSON, _ := json.Marshal(runMap)
	return map[string]any{
		"Run":        runMap,
		"Build":      map[string]any{"ID": run.ID},
		"Values":     values,
		"ValuesJSON": shellQuote(string(valuesJSON)),
		"RunJSON":    shellQuote(string(runJSON)),
		"Secrets":    map[string]any{},
	}
}

var shellEscapeRE = regexp.MustCompile(`[^\w@%+=:,./-]`)

// shellQuote single-quotes s for a POSIX shell when it needs quoting, as ACR does for
// .ValuesJSON and .RunJSON.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	if shellEscapeRE.MatchString(s) {
		return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
	}
	return s
}
