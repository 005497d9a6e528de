package engine

import (
	"context"
	"io"
	"time"

	"github.com/gantryhq/gantry/internal/taskfile"
)

// Job is one run to execute: a task file with everything needed to render
// and run it. The caller (the task service) prepares the workspace and the
// credentials; the engine renders, plans and executes.
type Job struct {
	// RunID is the run's short ID (.Run.ID).
	RunID string
	// Registry is the run's registry login server, host:port (.Run.Registry).
	Registry string
	// RegistryName is the registry's name (.Run.RegistryName).
	RegistryName string
	// TaskName is "" for quick runs (.Run.TaskName).
	TaskName string
	// Commit and Branch describe the git context, if any.
	Commit string
	Branch string
	// Date is the run's start time (.Run.Date).
	Date time.Time
	// FileName names the task file in messages, e.g. "acr-task.yaml".
	FileName string
	// File is the task file (YAML), unless Docker is set.
	File []byte
	// Docker, when set, makes this a Dockerfile task (or gantry build): the
	// engine runs taskfile.RenderDockerfile's build and push steps.
	Docker *taskfile.DockerBuild
	// Values are the merged template values (.Values); --set already won.
	Values map[string]string
	// ResolveSecret resolves a task file's secrets (id, keyvault URI) with
	// the task's identity.
	ResolveSecret func(ctx context.Context, id, uri string) (string, error)
	// Workspace is the host directory holding the build context; steps see
	// it as /workspace.
	Workspace string
	// Credentials are the registry logins of the run, including its own
	// registry.
	Credentials []Credential
	// GantryEnv is added to the environment of steps that run the gantry CLI
	// image (the `gantry` image alias): the server address and the run's
	// credential.
	GantryEnv map[string]string
	// AllowPrivileged lets steps ask for privileged: true, network: host
	// and build --network host (the server's --allow-privileged-steps for
	// the run's registry); without it such a task file is refused.
	AllowPrivileged bool
	// BuildNetwork is the network of builds' RUN instructions when a build
	// asks for none: "none" (also when empty: RUN gets a namespace with
	// loopback only), "default" (the engine's default network, Docker's
	// bridge) or "host".
	BuildNetwork string
	// Log receives the run log, whole lines.
	Log io.Writer
	// Timeout bounds the whole run (0: none beyond ctx).
	Timeout time.Duration
}

// Credential is a registry login.
type Credential struct {
	// Registry is the login server, host:port.
	Registry string
	Username string
	Password string
	// IdentityToken, when set, is a refresh token of the registry's token
	// endpoint that the engine presents instead of Username and Password
	// (docker's identity token): short-lived, unlike a token password.
	IdentityToken string
	// EngineOnly keeps the login out of the steps' Docker config: the
	// engine uses it for the run's pulls, builds and pushes, but no step
	// sees it (a token password of a gantry registry, which the control API
	// would accept; docs/security.md).
	EngineOnly bool
}

// Step statuses, as acb reports them.
const (
	StepSuccessful = "successful"
	StepFailed     = "failed"
	StepSkipped    = "skipped"
	StepInProgress = "inprogress"
)

// Result is what a run did, returned also when it failed (with what it did
// before failing).
type Result struct {
	Steps []StepResult
	// Images are the images pushed, with their digests.
	Images []Image
	// Dependencies are the base images every build step used.
	Dependencies []Dependency
}

// StepResult is one step's outcome.
type StepResult struct {
	ID         string
	Status     string
	StartedAt  time.Time
	FinishedAt time.Time
	ExitCode   int
	Error      string
}

// Image is a pushed (or, for dependencies, pulled) image.
type Image struct {
	Registry   string // host[:port]
	Repository string
	Tag        string
	Digest     string
}

// Reference is registry/repository:tag (without the digest).
func (i Image) Reference() string {
	ref := i.Repository
	if i.Registry != "" {
		ref = i.Registry + "/" + ref
	}
	if i.Tag != "" {
		ref += ":" + i.Tag
	}
	return ref
}

// Dependency is what one build step built from.
type Dependency struct {
	// Step is the build step's ID.
	Step string
	// Images are the -t tags the step built.
	Images []string
	// Runtime is the base of the final (or --target) stage; zero when it
	// is scratch.
	Runtime Image
	// Buildtime are the bases of the other stages.
	Buildtime []Image
}
