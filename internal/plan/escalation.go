package plan

import (
	"fmt"

	"github.com/gantryhq/gantry/internal/taskfile"
)

// PrivilegedHint names the server setting that allows escalations on a
// registry, for Escalations' messages.
func PrivilegedHint(registry string) string {
	return fmt.Sprintf("the server's admin allows it for registry %s with gantry server --allow-privileged-steps %s", registry, registry)
}

// Escalations checks the steps that ask for more than a step gets by
// default (docs/security.md): privileged: true, network: host, and a build
// with --network other than none (host, default, container:ID, a named
// network: each escapes the server's engine.buildNetwork). When there are any, it returns a *taskfile.Error
// with one problem per request, at its position, each ending with allow, a
// hint that names the setting that would allow it.
func (p *Plan) Escalations(allow string) error {
	var problems []taskfile.Problem
	add := func(i int, field, format string, args ...any) {
		ts := &p.rendered.Task.Steps[i]
		problems = append(problems, taskfile.Problem{
			File: p.File, Pos: ts.At(field), Field: fmt.Sprintf("steps[%d].%s", ts.Index, field),
			Message: fmt.Sprintf(format, args...) + "; " + allow,
		})
	}
	for i, s := range p.Steps {
		if s.Privileged {
			add(i, "privileged", "step %s: privileged: true gives the step every capability of the host", s.ID)
		}
		if s.Network == "host" {
			add(i, "network", "step %s: network: host asks for the host's network namespace explicitly", s.ID)
		}
		if s.Build != nil && s.Build.Network != "" && s.Build.Network != "none" {
			// default is the builder's own network (not the server's
			// engine.buildNetwork), container:ID another container's.
			add(i, "build", "step %s: --network %s asks for a network namespace for RUN other than the server's (engine.buildNetwork); only --network none is open to every build", s.ID, s.Build.Network)
		}
	}
	return taskfile.NewError(p.File, problems)
}
