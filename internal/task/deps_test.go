package task

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/engine"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

func TestTriggerQueriesAndChain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t.TempDir())
	ctx := t.Context()
	if _, err := e.store.CreateRegistry(ctx, store.Registry{Name: "publicregistry", Listen: "127.0.0.1:5998"}); err != nil {
		t.Fatal(err)
	}
	ctxDir := testenv.WriteTree(t, map[string]string{"acr-task.yaml": simpleTask})
	_, err := e.svc.CreateTask(ctx, CreateRequest{Registry: "publicregistry", Name: "node-public", Context: ctxDir})
	if err != nil {
		t.Fatal(err)
	}
	app, err := e.svc.CreateTask(ctx, CreateRequest{Registry: "contoso", Name: "hello-world", Context: ctxDir,
		BaseImageTriggerType: BaseImageAll, Schedules: []string{"nightly:0 21 * * *"}})
	if err != nil {
		t.Fatal(err)
	}
	e.exec.execute = func(_ context.Context, job engine.Job) (engine.Result, error) {
		if job.TaskName == "node-public" {
			return engine.Result{Images: []engine.Image{{Registry: "127.0.0.1:5998", Repository: "node", Tag: "15-alpine", Digest: "sha256:bb"}}}, nil
		}
		return engine.Result{Dependencies: []engine.Dependency{{Step: "build",
			Runtime:   engine.Image{Registry: "localhost:5998", Repository: "node", Tag: "15-alpine", Digest: "sha256:aa"},
			Buildtime: []engine.Image{{Registry: "docker.io", Repository: "library/golang", Tag: "1", Digest: "sha256:cc"}}}}}, nil
	}
	e.start(t)
	origin, err := e.svc.QueueRun(ctx, QueueRequest{Registry: "publicregistry", Task: "node-public"})
	if err != nil {
		t.Fatal(err)
	}
	if origin, err = e.svc.WaitRun(ctx, "publicregistry", origin.ID); err != nil || origin.Status != RunSucceeded {
		t.Fatalf("origin run: %+v, %v", origin, err)
	}
	first, err := e.svc.QueueRun(ctx, QueueRequest{Registry: "contoso", Task: "hello-world"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.WaitRun(ctx, "contoso", first.ID); err != nil {
		t.Fatal(err)
	}

	deps, err := e.svc.Dependents(ctx, []string{"127.0.0.1:5998", "localhost:5998"}, "node", "15-alpine")
	if err != nil || len(deps) != 1 || deps[0].Task.ID != app.ID || deps[0].Base.Digest != "sha256:aa" || !deps[0].Base.Runtime ||
		deps[0].Task.BaseImageTriggerType != BaseImageAll || deps[0].Task.Registry != "contoso" {
		t.Fatalf("Dependents = %+v, %v", deps, err)
	}
	if deps, _ := e.svc.Dependents(ctx, []string{"127.0.0.1:5998"}, "node", "15-alpine"); len(deps) != 0 {
		t.Fatalf("a host spelling that is not recorded matched: %+v", deps)
	}
	watched, err := e.svc.WatchedBaseImages(ctx)
	if err != nil || len(watched) != 2 {
		t.Fatalf("WatchedBaseImages = %+v, %v", watched, err)
	}
	ct, err := e.svc.CommitTriggerTasks(ctx)
	if err != nil || len(ct) != 2 {
		t.Fatalf("CommitTriggerTasks = %d, %v", len(ct), err)
	}

	// An Image Update run caused by the origin's push.
	r, err := e.svc.QueueTaskRun(ctx, app, TriggerImageUpdate, Cause{ImageUpdate: &ImageCause{Image: "localhost:5998/node:15-alpine",
		OldDigest: "sha256:aa", NewDigest: "sha256:bb", Registry: "publicregistry", RunID: origin.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if r, err = e.svc.WaitRun(ctx, "contoso", r.ID); err != nil {
		t.Fatal(err)
	}
	chain, err := e.svc.Chain(ctx, "contoso", r.ID)
	if err != nil || len(chain) != 2 || chain[0].ID != r.ID || chain[1].ID != origin.ID || chain[1].Registry != "publicregistry" {
		t.Fatalf("Chain = %v, %v", chain, err)
	}
	want := "Manual run " + origin.ID + " (node-public) pushed localhost:5998/node:15-alpine@sha256:bb → Image Update run " + r.ID + " (hello-world)"
	if got := DescribeChain(chain); got != want {
		t.Fatalf("DescribeChain = %q, want %q", got, want)
	}
	if chain, _ := e.svc.Chain(ctx, "publicregistry", origin.ID); len(chain) != 1 {
		t.Fatalf("the chain of an origin = %d runs", len(chain))
	}
	recent, err := e.svc.RecentRuns(ctx, app.ID, TriggerImageUpdate, 5)
	if err != nil || len(recent) != 1 || recent[0].ID != r.ID {
		t.Fatalf("RecentRuns = %v, %v", recent, err)
	}
	if active, err := e.svc.ActiveRuns(ctx, TriggerImageUpdate); err != nil || len(active) != 0 {
		t.Fatalf("ActiveRuns = %v, %v", active, err)
	}

	states, err := e.svc.TimerStates(ctx, app.ID)
	if err != nil || len(states) != 1 || states[0].Name != "nightly" || !states[0].TaskEnabled || !states[0].LastFire.IsZero() {
		t.Fatalf("TimerStates = %+v, %v", states, err)
	}
	at := time.Date(2025, 3, 1, 21, 0, 0, 0, time.UTC)
	if ok, err := e.svc.SetTimerLastFire(ctx, app.ID, "nightly", "0 21 * * *", at); err != nil || !ok {
		t.Fatalf("SetTimerLastFire = %v, %v", ok, err)
	}
	if ok, _ := e.svc.SetTimerLastFire(ctx, app.ID, "nightly", "0 22 * * *", at); ok {
		t.Fatal("SetTimerLastFire changed a timer whose schedule differs")
	}
	if states, _ := e.svc.TimerStates(ctx, ""); len(states) != 1 || !states[0].LastFire.Equal(at) {
		t.Fatalf("TimerStates = %+v", states)
	}
}

func TestDescribeChainOrigins(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 3, 1, 21, 0, 0, 0, time.UTC)
	tests := []struct {
		run  *Run
		want string
	}{
		{&Run{ID: "ca1", TaskName: "node-public", Trigger: TriggerCommit, Cause: Cause{Commit: &CommitCause{Repository: "/src/base",
			Branch: "main", Commit: "3f2a9c1d2e"}}}, "Commit 3f2a9c1 on /src/base#main → Commit run ca1 (node-public)"},
		{&Run{ID: "ca2", TaskName: "nightly", Trigger: TriggerTimer, Cause: Cause{Timer: &TimerCause{Name: "t1", Schedule: "0 21 * * *", Time: at}}},
			"Timer t1 (0 21 * * *) at 2025-03-01T21:00:00Z → Timer run ca2 (nightly)"},
		{&Run{ID: "ca3", TaskName: "app", Trigger: TriggerImageUpdate, Cause: Cause{ImageUpdate: &ImageCause{Image: "docker.io/library/node:15",
			NewDigest: "sha256:0123456789abcdef"}}}, "docker.io/library/node:15@sha256:0123456789ab… updated upstream → Image Update run ca3 (app)"},
	}
	for _, tt := range tests {
		if got := DescribeChain([]*Run{tt.run}); got != tt.want {
			t.Errorf("DescribeChain = %q, want %q", got, tt.want)
		}
	}
	if !strings.Contains(DescribeChain([]*Run{{ID: "x", Trigger: TriggerManual}}), "Manual run x") {
		t.Error("manual origin")
	}
}
