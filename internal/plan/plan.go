// Package plan turns a rendered task file into an execution plan: an immutable DAG of
// steps with every effective setting computed (timeouts, working directories,
// environments, networks, mounts) and every step string parsed (build arguments, cmd
// images and arguments, docker engine commands, push images). Runtime state (status,
// timings, containers) belongs to the executor, not here.
//
// The DAG follows ACR's runner exactly: steps are added in file order; a step without
// when depends on the step before it (the first step on the root); when: ['-']
// depends on the root only; when: [a, b] waits for all of a and b to succeed; when
// may only name earlier steps, so file order is a topological order.
//
// A cmd is split into words with sh quoting rules. ACR hands the whole string to the
// runner's sh -c; gantry starts the container directly, so a cmd with unquoted shell
// operators (| && ; & < ( ) or a newline), command substitution or $variables is
// rejected when the plan is built, with a hint to use bash -c '...' or sh -c '...'
// inside the container. Redirections of the output to /dev/null (> /dev/null,
// 2> /dev/null, &> /dev/null, 2>&1) are honoured, because tutorial files use them:
// they set Cmd.Stdout and Cmd.Stderr to OutputDiscard. A build string follows the
// same rules without redirections. Glob characters and ~ are passed literally (sh
// would expand them against the runner's file system, where they rarely match);
// &> /dev/null discards both streams, as in bash and busybox sh.
//
// A cmd whose first word is docker is an engine command (see DockerCommand).
package plan

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/oci"
	"github.com/gantryhq/gantry/internal/taskfile"
)

// Defaults and fixed names of the runner.
const (
	// Workspace is the container path of the shared workspace volume; relative
	// working directories are resolved under it.
	Workspace = "/workspace"
	// DefaultNetworkName is the network created when a task declares none.
	DefaultNetworkName = "acb_default_network"
	// DefaultNetworkDriver is the driver of the default network.
	DefaultNetworkDriver = "bridge"
	// BuildKitEnv is the step environment entry that keeps BuildKit on for a build.
	BuildKitEnv = "DOCKER_BUILDKIT=1"
	// NoBuildKitEnv is the step environment entry that asks for the classic builder.
	NoBuildKitEnv = "DOCKER_BUILDKIT=0"
)

// Plan is the executable form of a task file. Treat it as read-only.
type Plan struct {
	// File names the task file, for messages.
	File    string
	Version string
	Run     taskfile.Run
	// Notices are lines to log before the first step.
	Notices []string
	// Networks lists the networks of the run: the declared ones, or the default
	// network when none is declared. The executor creates those without
	// SkipCreation before the steps and removes them afterwards; it may map them to
	// the host network, since gantry's engine runs containers with --network host.
	Networks []Network
	// Volumes are the secret volumes of the task.
	Volumes []Volume
	// Steps are in file order, which is a topological order.
	Steps []Step

	index   map[string]int
	secrets []string
	// rendered holds the resolved secrets by id (see Secret).
	rendered *taskfile.Rendered
}

// Network is a Docker network of the run: a declared one (without its
// position in the file) or the default one.
type Network = taskfile.NetworkSettings

// Volume is a secret volume; Files are in name order with decoded contents.
type Volume struct {
	Name  string
	Files []File
}

// File is a file of a secret volume.
type File struct {
	Name string
	Data []byte
}

// Mount mounts a volume of the plan into a step's container.
type Mount struct {
	Volume string
	Path   string
}

// Step is one step with its effective settings. Exactly one of Cmd, Build and Push
// is set, matching Kind.
type Step struct {
	ID    string
	Index int
	Kind  taskfile.Kind
	// Parents are the IDs of the steps that must succeed first; empty means the
	// step depends on the root only and starts immediately.
	Parents []string
	// Children are the IDs of the steps that list this one as a parent.
	Children []string

	// Timeout covers the whole step, retries and repeats included.
	Timeout    time.Duration
	StartDelay time.Duration
	Retries    int
	RetryDelay time.Duration
	// RetryOnErrors limits retries to failures whose output contains one of these.
	RetryOnErrors []string
	// Repeat runs the container Repeat more times after the first run.
	Repeat int

	// WorkingDir is the container working directory; "" when
	// DisableWorkingDirectoryOverride keeps the image's WORKDIR.
	WorkingDir                      string
	DisableWorkingDirectoryOverride bool
	// Env is the step's environment: its own entries, then the task's entries
	// (split at commas) whose keys the step does not set.
	Env []string
	// Network is the network to attach: the step's own, else the default network
	// (see Plan.Networks), else "".
	Network      string
	EntryPoint   string
	User         string
	Isolation    string
	CPUs         string
	Ports        []string
	Expose       []string
	Detach       bool
	Keep         bool
	Privileged   bool
	IgnoreErrors bool
	// Pull pulls the cmd image explicitly before running it, with DownloadRetries
	// attempts DownloadRetryDelay apart.
	Pull               bool
	DownloadRetries    int
	DownloadRetryDelay time.Duration
	Mounts             []Mount

	Cmd   *Cmd
	Build *Build
	Push  *Push
}

// Cmd is a parsed cmd step.
type Cmd struct {
	// Line is the cmd string after image-alias expansion.
	Line string
	// Image is the image to run (the first word), and Args the arguments passed to
	// its entrypoint.
	Image string
	Args  []string
	// Docker is set when the cmd is an engine command (Image is "docker").
	Docker *DockerCommand
	// Stdout and Stderr say where the container's output goes.
	Stdout Output
	Stderr Output
}

// Push is a parsed push step.
type Push struct {
	// Images are the images to push, with ":latest" added where neither tag nor
	// digest is given, without duplicates, in order.
	Images []string
}

// Step returns the step with the given ID.
func (p *Plan) Step(id string) (*Step, bool) {
	i, ok := p.index[id]
	if !ok {
		return nil, false
	}
	return &p.Steps[i], true
}

// Order returns the step IDs in a topological order (file order).
func (p *Plan) Order() []string {
	out := make([]string, len(p.Steps))
	for i, s := range p.Steps {
		out[i] = s.ID
	}
	return out
}

// Roots returns the IDs of the steps that start immediately.
func (p *Plan) Roots() []string {
	var out []string
	for _, s := range p.Steps {
		if len(s.Parents) == 0 {
			out = append(out, s.ID)
		}
	}
	return out
}

// SecretValues returns the secret values of the run (see taskfile.Rendered).
func (p *Plan) SecretValues() []string { return slices.Clone(p.secrets) }

// Secret returns the value of the task file's secret id (a build's
// BuildSecret.Source), and whether it was resolved.
func (p *Plan) Secret(id string) (string, bool) {
	if p.rendered == nil {
		return "", false
	}
	return p.rendered.Secret(id)
}

// New builds the plan of a rendered task. Problems in step strings (cmd, build,
// push) are returned as a *taskfile.Error wrapping taskfile.ErrInvalid, located in
// the task file like validation problems, so that a bad file is rejected before any
// step runs.
func New(r *taskfile.Rendered) (*Plan, error) {
	t := r.Task
	p := &Plan{
		File:     t.File,
		Version:  t.Version,
		Run:      r.Run,
		Notices:  slices.Clone(r.Notices),
		index:    map[string]int{},
		secrets:  r.SecretValues(),
		rendered: r,
	}
	b := builder{plan: p, task: t}

	defaultNetwork, attach := "", false
	for i := len(t.Networks) - 1; i >= 0; i-- {
		if t.Networks[i].IsDefault {
			defaultNetwork, attach = t.Networks[i].Name, true
			break
		}
	}
	for _, n := range t.Networks {
		p.Networks = append(p.Networks, n.NetworkSettings)
	}
	if len(t.Networks) == 0 && !t.NoDefaultNetwork {
		p.Networks = []Network{{Name: DefaultNetworkName, Driver: DefaultNetworkDriver, IsDefault: true}}
		defaultNetwork, attach = DefaultNetworkName, true
	}

	for _, v := range t.Volumes {
		vol := Volume{Name: v.Name}
		for name, value := range v.Secret {
			data, _ := base64.StdEncoding.DecodeString(value) // validated by taskfile
			vol.Files = append(vol.Files, File{Name: name, Data: data})
		}
		sort.Slice(vol.Files, func(i, j int) bool { return vol.Files[i].Name < vol.Files[j].Name })
		p.Volumes = append(p.Volumes, vol)
	}

	taskEnv := splitTaskEnv(t.Env)
	for i := range t.Steps {
		ts := &t.Steps[i]
		s := Step{
			ID:                              ts.ID,
			Index:                           i,
			Kind:                            ts.Kind(),
			Timeout:                         time.Duration(cmp.Or(max(ts.Timeout, 0), t.StepTimeout, taskfile.DefaultStepTimeout)) * time.Second,
			StartDelay:                      time.Duration(ts.StartDelay) * time.Second,
			Retries:                         ts.Retries,
			RetryDelay:                      time.Duration(cmp.Or(max(ts.RetryDelay, 0), taskfile.DefaultRetryDelay)) * time.Second,
			RetryOnErrors:                   ts.RetryOnErrors,
			Repeat:                          ts.Repeat,
			DisableWorkingDirectoryOverride: ts.DisableWorkingDirectoryOverride,
			Env:                             mergeEnv(ts.Env, taskEnv),
			Network:                         ts.Network,
			EntryPoint:                      ts.EntryPoint,
			User:                            ts.User,
			Isolation:                       ts.Isolation,
			CPUs:                            ts.CPUs,
			Ports:                           ts.Ports,
			Expose:                          ts.Expose,
			Detach:                          ts.Detach,
			Keep:                            ts.Keep,
			Privileged:                      ts.Privileged,
			IgnoreErrors:                    ts.IgnoreErrors,
			Pull:                            ts.Pull,
			DownloadRetries:                 ts.DownloadRetries,
			DownloadRetryDelay:              time.Duration(ts.DownloadRetryDelay) * time.Second,
		}
		if s.Network == "" && attach {
			s.Network = defaultNetwork
		}
		if !s.DisableWorkingDirectoryOverride {
			s.WorkingDir = workDir(cmp.Or(ts.WorkingDirectory, t.WorkingDirectory))
		}
		for _, m := range ts.VolumeMounts {
			s.Mounts = append(s.Mounts, Mount{Volume: m.Name, Path: path.Clean(m.MountPath)})
		}
		s.Parents = b.parents(ts)
		buildDir := cmp.Or(s.WorkingDir, Workspace)
		switch s.Kind {
		case taskfile.KindCmd:
			s.Cmd = b.cmd(ts, buildDir)
		case taskfile.KindBuild:
			s.Build = b.build(ts, ts.Build, buildDir, "build")
			if s.Build != nil {
				s.Build.BuildKit = slices.Contains(s.Env, BuildKitEnv)
				s.Build.NoBuildKit = slices.Contains(s.Env, NoBuildKitEnv)
				s.Build.Cache = ts.Cache == "enabled"
				if s.Build.Cache {
					s.Build.CacheRef = cacheRef(s.Build.Tags, r.Run.Registry, r.Run.TaskName, s.ID)
				}
				resolveBuildArgs(s.Build, s.Env)
			}
		case taskfile.KindPush:
			s.Push = b.push(ts)
		}
		if s.Cmd != nil && s.Cmd.Docker != nil && s.Cmd.Docker.Build != nil {
			resolveBuildArgs(s.Cmd.Docker.Build, s.Env)
			b.buildSecrets(ts, "cmd", s.Cmd.Docker.Build)
		}
		if s.Build != nil {
			b.buildSecrets(ts, "build", s.Build)
		}
		p.index[s.ID] = i
		p.Steps = append(p.Steps, s)
	}
	for i := range p.Steps {
		for _, parent := range p.Steps[i].Parents {
			if j, ok := p.index[parent]; ok {
				p.Steps[j].Children = append(p.Steps[j].Children, p.Steps[i].ID)
			}
		}
	}
	if err := b.err(); err != nil {
		return nil, err
	}
	return p, nil
}

// builder accumulates problems while the plan is built.
type builder struct {
	plan     *Plan
	task     *taskfile.Task
	problems []taskfile.Problem
}

func (b *builder) add(s *taskfile.Step, field, format string, args ...any) {
	b.problems = append(b.problems, taskfile.Problem{
		File:    b.task.File,
		Pos:     s.At(field),
		Field:   fmt.Sprintf("steps[%d].%s", s.Index, field),
		Message: taskfile.Mask(fmt.Sprintf(format, args...), b.plan.secrets),
	})
}

func (b *builder) err() error { return taskfile.NewError(b.task.File, b.problems) }

// buildSecrets checks that every --secret of a build names a secret of the
// task file's secrets list.
func (b *builder) buildSecrets(s *taskfile.Step, field string, bd *Build) {
	for _, bs := range bd.Secrets {
		if slices.ContainsFunc(b.task.Secrets, func(ts taskfile.Secret) bool { return ts.ID == bs.Source }) {
			continue
		}
		declared := make([]string, 0, len(b.task.Secrets))
		for _, ts := range b.task.Secrets {
			declared = append(declared, ts.ID)
		}
		if len(declared) == 0 {
			b.add(s, field, "--secret id=%s: the task file declares no secrets; add one with id: %s and its keyvault URI under secrets:", bs.ID, bs.Source)
			continue
		}
		b.add(s, field, "--secret id=%s: no secret %q in the task file's secrets (declared: %s)", bs.ID, bs.Source, strings.Join(declared, ", "))
	}
}

// parents applies ACR's DAG rules; when names are checked against earlier steps.
func (b *builder) parents(s *taskfile.Step) []string {
	switch {
	case s.Immediate():
		return nil
	case len(s.When) == 0:
		if s.Index == 0 {
			return nil
		}
		return []string{b.task.Steps[s.Index-1].ID}
	}
	var out []string
	for _, w := range s.When {
		if slices.Contains(out, w) {
			continue
		}
		if _, ok := b.plan.index[w]; !ok {
			b.add(s, "when", "%q is not defined before step %q (when may only name earlier steps)", w, s.ID)
			continue
		}
		out = append(out, w)
	}
	return out
}

// words splits a step string, reporting shell constructs gantry cannot honour.
func (b *builder) words(s *taskfile.Step, field, line string, redirects bool) *command {
	tokens, err := splitShell(line)
	if err == nil {
		var c *command
		if c, err = simpleCommand(tokens, redirects); err == nil {
			return c
		}
	}
	msg := err.Error()
	if se, ok := err.(*shellError); ok && containsAny(line, b.plan.secrets) {
		msg = se.Generic()
	}
	b.add(s, field, "%s", msg)
	return nil
}

func containsAny(s string, values []string) bool {
	for _, v := range values {
		if v != "" && strings.Contains(s, v) {
			return true
		}
	}
	return false
}

func texts(ts []token) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.text
	}
	return out
}

func (b *builder) cmd(s *taskfile.Step, workdir string) *Cmd {
	c := b.words(s, "cmd", s.Cmd, true)
	if c == nil {
		return nil
	}
	if len(c.words) == 0 {
		b.add(s, "cmd", "names no image")
		return nil
	}
	words := texts(c.words)
	out := &Cmd{Line: s.Cmd, Image: words[0], Args: words[1:], Stdout: c.stdout, Stderr: c.stderr}
	if out.Image == DockerImage {
		d, err := parseDocker(out.Args, workdir)
		if err != nil {
			b.add(s, "cmd", "%v", err)
			return nil
		}
		if s.EntryPoint != "" {
			b.add(s, "entryPoint", "cannot be used with docker %s, which the engine performs itself", d.Subcommand)
		}
		out.Docker = d
		return out
	}
	if _, err := oci.ParseReference(out.Image); err != nil {
		b.add(s, "cmd", "the first word must be the image to run: %v", err)
		return nil
	}
	return out
}

func (b *builder) build(s *taskfile.Step, line, workdir, field string) *Build {
	c := b.words(s, field, line, false)
	if c == nil {
		return nil
	}
	out, err := parseBuild(texts(c.words), workdir)
	if err != nil {
		b.add(s, field, "%v", err)
		return nil
	}
	return out
}

func (b *builder) push(s *taskfile.Step) *Push {
	out := &Push{}
	seen := map[string]bool{}
	for i, img := range s.Push {
		r, err := oci.ParseReference(strings.TrimSpace(img))
		if err != nil {
			b.add(s, fmt.Sprintf("push[%d]", i), "%v", err)
			continue
		}
		key := r.Normalize().String()
		if seen[key] {
			continue
		}
		seen[key] = true
		if r.Tag == "" && r.Digest == "" {
			r.Tag = "latest"
		}
		out.Images = append(out.Images, r.String())
	}
	return out
}

// resolveBuildArgs takes the value of bare --build-arg NAME from the step's
// environment and drops those it does not define.
func resolveBuildArgs(b *Build, env []string) {
	var out []BuildArg
	for _, a := range b.BuildArgs {
		if a.FromEnv {
			v, ok := lookupEnv(env, a.Name)
			if !ok {
				continue
			}
			a.Value = v
		}
		out = append(out, a)
	}
	b.BuildArgs = out
}

func lookupEnv(env []string, name string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}

// workDir resolves a working directory as ACR does: absolute paths are cleaned,
// relative ones (and "") are joined to /workspace.
func workDir(wd string) string {
	if path.IsAbs(wd) {
		return path.Clean(wd)
	}
	return path.Join(Workspace, wd)
}

// splitTaskEnv splits task-level env entries at commas, as ACR does.
func splitTaskEnv(env []string) []string {
	var out []string
	for _, e := range env {
		out = append(out, strings.Split(e, ",")...)
	}
	return out
}

// mergeEnv returns the step's entries followed by the task's entries whose keys the
// step does not set (ACR's mergeEnvs).
func mergeEnv(step, task []string) []string {
	keys := map[string]bool{}
	out := slices.Clone(step)
	for _, e := range step {
		k, _, _ := strings.Cut(e, "=")
		keys[k] = true
	}
	for _, e := range task {
		k, _, _ := strings.Cut(e, "=")
		if !keys[k] {
			out = append(out, e)
		}
	}
	return out
}
