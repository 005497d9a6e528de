package engine_test

import (
	"strings"
	"testing"
	"time"
)

// TestSharedTagOutlivesItsCreator: two runs on one engine rely on the same
// pulled tag. The run that pulled it (and created the tag) ends first; the
// other one must still find the tag for a later docker tag, as the gate's
// retag step does after building FROM a base another run pulled (a build
// holds no container that would keep the tag). The tag
// is removed when the last run relying on it ends.
func TestSharedTagOutlivesItsCreator(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"contoso"})
	bb := busybox(t, e.d)
	host := e.hosts["contoso"]

	// Put an image in the registry only: the run that pushes it removes
	// its own tag at its end.
	p, plog := e.job("contoso", `version: v1.1.0
steps:
  - cmd: `+bb+` sh -c 'echo "FROM `+bb+`" > Dockerfile && echo "RUN echo shared > /shared" >> Dockerfile'
  - build: -t $Registry/shared:1 .
  - push: ["$Registry/shared:1"]
`, t.TempDir(), nil)
	if _, err := e.execute(p); err != nil {
		t.Fatalf("%v\n%s", err, plog)
	}
	shared := host + "/shared:1"
	if _, err := e.d.InspectImage(t.Context(), shared); err == nil {
		t.Fatalf("%s is still on the engine after the run that pushed it", shared)
	}

	a, alog := e.job("contoso", `version: v1.1.0
steps:
  - id: pull
    cmd: docker pull $Registry/shared:1
  - id: hold
    cmd: `+bb+` sleep 6
`, t.TempDir(), nil)
	aDone := make(chan error, 1)
	go func() { _, err := e.execute(a); aDone <- err }()
	for deadline := time.Now().Add(2 * time.Minute); !strings.Contains(alog.String(), "pull | "+shared+"\n"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("run A did not pull:\n%s", alog)
		}
	}

	b, blog := e.job("contoso", `version: v1.1.0
steps:
  - id: dockerfile
    cmd: `+bb+` sh -c 'echo "FROM `+host+`/shared:1" > Dockerfile && echo "RUN cat /shared" >> Dockerfile'
  - id: use
    build: -t $Registry/derived:$ID .
  - id: outlast
    cmd: `+bb+` sleep 10
  - id: retag
    cmd: docker tag $Registry/shared:1 $Registry/shared:copy-$ID
`, t.TempDir(), nil)
	if _, err := e.execute(b); err != nil {
		t.Fatalf("run B: %v\n%s", err, blog)
	}
	if err := <-aDone; err != nil {
		t.Fatalf("run A: %v\n%s", err, alog)
	}
	for _, tag := range []string{shared, host + "/shared:copy-" + b.RunID, host + "/derived:" + b.RunID} {
		if _, err := e.d.InspectImage(t.Context(), tag); err == nil {
			t.Errorf("%s is left on the engine after both runs ended", tag)
		}
	}
}
