package trigger

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/engine"
	"github.com/gantryhq/gantry/internal/standin"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/task"
	"github.com/gantryhq/gantry/internal/testenv"
	"github.com/gantryhq/gantry/internal/testenv/stack"
)

// sampleRepo makes a local git repository of a sample (files replaced or
// added by extra) with one commit on main.
func sampleRepo(t testing.TB, sample string, extra map[string]string) string {
	t.Helper()
	src := filepath.Join(testenv.Samples(t), sample)
	dir := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		b, err := os.ReadFile(filepath.Join(src, en.Name()))
		if err != nil {
			t.Fatal(err)
		}
		info, _ := en.Info()
		if err := os.WriteFile(filepath.Join(dir, en.Name()), b, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range extra {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitCmd(t, dir, "init", "-q", "-b", "main")
	gitCmd(t, dir, "add", "-A")
	gitCmd(t, dir, "commit", "-q", "-m", "import "+sample)
	return dir
}

// commitFile changes a file of a repository and commits it.
func commitFile(t testing.TB, dir, name, body, msg string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	gitCmd(t, dir, "add", "-A")
	gitCmd(t, dir, "commit", "-q", "-m", msg)
	return strings.TrimSpace(gitCmd(t, dir, "rev-parse", "HEAD"))
}

const helloWorldTaskFile = `version: v1.1.0
steps:
  - id: build-hello-world
    build: >
      --build-arg REGISTRY_FROM_URL={{.Values.REGISTRY_FROM_URL}}
      -t {{.Run.Registry}}/hello-world:{{.Run.ID}}
      -f Dockerfile
      .
  - id: push-images
    push:
    - "{{.Run.Registry}}/hello-world:{{.Run.ID}}"
`

// TestIntegrationCommitToBaseRebuildsDependents runs the tutorial's chain on
// the real engine with local git repositories and no manual step after the
// first runs: a commit to base-image-node rebuilds the public base
// (Commit), which triggers the gated import (Image Update), whose promotion
// triggers hello-world (Image Update). A commit that promotes the same
// digest triggers nothing downstream, and a red base fails the gate and
// stops there.
func TestIntegrationCommitToBaseRebuildsDependents(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test skipped in -short mode")
	}
	d := dockertest.Engine(t)
	ctx := context.Background()
	sk := stack.New(t, "")
	dir, database, st, au, v := sk.Dir, sk.DB, sk.Store, sk.Auth, sk.Vault
	hosts := map[string]string{}
	for _, name := range []string{"hub", "publicregistry", "contosobaseartifacts", "contoso"} {
		hosts[name] = sk.ServeRegistry(t, store.Registry{Name: name, AnonymousPull: true})
	}
	var logs testenv.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	tasks := task.New(database, dir, st, au, v, v, engine.New(d, engine.WithLogger(log.With("component", "engine"))),
		task.WithLogger(log.With("component", "task")), task.WithConcurrency(4), task.WithContextRoots([]string{os.TempDir()}))
	e := &env{Stack: sk, tasks: tasks, hosts: map[string]string{}, wait: 4 * time.Minute}
	for name, h := range hosts {
		e.hosts[h] = name
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, reg := range []string{"publicregistry", "contosobaseartifacts", "contoso"} {
			all, _ := tasks.ListRuns(ctx, task.RunFilter{Registry: reg, Top: -1})
			for _, r := range all {
				var b bytes.Buffer
				_ = tasks.Logs(ctx, reg, r.ID, false, &b)
				t.Logf("run %s/%s (%s, %s, %s):\n%s", reg, r.ID, r.TaskName, r.Trigger, r.Status, b.String())
			}
		}
	})

	// The public node:15-alpine stand-in, in the registry playing Docker Hub.
	pctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	src, err := standin.NodeImage(pctx, d, "")
	if err != nil {
		t.Fatal(err)
	}
	cred, err := au.IssueRunCredential(ctx, auth.RunGrant{Registry: "hub", RunID: "setup", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := standin.Push(pctx, d, src, hosts["hub"]+"/node:15-alpine",
		&docker.AuthConfig{Username: auth.RunUsername, Password: cred, ServerAddress: hosts["hub"]}); err != nil {
		t.Fatal(err)
	}

	baseRepo := sampleRepo(t, "base-image-node", nil)
	importRepo := sampleRepo(t, "import-baseimage-node", nil)
	appRepo := sampleRepo(t, "hello-world", map[string]string{"acr-task.yaml": helloWorldTaskFile})
	create := func(registry, name, repo, from string) {
		t.Helper()
		if _, err := tasks.CreateTask(ctx, task.CreateRequest{Registry: registry, Name: name, Context: repo + "#main",
			File: "acr-task.yaml", Spec: task.Spec{Values: map[string]string{"REGISTRY_FROM_URL": from + "/"}}}); err != nil {
			t.Fatal(err)
		}
	}
	create("publicregistry", "node-public", baseRepo, hosts["hub"])
	create("contosobaseartifacts", "base-import-node", importRepo, hosts["publicregistry"])
	create("contoso", "hello-world", appRepo, hosts["contosobaseartifacts"])

	tctx, stopTasks := context.WithCancel(ctx)
	if err := tasks.Start(tctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopTasks(); tasks.Wait() })
	trig := New(database, tasks, st, v, WithLogger(log.With("component", "trigger")),
		WithCommitPollInterval(250*time.Millisecond, 0))
	gctx, stopTrig := context.WithCancel(ctx)
	if err := trig.Start(gctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopTrig(); trig.Wait() })

	// A task has no dependencies before its first run (ACR's rule); run each
	// once, upstream first.
	for _, tk := range [][2]string{{"publicregistry", "node-public"}, {"contosobaseartifacts", "base-import-node"}, {"contoso", "hello-world"}} {
		info, err := trig.Describe(ctx, tk[0], tk[1])
		if err != nil || !info.Base.NotTrackedYet {
			t.Fatalf("%s before its first run: %+v, %v", tk[1], info.Base, err)
		}
		e.runNow(t, tk[0], tk[1])
	}
	info, err := trig.Describe(ctx, "contoso", "hello-world")
	if err != nil || len(info.Base.Tracked) != 1 || info.Base.Tracked[0].GantryRegistry != "contosobaseartifacts" {
		t.Fatalf("hello-world tracks %+v, %v", info.Base.Tracked, err)
	}

	// 1. A green commit to the base repository: Commit → Image Update →
	//    Image Update, nothing done by hand.
	dockerfile, err := os.ReadFile(filepath.Join(baseRepo, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	orange := strings.ReplaceAll(string(dockerfile), "BACKGROUND_COLOR DeepSkyBlue", "BACKGROUND_COLOR Orange")
	sha := commitFile(t, baseRepo, "Dockerfile", orange, "Orange")
	np := e.waitRuns(t, "publicregistry", "node-public", task.TriggerCommit, 1)
	if c := np[0].Cause.Commit; c.Commit != sha || c.Branch != "main" || c.Source != SourcePoll {
		t.Fatalf("node-public cause = %+v", c)
	}
	hw := e.waitRuns(t, "contoso", "hello-world", task.TriggerImageUpdate, 1)
	e.waitFinished(t, "contoso", "hello-world")
	bi := e.runs(t, "contosobaseartifacts", "base-import-node", task.TriggerImageUpdate)
	if len(bi) != 1 || bi[0].Status != task.RunSucceeded || bi[0].Cause.ImageUpdate.RunID != np[0].ID {
		t.Fatalf("base-import-node runs = %+v", bi)
	}
	if r, _ := tasks.GetRun(ctx, "contoso", hw[0].ID); r.Status != task.RunSucceeded || r.Cause.ImageUpdate.RunID != bi[0].ID {
		t.Fatalf("hello-world run = %+v %s", r.Cause.ImageUpdate, r.Status)
	}
	chain, err := tasks.Chain(ctx, "contoso", hw[0].ID)
	if err != nil || len(chain) != 3 || chain[2].ID != np[0].ID {
		t.Fatalf("chain = %v, %v", chainIDs(chain), err)
	}
	desc := task.DescribeChain(chain)
	if !strings.HasPrefix(desc, "Commit "+sha[:7]+" on "+baseRepo+"#main → Commit run "+np[0].ID+" (node-public) pushed "+hosts["publicregistry"]+"/node:15-alpine@sha256:") {
		t.Fatalf("chain: %s", desc)
	}
	t.Logf("chain: %s", desc)

	// 2. A commit that promotes the same digest again: base-import-node runs
	//    (Commit) and pushes node:15-alpine unchanged; hello-world does not
	//    run.
	commitFile(t, importRepo, "README.md", "gate for node:15-alpine\n", "docs")
	e.waitRuns(t, "contosobaseartifacts", "base-import-node", task.TriggerCommit, 1)
	e.waitFinished(t, "contosobaseartifacts", "base-import-node")
	promoted := func(r *task.Run) string {
		for _, im := range r.OutputImages {
			if im.Repository == "node" && im.Tag == "15-alpine" {
				return im.Digest
			}
		}
		return ""
	}
	first, _ := tasks.GetRun(ctx, "contosobaseartifacts", bi[0].ID)
	again := e.runs(t, "contosobaseartifacts", "base-import-node", task.TriggerCommit)[0]
	if again.Status != task.RunSucceeded || promoted(again) == "" || promoted(again) != promoted(first) {
		t.Fatalf("base-import-node commit run: %s %s, promoted %q (before %q)", again.Status, again.Error, promoted(again), promoted(first))
	}
	settle(t, trig)
	time.Sleep(time.Second) // nothing is in flight; give a stray run the chance to show
	if runs := e.runs(t, "contoso", "hello-world", ""); len(runs) != 2 {
		t.Fatalf("hello-world has %d runs after an unchanged promotion, want 2", len(runs))
	}

	// 3. A red commit: the base is rebuilt, the gate fails, nothing is
	//    promoted and hello-world does not run.
	red := strings.ReplaceAll(string(dockerfile), "BACKGROUND_COLOR DeepSkyBlue", "BACKGROUND_COLOR Red")
	commitFile(t, baseRepo, "Dockerfile", red, "Red")
	e.waitRuns(t, "publicregistry", "node-public", task.TriggerCommit, 2)
	bi = e.waitRuns(t, "contosobaseartifacts", "base-import-node", task.TriggerImageUpdate, 2)
	e.waitFinished(t, "contosobaseartifacts", "base-import-node")
	if r, _ := tasks.GetRun(ctx, "contosobaseartifacts", bi[1].ID); r.Status != task.RunFailed ||
		!strings.Contains(r.Error, "failed to run step ID: validate-base-image: exit status 1") {
		t.Fatalf("red gate run: %s %q", r.Status, r.Error)
	}
	settle(t, trig)
	time.Sleep(time.Second)
	if runs := e.runs(t, "contoso", "hello-world", ""); len(runs) != 2 {
		t.Fatalf("hello-world has %d runs after a failed gate, want 2", len(runs))
	}
	e.waitFinished(t, "publicregistry", "node-public")
}
