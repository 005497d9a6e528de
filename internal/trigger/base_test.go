package trigger

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/engine"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/task"
)

// Login servers of the test registries. The listeners are not served: the
// triggers only compare names. FROM lines spell them differently on
// purpose (localhost vs 127.0.0.1).
const (
	publicHost = "127.0.0.1:15001"
	baseHost   = "localhost:15002"
	appHost    = "127.0.0.1:15003"
)

// admin pushes the base images.
var admin = store.Actor{Principal: "admin"}

func baseEnv(t testing.TB) *env {
	t.Helper()
	e := newEnv(t, t.TempDir(), envConfig{})
	e.registry(t, "publicregistry", publicHost)
	e.registry(t, "baseartifacts", baseHost)
	e.registry(t, "contoso", appHost)
	return e
}

// built is a task of the tests and the base images its builds use.
type built struct {
	registry, name string
	runtime        string   // the base of the last stage
	buildtime      []string // the bases of the other stages
	mod            func(*task.CreateRequest)
}

// track creates the tasks, starts the task workers and runs each task once, so
// that the triggers track the tasks' bases. It returns the function that stops
// the workers.
func (e *env) track(t *testing.T, tasks ...built) (stopWorkers func()) {
	t.Helper()
	for _, b := range tasks {
		e.createTask(t, b.registry, b.name, b.mod)
		e.exec.set(b.name, e.builds(b.runtime, b.buildtime, nil))
	}
	stopWorkers = e.startTasks(t)
	for _, b := range tasks {
		e.runNow(t, b.registry, b.name)
	}
	return stopWorkers
}

// helloWorld tracks the task contoso/hello-world, whose builds use the base
// image from.
func (e *env) helloWorld(t *testing.T, from string) (stopWorkers func()) {
	t.Helper()
	return e.track(t, built{registry: "contoso", name: "hello-world", runtime: from})
}

// allBases makes a task trigger on updates of any of its base images, not only
// of the runtime one.
func allBases(r *task.CreateRequest) { r.BaseImageTriggerType = task.BaseImageAll }

func TestBaseImageTriggerQueuesDependent(t *testing.T) {
	t.Parallel()
	e := baseEnv(t)
	ctx := context.Background()
	by := store.Actor{Principal: "admin-principal"}
	d1 := pushBody(t, e.Store, "publicregistry", "node", by, "v1", "15-alpine")
	// The FROM line names the registry as localhost; it listens on 127.0.0.1.
	e.helloWorld(t, "localhost:15001/node:15-alpine")
	s, _ := e.startTrigger(t, WithDebounce(5*time.Millisecond))

	d2 := pushBody(t, e.Store, "publicregistry", "node", by, "v2", "15-alpine")
	runs := e.waitRuns(t, "contoso", "hello-world", task.TriggerImageUpdate, 1)
	c := runs[0].Cause.ImageUpdate
	if c == nil || c.Image != "localhost:15001/node:15-alpine" || c.OldDigest != d1.String() || c.NewDigest != d2.String() ||
		c.Registry != "publicregistry" || c.RunID != "" || c.PushedBy != "admin-principal" {
		t.Fatalf("cause = %+v", c)
	}
	e.waitFinished(t, "contoso", "hello-world")

	// The same digest again (untag, then push the same manifest): the tag
	// moves back to what the task built from, which triggers nothing.
	if err := e.Store.Untag(ctx, "publicregistry", "node", "15-alpine", by); err != nil {
		t.Fatal(err)
	}
	if d := pushBody(t, e.Store, "publicregistry", "node", by, "v2", "15-alpine"); d != d2 {
		t.Fatalf("re-push digest %s, want %s", d, d2)
	}
	// A push of another tag of the repository is not tracked.
	push(t, e.Store, "publicregistry", "node", by, "16-alpine")
	settle(t, s)
	if got := e.runs(t, "contoso", "hello-world", task.TriggerImageUpdate); len(got) != 1 {
		t.Fatalf("%d Image Update runs after unchanged pushes, want 1", len(got))
	}

	info, err := s.Describe(ctx, "contoso", "hello-world")
	if err != nil {
		t.Fatal(err)
	}
	if info.Base.NotTrackedYet || len(info.Base.Tracked) != 1 {
		t.Fatalf("tracked = %+v", info.Base)
	}
	tr := info.Base.Tracked[0]
	if tr.Digest != d2.String() || tr.Current != d2.String() || tr.GantryRegistry != "publicregistry" || !tr.Watched ||
		tr.LastTriggered != d2.String() || tr.LastRun != runs[0].ID {
		t.Fatalf("tracked image = %+v", tr)
	}
}

func TestBaseImageBurstCoalesced(t *testing.T) {
	t.Parallel()
	e := baseEnv(t)
	push(t, e.Store, "publicregistry", "node", admin, "15-alpine")
	stopWorkers := e.helloWorld(t, publicHost+"/node:15-alpine")
	stopWorkers() // runs now stay Queued
	s, _ := e.startTrigger(t, WithDebounce(time.Second))

	// Three pushes within the debounce window: one run, for the last.
	push(t, e.Store, "publicregistry", "node", admin, "15-alpine")
	push(t, e.Store, "publicregistry", "node", admin, "15-alpine")
	d4 := push(t, e.Store, "publicregistry", "node", admin, "15-alpine")
	settle(t, s)
	runs := e.runs(t, "contoso", "hello-world", task.TriggerImageUpdate)
	if len(runs) != 1 || runs[0].Cause.ImageUpdate.NewDigest != d4.String() {
		t.Fatalf("runs after a burst = %d (%+v), want 1 for %s", len(runs), runs, d4)
	}
	// Later pushes while that run is still queued join it.
	d5 := push(t, e.Store, "publicregistry", "node", admin, "15-alpine")
	settle(t, s)
	if runs := e.runs(t, "contoso", "hello-world", task.TriggerImageUpdate); len(runs) != 1 {
		t.Fatalf("%d runs after a push while one is queued, want 1", len(runs))
	}
	// The queued run builds from the newest base: nothing more to do.
	e.startTasks(t)
	e.waitFinished(t, "contoso", "hello-world")
	settle(t, s)
	runs = e.runs(t, "contoso", "hello-world", task.TriggerImageUpdate)
	if len(runs) != 1 || runs[0].Status != task.RunSucceeded {
		t.Fatalf("runs = %+v", runs)
	}
	bases, _ := e.tasks.BaseImages(context.Background(), runs[0].TaskID)
	if len(bases) != 1 || bases[0].Digest != d5.String() {
		t.Fatalf("tracked = %+v, want %s", bases, d5)
	}
}

func TestBaseImageTagsMovedTogetherOneRun(t *testing.T) {
	t.Parallel()
	e := baseEnv(t)
	push(t, e.Store, "publicregistry", "node", admin, "15-alpine", "15")
	push(t, e.Store, "publicregistry", "builder", admin, "1")
	e.track(t, built{registry: "contoso", name: "multi-base", mod: allBases,
		runtime: publicHost + "/node:15-alpine", buildtime: []string{publicHost + "/node:15", publicHost + "/builder:1"}})
	s, _ := e.startTrigger(t, WithDebounce(time.Second))

	// One push moving two tracked tags, and a second push right after.
	dn := push(t, e.Store, "publicregistry", "node", admin, "15-alpine", "15")
	db := push(t, e.Store, "publicregistry", "builder", admin, "1")
	settle(t, s)
	e.waitFinished(t, "contoso", "multi-base")
	settle(t, s)
	runs := e.runs(t, "contoso", "multi-base", task.TriggerImageUpdate)
	if len(runs) != 1 {
		t.Fatalf("%d runs, want 1", len(runs))
	}
	c := runs[0].Cause
	if c.ImageUpdate.Image != publicHost+"/node:15-alpine" || c.ImageUpdate.NewDigest != dn.String() {
		t.Fatalf("cause = %+v (the runtime base should be named)", c.ImageUpdate)
	}
	if !strings.Contains(c.Note, "node:15 moved to "+dn.String()) || !strings.Contains(c.Note, "builder:1 moved to "+db.String()) {
		t.Fatalf("note = %q", c.Note)
	}
}

func TestBaseImageRuntimeVersusAll(t *testing.T) {
	t.Parallel()
	e := baseEnv(t)
	push(t, e.Store, "publicregistry", "node", admin, "15-alpine")
	push(t, e.Store, "publicregistry", "builder", admin, "1")
	node, builder := publicHost+"/node:15-alpine", []string{publicHost + "/builder:1"}
	e.track(t,
		built{registry: "contoso", name: "runtime-only", runtime: node, buildtime: builder},
		built{registry: "contoso", name: "all-stages", runtime: node, buildtime: builder, mod: allBases})
	s, _ := e.startTrigger(t, WithDebounce(0))

	push(t, e.Store, "publicregistry", "builder", admin, "1")
	e.waitRuns(t, "contoso", "all-stages", task.TriggerImageUpdate, 1)
	settle(t, s)
	if runs := e.runs(t, "contoso", "runtime-only", task.TriggerImageUpdate); len(runs) != 0 {
		t.Fatalf("a Runtime task ran for a build-time base: %+v", runs[0].Cause.ImageUpdate)
	}
	info, err := s.Describe(context.Background(), "contoso", "runtime-only")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Base.Tracked) != 2 || !info.Base.Tracked[0].Watched || info.Base.Tracked[1].Watched {
		t.Fatalf("tracked = %+v", info.Base.Tracked)
	}
	// The runtime base triggers both (once the first run left the queue,
	// or the change would join it).
	e.waitFinished(t, "contoso", "all-stages")
	push(t, e.Store, "publicregistry", "node", admin, "15-alpine")
	e.waitRuns(t, "contoso", "runtime-only", task.TriggerImageUpdate, 1)
	e.waitRuns(t, "contoso", "all-stages", task.TriggerImageUpdate, 2)
}

func TestBaseImageDisabledNeverFires(t *testing.T) {
	t.Parallel()
	e := baseEnv(t)
	ctx := context.Background()
	push(t, e.Store, "publicregistry", "node", admin, "15-alpine")
	for _, name := range []string{"disabled-task", "trigger-off", "control"} {
		e.createTask(t, "contoso", name, nil)
		e.exec.set(name, e.builds(publicHost+"/node:15-alpine", nil, nil))
	}
	e.createTask(t, "contoso", "never-ran", nil)
	e.startTasks(t)
	for _, name := range []string{"disabled-task", "trigger-off", "control"} {
		e.runNow(t, "contoso", name)
	}
	off, disabled := false, task.StatusDisabled
	if _, err := e.tasks.UpdateTask(ctx, "contoso", "disabled-task", task.UpdateRequest{Status: &disabled}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.tasks.UpdateTask(ctx, "contoso", "trigger-off", task.UpdateRequest{BaseImageTrigger: &off}); err != nil {
		t.Fatal(err)
	}
	s, _ := e.startTrigger(t, WithDebounce(0))

	push(t, e.Store, "publicregistry", "node", admin, "15-alpine")
	e.waitRuns(t, "contoso", "control", task.TriggerImageUpdate, 1)
	settle(t, s)
	for _, name := range []string{"disabled-task", "trigger-off", "never-ran"} {
		if runs := e.runs(t, "contoso", name, task.TriggerImageUpdate); len(runs) != 0 {
			t.Errorf("%s: %d Image Update runs, want none", name, len(runs))
		}
	}
	info, err := s.Describe(ctx, "contoso", "never-ran")
	if err != nil {
		t.Fatal(err)
	}
	if !info.Base.NotTrackedYet || len(info.Base.Tracked) != 0 || !info.Base.Enabled {
		t.Fatalf("a task that never ran: %+v", info.Base)
	}
	info, _ = s.Describe(ctx, "contoso", "trigger-off")
	if info.Base.Enabled || info.Base.NotTrackedYet {
		t.Fatalf("a task with the trigger off: %+v", info.Base)
	}
}

// pushAs returns a fake engine step that pushes a new manifest to
// registry/repo:tag as the run.
func pushAs(e *env, registry, repo, tag string) func(ctx context.Context, job engine.Job) error {
	return func(ctx context.Context, job engine.Job) error {
		_, err := pushNew(e.Store, registry, repo, store.Actor{Principal: "identity-" + job.TaskName, RunID: job.RunID}, tag)
		return err
	}
}

func TestBaseImageChainAndNoSelfTrigger(t *testing.T) {
	t.Parallel()
	e := baseEnv(t)
	ctx := context.Background()
	push(t, e.Store, "publicregistry", "node", admin, "15-alpine")
	push(t, e.Store, "baseartifacts", "node", admin, "15-alpine")
	// node-public builds FROM its own output (a self loop), base-import
	// promotes the public base, hello-world builds on the promoted one.
	tasks := []built{
		{registry: "publicregistry", name: "node-public", runtime: publicHost + "/node:15-alpine"},
		{registry: "baseartifacts", name: "base-import", runtime: publicHost + "/node:15-alpine"},
		{registry: "contoso", name: "hello-world", runtime: baseHost + "/node:15-alpine"},
	}
	e.track(t, tasks...)
	// From now on the first two push what they build.
	e.exec.set("node-public", e.builds(publicHost+"/node:15-alpine", nil, pushAs(e, "publicregistry", "node", "15-alpine")))
	e.exec.set("base-import", e.builds(publicHost+"/node:15-alpine", nil, pushAs(e, "baseartifacts", "node", "15-alpine")))
	s, _ := e.startTrigger(t, WithDebounce(0))

	origin, err := e.tasks.QueueRun(ctx, task.QueueRequest{Registry: "publicregistry", Task: "node-public"})
	if err != nil {
		t.Fatal(err)
	}
	e.waitRuns(t, "contoso", "hello-world", task.TriggerImageUpdate, 1)
	for _, b := range tasks {
		e.waitFinished(t, b.registry, b.name)
	}
	settle(t, s)
	if runs := e.runs(t, "publicregistry", "node-public", task.TriggerImageUpdate); len(runs) != 0 {
		t.Fatalf("node-public triggered itself: %+v", runs[0].Cause.ImageUpdate)
	}
	bi := e.runs(t, "baseartifacts", "base-import", task.TriggerImageUpdate)
	if len(bi) != 1 || bi[0].Cause.ImageUpdate.RunID != origin.ID || bi[0].Cause.ImageUpdate.Registry != "publicregistry" {
		t.Fatalf("base-import runs = %+v", bi)
	}
	hw := e.runs(t, "contoso", "hello-world", task.TriggerImageUpdate)
	if len(hw) != 1 || hw[0].Cause.ImageUpdate.RunID != bi[0].ID {
		t.Fatalf("hello-world runs = %d", len(hw))
	}

	chain, err := e.tasks.Chain(ctx, "contoso", hw[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 3 || chain[0].ID != hw[0].ID || chain[1].ID != bi[0].ID || chain[2].ID != origin.ID {
		t.Fatalf("chain = %v", chainIDs(chain))
	}
	desc := task.DescribeChain(chain)
	for _, want := range []string{"Manual run " + origin.ID + " (node-public) pushed 127.0.0.1:15001/node:15-alpine@sha256:",
		"Image Update run " + bi[0].ID + " (base-import) pushed localhost:15002/node:15-alpine@sha256:",
		"Image Update run " + hw[0].ID + " (hello-world)"} {
		if !strings.Contains(desc, want) {
			t.Errorf("chain %q lacks %q", desc, want)
		}
	}
	t.Log(desc)
}

func chainIDs(rs []*task.Run) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Registry+"/"+r.ID)
	}
	return out
}

func TestBaseImageNoTriggerLoop(t *testing.T) {
	t.Parallel()
	e := baseEnv(t)
	push(t, e.Store, "contoso", "x", admin, "1")
	push(t, e.Store, "contoso", "y", admin, "1")
	e.track(t,
		built{registry: "contoso", name: "loop-a", runtime: appHost + "/x:1"},
		built{registry: "contoso", name: "loop-b", runtime: appHost + "/y:1"})
	// a builds y FROM x, b builds x FROM y.
	e.exec.set("loop-a", e.builds(appHost+"/x:1", nil, pushAs(e, "contoso", "y", "1")))
	e.exec.set("loop-b", e.builds(appHost+"/y:1", nil, pushAs(e, "contoso", "x", "1")))
	s, _ := e.startTrigger(t, WithDebounce(0))

	push(t, e.Store, "contoso", "x", admin, "1")
	e.waitRuns(t, "contoso", "loop-b", task.TriggerImageUpdate, 1)
	for i := 0; i < 3; i++ { // let a loop, if any, go round
		e.waitFinished(t, "contoso", "loop-a")
		e.waitFinished(t, "contoso", "loop-b")
		settle(t, s)
	}
	a := e.runs(t, "contoso", "loop-a", task.TriggerImageUpdate)
	b := e.runs(t, "contoso", "loop-b", task.TriggerImageUpdate)
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf("loop-a %d runs, loop-b %d runs; want 1 each", len(a), len(b))
	}
}

func TestBaseImageCatchUpAfterRestart(t *testing.T) {
	t.Parallel()
	e := baseEnv(t)
	push(t, e.Store, "publicregistry", "node", admin, "15-alpine")
	e.helloWorld(t, publicHost+"/node:15-alpine")
	_, stop := e.startTrigger(t)
	stop()

	// The base moves while the triggers are down; the next start queues one
	// run, which fails (a failed gate): the tracked digest stays old.
	e.exec.set("hello-world", func(context.Context, engine.Job) (engine.Result, error) {
		return engine.Result{}, errors.Join(engine.ErrStepFailed, errors.New("failed to run step ID: validate-base-image: exit status 1"))
	})
	d2 := push(t, e.Store, "publicregistry", "node", admin, "15-alpine")
	s, stop := e.startTrigger(t, WithDebounce(0))
	runs := e.waitRuns(t, "contoso", "hello-world", task.TriggerImageUpdate, 1)
	if c := runs[0].Cause; c.ImageUpdate.NewDigest != d2.String() || !strings.Contains(c.Note, "caught up") {
		t.Fatalf("catch-up cause = %+v note %q", c.ImageUpdate, c.Note)
	}
	e.waitFinished(t, "contoso", "hello-world")
	settle(t, s)
	stop()
	// Restarting again does not queue the same change twice.
	s, _ = e.startTrigger(t, WithDebounce(0))
	settle(t, s)
	if runs := e.runs(t, "contoso", "hello-world", task.TriggerImageUpdate); len(runs) != 1 || runs[0].Status != task.RunFailed {
		t.Fatalf("runs after a second restart = %d", len(runs))
	}
}

func TestBaseImageMovedDuringRunCaughtAfter(t *testing.T) {
	t.Parallel()
	e := baseEnv(t)
	push(t, e.Store, "publicregistry", "node", admin, "15-alpine")
	push(t, e.Store, "publicregistry", "builder", admin, "1")
	e.createTask(t, "publicregistry", "upstream", nil)
	e.createTask(t, "contoso", "hello-world", allBases)
	build := e.builds(publicHost+"/node:15-alpine", []string{publicHost + "/builder:1"}, nil)
	e.exec.set("hello-world", build)
	e.startTasks(t)
	e.runNow(t, "contoso", "hello-world")

	// upstream pushes node, waits until hello-world resolved its bases,
	// then pushes builder: hello-world built from the old builder.
	resolved, pushed := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	first.Store(true)
	e.exec.set("hello-world", func(ctx context.Context, job engine.Job) (engine.Result, error) {
		res, err := build(ctx, job)
		if first.CompareAndSwap(true, false) {
			close(resolved)
			<-pushed
		}
		return res, err
	})
	var builderDigest atomic.Value
	e.exec.set("upstream", func(ctx context.Context, job engine.Job) (engine.Result, error) {
		defer close(pushed)
		by := store.Actor{Principal: "identity-upstream", RunID: job.RunID}
		if _, err := pushNew(e.Store, "publicregistry", "node", by, "15-alpine"); err != nil {
			return engine.Result{}, err
		}
		<-resolved
		d, err := pushNew(e.Store, "publicregistry", "builder", by, "1")
		builderDigest.Store(d.String())
		return engine.Result{}, err
	})
	s, _ := e.startTrigger(t, WithDebounce(0))
	e.runNow(t, "publicregistry", "upstream")
	e.waitRuns(t, "contoso", "hello-world", task.TriggerImageUpdate, 2)
	e.waitFinished(t, "contoso", "hello-world")
	settle(t, s)
	runs := e.runs(t, "contoso", "hello-world", task.TriggerImageUpdate)
	if len(runs) != 2 {
		t.Fatalf("%d runs, want 2", len(runs))
	}
	// The builder moved while hello-world built from the old one: a second
	// run (queued when the first finished, or right away if the push was
	// handled after it).
	if c := runs[1].Cause; c.ImageUpdate.Image != publicHost+"/builder:1" || c.ImageUpdate.NewDigest != builderDigest.Load() {
		t.Fatalf("second cause = %+v %q", c.ImageUpdate, c.Note)
	}
	t.Logf("second run: %q", runs[1].Cause.Note)
}

func TestBaseImageMovedBackWithinWindow(t *testing.T) {
	t.Parallel()
	e := baseEnv(t)
	pushBody(t, e.Store, "publicregistry", "node", admin, "good", "15-alpine")
	e.helloWorld(t, publicHost+"/node:15-alpine")
	s, _ := e.startTrigger(t, WithDebounce(time.Second))

	// A bad push rolled back at once: the task is where it was.
	pushBody(t, e.Store, "publicregistry", "node", admin, "bad", "15-alpine")
	pushBody(t, e.Store, "publicregistry", "node", admin, "good", "15-alpine")
	settle(t, s)
	if runs := e.runs(t, "contoso", "hello-world", task.TriggerImageUpdate); len(runs) != 0 {
		t.Fatalf("%d runs after a push rolled back within the window", len(runs))
	}
}
