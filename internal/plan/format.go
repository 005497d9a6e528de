package plan

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gantryhq/gantry/internal/taskfile"
)

// String renders the plan as stable, YAML-like text for logs, dry runs and golden
// tests: zero values are left out and secret values are masked.
func (p *Plan) String() string {
	w := &textWriter{secrets: p.secrets}
	w.line(0, "version", p.Version)
	w.list(0, "notices", p.Notices)
	section(w, "networks", p.Networks, func(n Network) {
		w.item(0, "name", n.Name)
		w.line(1, "driver", n.Driver)
		w.flag(1, "ipv6", n.IPv6)
		w.flag(1, "skipCreation", n.SkipCreation)
		w.flag(1, "isDefault", n.IsDefault)
	})
	section(w, "volumes", p.Volumes, func(v Volume) {
		w.item(0, "name", v.Name)
		w.key(1, "files")
		for _, f := range v.Files {
			w.raw(2, f.Name, w.q(string(f.Data)))
		}
	})
	w.key(0, "steps")
	for _, s := range p.Steps {
		w.item(0, "id", s.ID)
		w.raw(1, "kind", string(s.Kind))
		if len(s.Parents) == 0 {
			w.raw(1, "parents", "[root]")
		} else {
			w.list(1, "parents", s.Parents)
		}
		w.list(1, "children", s.Children)
		w.raw(1, "timeout", s.Timeout.String())
		if s.StartDelay > 0 {
			w.raw(1, "startDelay", s.StartDelay.String())
		}
		w.num(1, "retries", s.Retries)
		if s.Retries > 0 {
			w.raw(1, "retryDelay", s.RetryDelay.String())
		}
		w.list(1, "retryOnErrors", s.RetryOnErrors)
		w.num(1, "repeat", s.Repeat)
		w.line(1, "workingDirectory", s.WorkingDir)
		w.flag(1, "disableWorkingDirectoryOverride", s.DisableWorkingDirectoryOverride)
		w.list(1, "env", s.Env)
		w.line(1, "network", s.Network)
		w.line(1, "entryPoint", s.EntryPoint)
		w.line(1, "user", s.User)
		w.line(1, "isolation", s.Isolation)
		w.line(1, "cpus", s.CPUs)
		w.list(1, "ports", s.Ports)
		w.list(1, "expose", s.Expose)
		w.flag(1, "detach", s.Detach)
		w.flag(1, "keep", s.Keep)
		w.flag(1, "privileged", s.Privileged)
		w.flag(1, "ignoreErrors", s.IgnoreErrors)
		w.flag(1, "pull", s.Pull)
		w.num(1, "downloadRetries", s.DownloadRetries)
		if s.DownloadRetryDelay > 0 {
			w.raw(1, "downloadRetryDelay", s.DownloadRetryDelay.String())
		}
		for _, m := range s.Mounts {
			w.raw(1, "mount", strconv.Quote(m.Volume)+" at "+strconv.Quote(m.Path))
		}
		switch s.Kind {
		case taskfile.KindCmd:
			if c := s.Cmd; c != nil {
				w.key(1, "cmd")
				w.line(2, "image", c.Image)
				w.list(2, "args", c.Args)
				if c.Stdout != OutputLog {
					w.raw(2, "stdout", string(c.Stdout))
				}
				if c.Stderr != OutputLog {
					w.raw(2, "stderr", string(c.Stderr))
				}
				if d := c.Docker; d != nil {
					w.key(2, "docker")
					w.raw(3, "subcommand", d.Subcommand)
					w.flags(3, d.Flags)
					w.list(3, "operands", d.Operands)
					if d.Build != nil {
						w.build(3, d.Build)
					}
				}
			}
		case taskfile.KindBuild:
			if s.Build != nil {
				w.build(1, s.Build)
			}
		case taskfile.KindPush:
			if s.Push != nil {
				w.key(1, "push")
				w.list(2, "images", s.Push.Images)
			}
		}
	}
	return w.b.String()
}

func (w *textWriter) build(depth int, b *Build) {
	w.key(depth, "build")
	d := depth + 1
	w.line(d, "context", b.Context)
	w.raw(d, "contextKind", string(b.ContextKind))
	w.line(d, "contextPath", b.ContextPath)
	if b.Git != nil {
		w.line(d, "gitURL", b.Git.URL)
		w.line(d, "gitRef", b.Git.Ref)
		w.line(d, "gitDir", b.Git.Dir)
	}
	w.line(d, "dockerfile", b.Dockerfile)
	w.line(d, "dockerfilePath", b.DockerfilePath)
	w.list(d, "tags", b.Tags)
	for _, a := range b.BuildArgs {
		v := a.Name + "=" + a.Value
		if a.FromEnv {
			v += " (from env)"
		}
		w.line(d, "buildArg", v)
	}
	w.line(d, "target", b.Target)
	w.line(d, "platform", b.Platform)
	w.line(d, "network", b.Network)
	w.flag(d, "noCache", b.NoCache)
	w.flag(d, "pull", b.Pull)
	w.list(d, "labels", b.Labels)
	for _, s := range b.Secrets {
		w.line(d, "secret", "id="+s.ID+" from "+s.Source)
	}
	w.flags(d, b.Options)
	w.flag(d, "buildKit", b.BuildKit)
	w.flag(d, "noBuildKit", b.NoBuildKit)
	w.flag(d, "cache", b.Cache)
	w.line(d, "cacheRef", b.CacheRef)
}

// section writes key at the top level and then each of items with write, or
// nothing when there are no items.
func section[T any](w *textWriter, key string, items []T, write func(T)) {
	if len(items) == 0 {
		return
	}
	w.key(0, key)
	for _, it := range items {
		write(it)
	}
}

type textWriter struct {
	b       strings.Builder
	secrets []string
	pending bool // the next key continues a "- " list item
}

func (w *textWriter) q(s string) string { return strconv.Quote(taskfile.Mask(s, w.secrets)) }

func (w *textWriter) indent(depth int) {
	if w.pending {
		w.pending = false
		return
	}
	w.b.WriteString(strings.Repeat("  ", depth))
}

func (w *textWriter) raw(depth int, key, value string) {
	w.indent(depth)
	fmt.Fprintf(&w.b, "%s: %s\n", key, value)
}

func (w *textWriter) key(depth int, key string) {
	w.indent(depth)
	fmt.Fprintf(&w.b, "%s:\n", key)
}

// item starts a list item at depth whose first key is key; the item's other keys
// are written at depth+1.
func (w *textWriter) item(depth int, key, value string) {
	w.b.WriteString(strings.Repeat("  ", depth) + "- ")
	w.pending = true
	w.line(depth+1, key, value)
}

func (w *textWriter) line(depth int, key, value string) {
	if value != "" {
		w.raw(depth, key, w.q(value))
	}
}

func (w *textWriter) num(depth int, key string, n int) {
	if n != 0 {
		w.raw(depth, key, strconv.Itoa(n))
	}
}

func (w *textWriter) flag(depth int, key string, v bool) {
	if v {
		w.raw(depth, key, "true")
	}
}

func (w *textWriter) list(depth int, key string, values []string) {
	if len(values) == 0 {
		return
	}
	qs := make([]string, len(values))
	for i, v := range values {
		qs[i] = w.q(v)
	}
	w.raw(depth, key, "["+strings.Join(qs, ", ")+"]")
}

func (w *textWriter) flags(depth int, fs []Flag) {
	for _, f := range fs {
		w.raw(depth, "flag", w.q(f.Name+"="+f.Value))
	}
}
