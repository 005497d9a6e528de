package taskfile

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Timeouts ACR gives the steps of a Dockerfile task, in seconds.
const (
	DockerBuildTimeout = 8 * 60 * 60
	DockerPushTimeout  = 30 * 60
)

// DockerBuild describes a task whose file is a Dockerfile (a task created with
// -f Dockerfile, or a one-off gantry build): ACR runs it as a build step "build" and,
// unless NoPush, a push step "push" of the same tags.
type DockerBuild struct {
	// Dockerfile is the -f value; "" for the context's Dockerfile.
	Dockerfile string
	// Context is the build context; "." when empty.
	Context string
	// Tags are the -t values. A tag that names no registry gets the run's registry,
	// as ACR does: hello-world:{{.Run.ID}} → 127.0.0.1:5001/hello-world:ca1.
	Tags []string
	// BuildArgs are NAME=value build arguments (--arg).
	BuildArgs []string
	// SecretBuildArgs are build arguments whose values are masked (--secret-arg).
	SecretBuildArgs []string
	Target          string
	Platform        string
	Isolation       string
	Labels          []string
	NoCache         bool
	Pull            bool
	NoPush          bool
}

var unquotedRE = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// quote single-quotes s for the sh-style splitting of build strings.
func quote(s string) string {
	if unquotedRE.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// RenderDockerfile builds the Rendered task of a Dockerfile task. Each argument is
// rendered as a template with .Run and .Values (as ACR renders the build command), so
// tags such as {{.Run.ID}} work. Secrets files and aliases do not apply; the values of
// SecretBuildArgs are reported by SecretValues.
func RenderDockerfile(ctx context.Context, b DockerBuild, opts Options) (*Rendered, error) {
	_ = ctx // no I/O: kept for symmetry with Render
	file := cmp.Or(opts.File, "Dockerfile")
	data, r, err := begin(opts)
	if err != nil {
		return nil, err
	}
	ps := &problems{file: file}
	renderArg := func(field, s string) string {
		out, ok := execute(ps, s, data)
		if !ok {
			ps.list[len(ps.list)-1].Field = field
		}
		return out
	}

	var args, tags []string
	if b.Isolation != "" {
		args = append(args, "--isolation="+quote(renderArg("isolation", b.Isolation)))
	}
	if b.Pull {
		args = append(args, "--pull")
	}
	for i, l := range b.Labels {
		args = append(args, "--label", quote(renderArg(index("labels", i), l)))
	}
	if b.NoCache {
		args = append(args, "--no-cache")
	}
	if b.Dockerfile != "" {
		args = append(args, "-f", quote(renderArg("dockerfile", b.Dockerfile)))
	}
	for i, t := range b.Tags {
		tag := prefixRegistry(renderArg(index("tags", i), t), r.Run.Registry)
		tags = append(tags, tag)
		args = append(args, "-t", quote(tag))
	}
	for i, a := range b.BuildArgs {
		args = append(args, "--build-arg", quote(renderArg(index("buildArgs", i), a)))
	}
	for i, a := range b.SecretBuildArgs {
		v := renderArg(index("secretBuildArgs", i), a)
		if _, secret, ok := strings.Cut(v, "="); ok {
			r.addSecret(secret)
		}
		args = append(args, "--build-arg", quote(v))
	}
	if b.Target != "" {
		args = append(args, "--target", quote(renderArg("target", b.Target)))
	}
	if b.Platform != "" {
		args = append(args, "--platform", quote(renderArg("platform", b.Platform)))
	}
	args = append(args, quote(renderArg("context", cmp.Or(b.Context, "."))))
	if err := ps.err(); err != nil {
		return nil, r.masked(err)
	}

	t := &Task{File: file, Version: DefaultVersion, StepTimeout: DefaultStepTimeout, NoDefaultNetwork: true}
	t.Steps = append(t.Steps, Step{ID: "build", Build: strings.Join(args, " "), Timeout: DockerBuildTimeout, RetryDelay: DefaultRetryDelay})
	if !b.NoPush && len(tags) > 0 {
		t.Steps = append(t.Steps, Step{Index: 1, ID: "push", Push: tags, When: []string{"build"}, Timeout: DockerPushTimeout, RetryDelay: DefaultRetryDelay})
	}
	text, err := yaml.Marshal(map[string]any{"steps": dockerBuildYAML(t)})
	if err != nil {
		return nil, fmt.Errorf("encoding the build task: %w", err)
	}
	r.Task, r.Text = t, string(text)
	sortLongestFirst(r.secrets)
	return r, nil
}

// dockerBuildYAML is the task file equivalent to a Dockerfile task, for Rendered.Text.
func dockerBuildYAML(t *Task) []map[string]any {
	var out []map[string]any
	for _, s := range t.Steps {
		m := map[string]any{"id": s.ID, "timeout": s.Timeout}
		if s.Build != "" {
			m["build"] = s.Build
		} else {
			m["push"] = s.Push
			m["when"] = s.When
		}
		out = append(out, m)
	}
	return out
}

// prefixRegistry puts the run's registry in front of a tag that names none (ACR also
// leaves library/... alone).
func prefixRegistry(tag, registry string) string {
	if registry == "" || strings.HasPrefix(tag, registry+"/") || strings.HasPrefix(tag, "library/") {
		return tag
	}
	first, _, found := strings.Cut(tag, "/")
	if found && (strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first) {
		return tag
	}
	return registry + "/" + tag
}
