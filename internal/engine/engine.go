package engine

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/wait"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/plan"
	"github.com/gantryhq/gantry/internal/remote"
	"github.com/gantryhq/gantry/internal/taskfile"
)

// Labels put on every container and volume a run creates. LabelRun's value
// is "<registry name>/<run ID>" (Job.RegistryName, or Job.Registry when the
// name is empty): what Cleanup looks for.
const (
	LabelRun  = "gantry.run"
	LabelStep = "gantry.step"
	LabelRole = "gantry.role"
)

// Roles (LabelRole) of the objects of a run.
const (
	roleStep   = "step"
	roleSetup  = "setup"
	roleVolume = "volume"
)

// Fixed names of the runner.
const (
	// HomeDir is where the home volume is mounted in every step; HOME points
	// there and .docker/config.json in it holds the run's registry logins.
	HomeDir = "/acb/home"
	// hostNetwork is the network of every container: gantry's engine runs
	// with --bridge=none, so steps share the host's network (loopback).
	hostNetwork = "host"
)

// Defaults.
const (
	// DefaultCLIImage is the repository of the gantry CLI image; its tag is
	// derived from the content (binary and busybox).
	DefaultCLIImage = "gantry-cli"
	// DefaultAzImage is the repository of the az image (the CLI image with
	// az as its entrypoint); its tag is the CLI image's.
	DefaultAzImage = "gantry-az"
	// cleanupTimeout bounds the clean-up of a run, on a context of its own.
	cleanupTimeout = time.Minute
)

// Engine executes runs on a Docker Engine. It is safe for concurrent use:
// runs share nothing but the engine, the helper images and the gantry CLI
// image.
type Engine struct {
	d       *docker.Client
	log     *slog.Logger
	now     func() time.Time
	wait    func(context.Context, time.Duration) error
	limit   int
	gantry  string // path of the static gantry binary ("" : no CLI image)
	busybox string // path of the static busybox
	cliRepo string
	azRepo  string
	aliases map[string]string // overrides of the image aliases
	remote  *remote.Client    // verifies logins, resolves base-image digests

	mu       sync.Mutex
	cliImage string // built CLI image tag, once built by this process
	cliID    string // its image ID, what steps run
	azImage  string // built az image tag, once built by this process
	azID     string // its image ID
	helper   bool   // the helper image is known to exist

	leases *leases // which live runs rely on which image tags
}

// Option configures an Engine.
type Option func(*Engine)

// WithLogger sets the operational logger (the run log is Job.Log). The
// default discards.
func WithLogger(l *slog.Logger) Option {
	return func(e *Engine) {
		if l != nil {
			e.log = l
		}
	}
}

// WithGantryBinary sets the statically linked gantry binary put in the
// gantry CLI image, which steps run as `cmd: gantry <args>`. Without it,
// such steps run the image taskfile.GantryImage, which must then exist on
// the engine.
func WithGantryBinary(path string) Option { return func(e *Engine) { e.gantry = path } }

// WithBusybox sets the static busybox the gantry CLI image gets as its
// shell (default: /bin/busybox or /usr/bin/busybox).
func WithBusybox(path string) Option { return func(e *Engine) { e.busybox = path } }

// WithCLIImage sets the repository of the gantry CLI image (default
// DefaultCLIImage); the tag is a hash of its content. The az image's
// repository is the same with "-az" appended.
func WithCLIImage(repo string) Option {
	return func(e *Engine) {
		if repo != "" {
			e.cliRepo = repo
			e.azRepo = repo + "-az"
		}
	}
}

// WithImageAliases adds or replaces image aliases (the first word of a cmd)
// on top of taskfile.DefaultImageAliases. "gantry" maps to the gantry CLI
// image unless overridden here.
func WithImageAliases(m map[string]string) Option {
	return func(e *Engine) { maps.Copy(e.aliases, m) }
}

// WithConcurrency bounds how many steps of one run execute at once (default
// 0: as many as the DAG allows, as acb does).
func WithConcurrency(n int) Option {
	return func(e *Engine) { e.limit = max(n, 0) }
}

// WithClock replaces time.Now (log stamps, step times, .Run.Date default).
func WithClock(now func() time.Time) Option {
	return func(e *Engine) {
		if now != nil {
			e.now = now
		}
	}
}

// New returns an engine running steps on the engine d talks to.
func New(d *docker.Client, opts ...Option) *Engine {
	e := &Engine{
		d:       d,
		log:     slog.New(slog.DiscardHandler),
		now:     time.Now,
		wait:    wait.For,
		cliRepo: DefaultCLIImage,
		azRepo:  DefaultAzImage,
		aliases: map[string]string{},
		leases:  newLeases(),
	}
	for _, o := range opts {
		o(e)
	}
	if e.remote == nil {
		e.remote = remote.New(remote.WithLogger(e.log))
	}
	return e
}

// WithRemote sets the registry client that verifies a run's logins and
// resolves its base images' digests (the server's one client; by default
// the engine makes its own).
func WithRemote(c *remote.Client) Option { return func(e *Engine) { e.remote = c } }

// imageAliases are the aliases a run renders with.
func (e *Engine) imageAliases() map[string]string {
	m := taskfile.DefaultImageAliases()
	maps.Copy(m, e.aliases)
	return m
}

// Execute renders, plans and runs a job. See the package documentation for
// what it does and logs. The Result lists what the run did, also when it
// fails. Errors wrap ErrInvalidTask (nothing ran), ErrStepFailed (a step
// failed; the message is acb's "failed to run step ID: <id>: <cause>"),
// ErrEngine (the engine could not be used), or ctx's error when ctx ended
// or Job.Timeout passed (context.Canceled or context.DeadlineExceeded).
// Every container, volume and image tag the run created is removed before
// Execute returns, and nothing is written to Job.Log afterwards.
func (e *Engine) Execute(ctx context.Context, job Job) (Result, error) {
	parent := ctx
	if job.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, job.Timeout)
		defer cancel()
	}
	lg := newRunLog(job.Log, e.now)
	for _, c := range job.Credentials {
		lg.mask(credentialSecrets(c)...)
	}
	for k, v := range job.GantryEnv {
		if k != "GANTRY_SERVER" {
			lg.mask(v)
		}
	}
	r := newRun(e, job, lg)
	log := e.log.With("registry", r.names.registry, "run", job.RunID)

	p, err := e.plan(ctx, job, r)
	if err != nil {
		if cerr := ended(parent, ctx, job); cerr != nil {
			return Result{}, cerr
		}
		lg.Printf("%v", err)
		log.InfoContext(ctx, "run rejected", "err", lg.maskString(err.Error()))
		return Result{}, lg.maskErr(err)
	}
	if err := r.checkEscalations(p); err != nil {
		lg.Printf("%v", err)
		log.InfoContext(ctx, "run rejected", "err", lg.maskString(err.Error()))
		return Result{}, lg.maskErr(err)
	}
	if e.d == nil {
		return Result{}, fmt.Errorf("no docker engine configured: %w", ErrEngine)
	}
	r.plan = p

	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		start := e.now()
		if err := r.teardown(cctx); err != nil {
			log.WarnContext(cctx, "cleaning up a run", "err", err)
		}
		log.DebugContext(cctx, "run cleaned up", "elapsed", e.now().Sub(start))
	}()
	start := e.now()
	err = r.setup(ctx)
	log.DebugContext(ctx, "run set up", "elapsed", e.now().Sub(start), "err", err)
	if err != nil {
		res := Result{Steps: skippedSteps(p)}
		if cerr := ended(parent, ctx, job); cerr != nil {
			return res, cerr
		}
		lg.Printf("%v", err)
		return res, lg.maskErr(err)
	}

	sc := &scheduler{ops: r, log: lg, now: e.now, wait: e.wait, limit: e.limit}
	steps, failure := sc.run(ctx, p.Steps)
	res := r.outputs.result(steps, p.Steps)
	if cerr := ended(parent, ctx, job); cerr != nil {
		if parent.Err() != nil {
			lg.Printf("Run ID: %s was canceled; stopping its containers", job.RunID)
		} else {
			lg.Printf("Run ID: %s timed out after %s; stopping its containers", job.RunID, job.Timeout)
		}
		return res, cerr
	}
	if failure != nil {
		return res, lg.maskErr(failure)
	}
	for _, s := range steps {
		if s.Status == StepSuccessful {
			lg.Printf("Step ID: %s marked as %s (elapsed time in seconds: %f)", s.ID, s.Status, s.FinishedAt.Sub(s.StartedAt).Seconds())
		}
	}
	r.reportDependencies(res.Dependencies)
	return res, nil
}

// ended returns the error of a run whose context ended: the caller's
// (cancelled, or its deadline), or the run's own timeout; nil while ctx
// is alive.
func ended(parent, ctx context.Context, job Job) error {
	switch {
	case parent.Err() != nil:
		return fmt.Errorf("run %s: %w", job.RunID, parent.Err())
	case ctx.Err() != nil:
		return fmt.Errorf("run %s timed out after %s: %w", job.RunID, job.Timeout, ctx.Err())
	}
	return nil
}

// plan renders the job's task file and plans it; failures wrap
// ErrInvalidTask (or are a secret or ctx error).
func (e *Engine) plan(ctx context.Context, job Job, r *run) (*plan.Plan, error) {
	date := job.Date
	if date.IsZero() {
		date = e.now()
	}
	opts := taskfile.Options{
		File: job.FileName,
		Run: taskfile.Run{
			ID: job.RunID, Registry: job.Registry, RegistryName: job.RegistryName, Date: date,
			OS: "linux", Architecture: "amd64", Commit: job.Commit, Branch: job.Branch,
			TaskName: job.TaskName, SharedVolume: r.names.workspace,
		},
		ImageAliases: e.imageAliases(),
	}
	for _, k := range slices.Sorted(maps.Keys(job.Values)) {
		opts.Set = append(opts.Set, k+"="+job.Values[k])
	}
	if job.ResolveSecret != nil {
		opts.ResolveSecret = func(ctx context.Context, id, uri string) (string, error) {
			v, err := job.ResolveSecret(ctx, id, uri)
			if err == nil {
				r.log.mask(v)
			}
			return v, err
		}
	}
	var rendered *taskfile.Rendered
	var err error
	switch {
	case job.Docker != nil:
		rendered, err = taskfile.RenderDockerfile(ctx, *job.Docker, opts)
	case len(job.File) == 0:
		return nil, fmt.Errorf("%w: %s: the task file is empty", ErrInvalidTask, cmp.Or(job.FileName, taskfile.DefaultFile))
	default:
		rendered, err = taskfile.Render(ctx, job.File, opts)
	}
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(err, taskfile.ErrInvalid), errors.Is(err, taskfile.ErrValues), errors.Is(err, taskfile.ErrAliasSource):
		return nil, fmt.Errorf("%w: %w", ErrInvalidTask, err)
	default:
		return nil, err
	}
	r.log.mask(rendered.SecretValues()...)
	for _, n := range rendered.Notices {
		r.log.Printf("%s", n)
	}
	p, err := plan.New(rendered)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidTask, err)
	}
	return p, nil
}

// skippedSteps reports every step of p as skipped.
func skippedSteps(p *plan.Plan) []StepResult {
	out := make([]StepResult, len(p.Steps))
	for i, s := range p.Steps {
		out[i] = StepResult{ID: s.ID, Status: StepSkipped}
	}
	return out
}

// Cleanup removes what a run left on the engine when it was interrupted (a
// crash, a killed server): its containers (running ones are killed), the
// image tags it created and its volumes. registry is the run's registry
// name (Job.RegistryName). Cleaning up a run that left nothing is not an
// error.
func (e *Engine) Cleanup(ctx context.Context, registry, runID string) error {
	if e.d == nil {
		return fmt.Errorf("no docker engine configured: %w", ErrEngine)
	}
	return cleanupLabelled(ctx, e.d, registry+"/"+runID)
}

// credentialSecrets are the forms of a credential a log could show: the
// password, and the auth of a docker config.json (base64 of user:password).
func credentialSecrets(c Credential) []string {
	var out []string
	if c.IdentityToken != "" {
		out = append(out, c.IdentityToken)
	}
	if c.Password == "" {
		return out
	}
	return append(out, c.Password, base64.StdEncoding.EncodeToString([]byte(c.Username+":"+c.Password)))
}
