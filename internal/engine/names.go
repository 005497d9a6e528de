package engine

// names are the names and labels of a run's objects on the engine.
type names struct {
	registry  string            // label and name part: Job.RegistryName or Job.Registry
	label     string            // LabelRun value
	prefix    string            // container name prefix: gantry_<registry>_<run>_
	workspace string            // the /workspace volume
	home      string            // the HOME volume of the steps
	cliHome   string            // the HOME volume of the gantry and az alias steps
	secrets   map[string]string // plan volume name -> engine volume (set up by run.setup)
}

// containerName is the engine name of a step's container. acb names it
// after the step; gantry prefixes registry and run so that concurrent runs
// of a task never collide: gantry_<registry>_<run ID>_<step ID>.
func (n names) containerName(stepID string) string { return n.prefix + stepID }

func (n names) labels(role, step string) map[string]string {
	l := map[string]string{LabelRun: n.label, LabelRole: role}
	if step != "" {
		l[LabelStep] = step
	}
	return l
}
