package taskfile

import "strings"

// Versions of the format. Any other value is rejected; comparison is case-insensitive.
const (
	VersionPreview = "1.0-preview-1"
	Version100     = "v1.0.0"
	Version110     = "v1.1.0"
	// DefaultVersion applies when the file has no version key (as in ACR).
	DefaultVersion = Version100
)

// Defaults applied by Render, as in ACR's runner.
const (
	// DefaultStepTimeout is the step timeout in seconds when neither the step nor the
	// task sets one (or sets one <= 0).
	DefaultStepTimeout = 600
	// DefaultRetryDelay is the delay in seconds between retries when retryDelay <= 0.
	DefaultRetryDelay = 5
	// RootID is the reserved ID of the DAG root; no step may use it.
	RootID = "acb_root"
	// ImmediateToken in when makes a step start immediately (depend on the root only).
	ImmediateToken = "-"
)

// Task is a parsed, validated acr-task.yaml. Defaults are applied: Version,
// StepTimeout, step IDs and retry delays are always set. Treat it as read-only.
type Task struct {
	// File is the name used in problems, e.g. "acr-task.yaml".
	File             string
	Version          string
	StepTimeout      int
	WorkingDirectory string
	// Env is the task-level env as written; entries may hold several K=V separated by
	// commas (ACR splits them; see package plan).
	Env      []string
	Secrets  []Secret
	Volumes  []Volume
	Networks []Network
	// Alias is the alias block as declared (v1.1.0), or nil.
	Alias *Alias
	Steps []Step
	// NoDefaultNetwork is set for Dockerfile tasks (RenderDockerfile): ACR creates
	// no default network for them.
	NoDefaultNetwork bool
}

// AliasesEnabled reports whether the version processes aliases ($ID, image aliases).
func (t *Task) AliasesEnabled() bool { return aliasVersion(t.Version) }

func aliasVersion(v string) bool { return strings.EqualFold(v, Version110) }

// Secret is an entry of the secrets list, resolved before the final render.
type Secret struct {
	ID string
	// KeyVault is the secret URI, e.g. https://myvault.vault.azure.net/secrets/name.
	KeyVault string
	// ClientID is the client ID of a user-assigned identity, or "" for the task's
	// system identity.
	ClientID string
	Pos      Pos
}

// Volume is a secret volume: files whose contents are the base64-decoded values.
type Volume struct {
	Name string
	// Secret maps file names to base64-encoded contents.
	Secret map[string]string
	Pos    Pos
}

// Network is a Docker network the run creates (unless SkipCreation) before the steps.
type Network struct {
	NetworkSettings
	Pos Pos
}

// NetworkSettings are what a network is, apart from where the file declares it.
type NetworkSettings struct {
	Name         string
	Driver       string
	IPv6         bool
	SkipCreation bool
	IsDefault    bool
}

// Alias is the alias block of a v1.1.0 file.
type Alias struct {
	// Values maps alias names to their values, after template rendering.
	Values map[string]string
	// Src lists alias files (read through Options.ReadAliasSource); later entries win.
	Src []string
	// Directive replaces '$' as the alias prefix when set.
	Directive string
}

// Kind is the type of a step.
type Kind string

// Step kinds.
const (
	KindCmd   Kind = "cmd"
	KindBuild Kind = "build"
	KindPush  Kind = "push"
)

// Step is one entry of steps. Exactly one of Cmd, Build and Push is set.
type Step struct {
	// Index is the 0-based position in the file.
	Index int
	// ID is the declared id, or acb_step_<Index>.
	ID string
	// Cmd is the command after image-alias expansion of its first word (v1.1.0).
	Cmd   string
	Build string
	Push  []string

	When                            []string
	Env                             []string
	EntryPoint                      string
	WorkingDirectory                string
	DisableWorkingDirectoryOverride bool
	// Timeout in seconds as written (0 when unset); see package plan for the
	// effective value.
	Timeout    int
	StartDelay int
	Retries    int
	// RetryDelay in seconds; DefaultRetryDelay when <= 0 in the file.
	RetryDelay    int
	RetryOnErrors []string
	Repeat        int
	Detach        bool
	Keep          bool
	Ports         []string
	Expose        []string
	Privileged    bool
	User          string
	Network       string
	Isolation     string
	CPUs          string
	IgnoreErrors  bool
	Pull          bool
	// DownloadRetries and DownloadRetryDelay apply to the explicit pull of pull: true
	// (cmdDownloadRetries/downloadRetries, cmdDownloadRetryDelay/downloadRetryDelay).
	DownloadRetries    int
	DownloadRetryDelay int
	VolumeMounts       []VolumeMount
	// Cache is "enabled", "disabled" or "" (lower-cased).
	Cache         string
	ExitedWith    []int
	ExitedWithout []int

	// Pos is the position of the step's mapping.
	Pos    Pos
	fields map[string]Pos
}

// VolumeMount mounts a task volume into a step's container.
type VolumeMount struct {
	Name      string
	MountPath string
	Pos       Pos
}

// Kind returns the step's type.
func (s *Step) Kind() Kind {
	switch {
	case s.Build != "":
		return KindBuild
	case len(s.Push) > 0:
		return KindPush
	default:
		return KindCmd
	}
}

// At returns the position of a field's value (e.g. "cmd", "when", or "push[1]" for
// an element of a list), or of the step when the field is absent.
func (s *Step) At(field string) Pos {
	if p, ok := s.fields[field]; ok {
		return p
	}
	return s.Pos
}

// Immediate reports when: ['-'], a step that depends on the root only.
func (s *Step) Immediate() bool { return len(s.When) == 1 && s.When[0] == ImmediateToken }
