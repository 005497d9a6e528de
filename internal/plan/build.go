package plan

import (
	"cmp"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/gantryhq/gantry/internal/oci"
)

// ContextKind says where a build context comes from.
type ContextKind string

// Build context kinds.
const (
	// ContextLocal is a directory of the shared workspace (".", a subdirectory).
	ContextLocal ContextKind = "local"
	// ContextGit is a git repository URL, optionally with #ref:dir.
	ContextGit ContextKind = "git"
	// ContextURL is a remote tarball or Dockerfile URL.
	ContextURL ContextKind = "url"
)

// Build is a parsed build step: the arguments of docker build.
type Build struct {
	// Args are the words of the build string after quote removal.
	Args []string
	// Tags are the -t/--tag values as written, in order.
	Tags []string
	// Dockerfile is the -f/--file value as written, or "" for the default
	// (Dockerfile in the context).
	Dockerfile string
	// DockerfilePath is the Dockerfile's absolute path in the workspace for local
	// contexts (-f is relative to the step's working directory, the default is
	// <context>/Dockerfile); "" for remote contexts, where -f is relative to the
	// context root.
	DockerfilePath string
	// Context is the positional argument as written.
	Context     string
	ContextKind ContextKind
	// ContextPath is the context's absolute path in the workspace (local contexts).
	ContextPath string
	// Git is set for git contexts.
	Git *GitContext
	// BuildArgs are the --build-arg values in order. A bare --build-arg NAME takes its
	// value from the step's environment (FromEnv), and is left out when the
	// environment does not define it, as docker does.
	BuildArgs []BuildArg
	Target    string
	Platform  string
	// Network is the --network flag of the build (RUN instructions), not the step's.
	Network string
	NoCache bool
	Pull    bool
	// Labels are the --label values (key=value) in order.
	Labels []string
	// Secrets are the --secret flags: build secrets that RUN
	// --mount=type=secret,id=ID reads, each fed from a secret of the task
	// file's secrets list.
	Secrets []BuildSecret
	// Options are the other docker build flags, in order, to be passed through.
	Options []Flag
	// BuildKit reports DOCKER_BUILDKIT=1 in the step's environment. gantry
	// builds with BuildKit wherever the engine offers it; NoBuildKit
	// (DOCKER_BUILDKIT=0) asks for the classic builder.
	BuildKit   bool
	NoBuildKit bool
	// Cache reports cache: enabled; CacheRef is the registry cache image ACR uses:
	// <registry>/<repository of the first tag>:cache_<task>_<step>.
	Cache    bool
	CacheRef string
}

// BuildSecret is a --secret id=ID[,src=SOURCE] flag: the build sees the
// value of the task file's secret SOURCE (default ID) under the ID.
type BuildSecret struct {
	ID     string
	Source string
}

// parseSecret reads a --secret value. gantry feeds build secrets only from
// the task file's secrets (a vault), never from the runner's files or
// environment: id=ID names the secret the Dockerfile mounts, src= (or
// source=) the task-file secret it comes from when that differs.
func parseSecret(spec string) (BuildSecret, error) {
	var s BuildSecret
	if strings.TrimSpace(spec) == "" {
		return s, fmt.Errorf("--secret needs a value: id=ID[,src=SECRET_ID]")
	}
	for _, field := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(field), "=")
		switch {
		case !ok || v == "":
			return s, fmt.Errorf("--secret %q: %q is not key=value; want id=ID[,src=SECRET_ID]", spec, field)
		case k == "id":
			s.ID = v
		case k == "src" || k == "source":
			s.Source = v
		case k == "type" && v == "file":
		case k == "type" || k == "env":
			return s, fmt.Errorf("--secret %q: build secrets come from the task file's secrets, not the environment; want id=ID[,src=SECRET_ID]", spec)
		default:
			return s, fmt.Errorf("--secret %q: unknown key %q; want id=ID[,src=SECRET_ID]", spec, k)
		}
	}
	if s.ID == "" {
		return s, fmt.Errorf("--secret %q: missing id=ID", spec)
	}
	if s.Source == "" {
		s.Source = s.ID
	}
	return s, nil
}

// BuildArg is a build argument.
type BuildArg struct {
	Name    string
	Value   string
	FromEnv bool
}

// GitContext is a git build context url#ref:dir.
type GitContext struct {
	URL string
	Ref string
	Dir string
}

// BuildArgMap returns the build arguments as a map, the input of dockerfile.Scan.
func (b *Build) BuildArgMap() map[string]string {
	m := make(map[string]string, len(b.BuildArgs))
	for _, a := range b.BuildArgs {
		m[a.Name] = a.Value
	}
	return m
}

var buildFlags = []flagSpec{
	{long: "--tag", short: "-t", value: true},
	{long: "--file", short: "-f", value: true},
	{long: "--build-arg", value: true},
	{long: "--target", value: true},
	{long: "--platform", value: true},
	{long: "--network", value: true},
	{long: "--label", value: true},
	{long: "--no-cache"},
	{long: "--pull"},
	// Passed through.
	{long: "--quiet", short: "-q"},
	{long: "--rm"},
	{long: "--force-rm"},
	{long: "--squash"},
	{long: "--compress"},
	{long: "--disable-content-trust"},
	{long: "--isolation", value: true},
	{long: "--add-host", value: true},
	{long: "--cache-from", value: true},
	{long: "--memory", short: "-m", value: true},
	{long: "--memory-swap", value: true},
	{long: "--shm-size", value: true},
	{long: "--cpu-shares", short: "-c", value: true},
	{long: "--cpu-period", value: true},
	{long: "--cpu-quota", value: true},
	{long: "--cpuset-cpus", value: true},
	{long: "--cpuset-mems", value: true},
	{long: "--cgroup-parent", value: true},
	{long: "--ulimit", value: true},
	{long: "--security-opt", value: true},
	{long: "--progress", value: true},
	{long: "--secret", value: true},
	{long: "--ssh", value: true},
}

// rejectedBuildFlags are docker build flags with a reason they cannot work.
var rejectedBuildFlags = map[string]string{
	"--iidfile":  "it writes a file on the runner",
	"--output":   "it exports the result to the runner",
	"-o":         "it exports the result to the runner",
	"--load":     "buildx flags are not supported; use cache: enabled for registry caching",
	"--push":     "builds do not push; add a push step",
	"--cache-to": "use cache: enabled for registry caching",
}

var gitURLRE = regexp.MustCompile(`\.git(?:#.+)?$`)

// parseBuild parses the arguments of docker build; workdir is the step's effective
// working directory.
func parseBuild(words []string, workdir string) (*Build, error) {
	for _, w := range words {
		name, _, _ := strings.Cut(w, "=")
		if why, ok := rejectedBuildFlags[name]; ok {
			return nil, fmt.Errorf("docker build flag %s is not supported: %s", name, why)
		}
	}
	flags, operands, err := parseFlags(words, buildFlags, "docker build")
	if err != nil {
		return nil, err
	}
	b := &Build{Args: words}
	for _, f := range flags {
		switch f.Name {
		case "--tag":
			if _, err := oci.ParseReference(f.Value); err != nil {
				return nil, fmt.Errorf("tag: %w", err)
			}
			b.Tags = append(b.Tags, f.Value)
		case "--file":
			b.Dockerfile = f.Value
		case "--build-arg":
			name, value, ok := strings.Cut(f.Value, "=")
			if name == "" {
				return nil, fmt.Errorf("--build-arg %q needs a name (NAME=value or NAME)", f.Value)
			}
			b.BuildArgs = append(b.BuildArgs, BuildArg{Name: name, Value: value, FromEnv: !ok})
		case "--target":
			b.Target = f.Value
		case "--platform":
			b.Platform = f.Value
		case "--network":
			b.Network = f.Value
		case "--label":
			b.Labels = append(b.Labels, f.Value)
		case "--no-cache":
			b.NoCache = isTrue(f.Value)
		case "--pull":
			b.Pull = isTrue(f.Value)
		case "--secret":
			s, err := parseSecret(f.Value)
			if err != nil {
				return nil, err
			}
			if slices.ContainsFunc(b.Secrets, func(o BuildSecret) bool { return o.ID == s.ID }) {
				return nil, fmt.Errorf("--secret id=%s is given twice", s.ID)
			}
			b.Secrets = append(b.Secrets, s)
		default:
			b.Options = append(b.Options, f)
		}
	}
	switch len(operands) {
	case 0:
		return nil, fmt.Errorf("docker build needs a build context, e.g. '.'")
	case 1:
	default:
		return nil, fmt.Errorf("docker build takes one build context, found %d: %q", len(operands), operands)
	}
	b.Context = operands[0]
	c := b.Context
	switch {
	case c == "-":
		return nil, fmt.Errorf("a build context from stdin (-) is not supported")
	case strings.HasPrefix(c, "git://") || strings.HasPrefix(c, "git@") || strings.HasPrefix(c, "github.com/") ||
		((strings.HasPrefix(c, "https://") || strings.HasPrefix(c, "http://")) && gitURLRE.MatchString(c)):
		b.ContextKind = ContextGit
		u, frag, _ := strings.Cut(c, "#")
		ref, dir, _ := strings.Cut(frag, ":")
		b.Git = &GitContext{URL: u, Ref: ref, Dir: dir}
	case strings.HasPrefix(c, "https://") || strings.HasPrefix(c, "http://"):
		b.ContextKind = ContextURL
	default:
		b.ContextKind = ContextLocal
		b.ContextPath = absIn(workdir, c)
		if b.Dockerfile == "" {
			b.DockerfilePath = path.Join(b.ContextPath, "Dockerfile")
		} else {
			b.DockerfilePath = absIn(workdir, b.Dockerfile)
		}
	}
	return b, nil
}

// absIn resolves p against dir (both container paths).
func absIn(dir, p string) string {
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	return path.Join(cmp.Or(dir, Workspace), p)
}

// cacheRef computes ACR's build cache image: the domain and repository of the first
// tag that names a registry (else the run's registry and the first tag's repository),
// tagged cache_<task>_<step>.
func cacheRef(tags []string, registry, task, step string) string {
	if len(tags) == 0 {
		return ""
	}
	var domain, repo, firstRepo string
	for i, t := range tags {
		r, err := oci.ParseReference(t)
		if err != nil {
			continue
		}
		if i == 0 {
			firstRepo = r.Path
		}
		if r.Domain != "" {
			domain, repo = r.Domain, r.Path
			break
		}
	}
	if domain == "" {
		domain, repo = registry, firstRepo
	}
	if domain == "" || repo == "" {
		return ""
	}
	if task == "" {
		task = "quickrun"
	}
	return fmt.Sprintf("%s/%s:cache_%s_%s", domain, repo, task, step)
}
