package engine

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
)

// TestCleanupAfterCrash sets a run up and starts a service as Execute
// would, records an image tag, then drops everything as a crashed server
// would: Cleanup, as the restarted task service calls it, removes the
// containers (running ones too), the tag and the volumes by label.
func TestCleanupAfterCrash(t *testing.T) {
	t.Parallel()
	d := dockertest.Engine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bb := dockertest.BusyboxImage(t, d, dockertest.Name(t, "busybox")+":1")
	img, err := d.InspectImage(ctx, bb)
	if err != nil {
		t.Fatal(err)
	}
	e := New(d)
	runID := dockertest.Name(t, "crash")
	job := Job{RunID: runID, RegistryName: "crashreg", Registry: "127.0.0.1:9"}
	r := newRun(e, job, newRunLog(&bytes.Buffer{}, time.Now))
	r.plan = testPlan(t, fmt.Sprintf(`steps:
  - {id: service, detach: true, cmd: %s sleep 300}
volumes:
  - {name: sec, secret: {a: YQ==}}
`, bb))
	if err := r.setup(ctx); err != nil {
		t.Fatal(err)
	}
	s := &r.plan.Steps[0]
	if err := r.prepare(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := r.attempt(ctx, s); err != nil {
		t.Fatal(err)
	}
	tag := dockertest.Name(t, "gantry-test/crash") + ":1"
	if err := d.TagImage(ctx, bb, tag); err != nil {
		t.Fatal(err)
	}
	r.recordCreated(ctx, img.ID, tag)
	// The list of tags is written in the background: wait for it.
	for deadline := time.Now().Add(10 * time.Second); ; <-time.After(10 * time.Millisecond) {
		if m, _ := readCreated(ctx, d, r.setupID); m[tag] == img.ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the created tags were not recorded in the setup container")
		}
	}
	defer func() {
		for _, det := range r.leftovers.detached {
			det.cancel()
		}
	}()

	label := LabelRun + "=crashreg/" + runID
	cs, _ := d.ListContainers(ctx, docker.ListContainersOptions{All: true, Labels: []string{label}})
	vs, _ := d.ListVolumes(ctx, label)
	if len(cs) != 2 || len(vs) != 4 {
		t.Fatalf("before the crash: %d containers, %d volumes; want 2 (setup, service) and 4 (workspace, two homes, secret)", len(cs), len(vs))
	}

	// The server crashed; the restarted one cleans up.
	if err := New(d).Cleanup(ctx, "crashreg", runID); err != nil {
		t.Fatal(err)
	}
	cs, _ = d.ListContainers(ctx, docker.ListContainersOptions{All: true, Labels: []string{label}})
	vs, _ = d.ListVolumes(ctx, label)
	if len(cs) != 0 || len(vs) != 0 {
		t.Errorf("after Cleanup: %d containers, %d volumes", len(cs), len(vs))
	}
	if _, err := d.InspectImage(ctx, tag); err == nil {
		t.Errorf("the run's tag %s survived Cleanup", tag)
	}
	if _, err := d.InspectImage(ctx, bb); err != nil {
		t.Errorf("Cleanup removed an image the run did not create: %v", err)
	}
	// Cleaning up again finds nothing and is fine.
	if err := New(d).Cleanup(ctx, "crashreg", runID); err != nil {
		t.Errorf("second Cleanup: %v", err)
	}
}
