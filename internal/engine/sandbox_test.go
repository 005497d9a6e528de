package engine_test

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/engine"
	"github.com/gantryhq/gantry/internal/testenv"
)

// TestStepConfinement: a step keeps only the short capability list (no
// NET_RAW: no packet sockets on the host network), runs with
// no-new-privileges, and still works as root and as another user; network:
// none gives a step loopback only. On every engine the tests run against
// (dockerd and Podman). (The alias steps' read-only root and own HOME:
// TestAliasStepsConfined.)
func TestStepConfinement(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"contoso"})
	bb := busybox(t, e.d)
	j, log := e.job("contoso", `version: v1.1.0
steps:
  - id: status
    cmd: `+bb+` grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status
  - id: root-writes
    cmd: `+bb+` sh -c 'mkdir -p out && echo ok > out/f && chown 1000 out/f && cat out/f'
  - id: as-user
    user: "1000"
    cmd: `+bb+` sh -c 'id -u; touch /workspace/user-file 2>&1 || echo cannot-write-workspace'
  - id: nonet
    network: none
    cmd: `+bb+` sh -c 'echo "step-interfaces=$(tail -n +3 /proc/net/dev | sed "s/:.*//" | tr -d " " | sort | tr "\n" ,)"'
  - id: build
    build: --build-arg BUST={{.Run.ID}} -t {{.Run.Registry}}/netcheck:1 .
`, testenv.WriteTree(t, map[string]string{"Dockerfile": "FROM " + bb + "\nARG BUST\n" +
		"RUN echo \"interfaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ,) $BUST\"\n"}), nil)
	if _, err := e.execute(j); err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	out := log.String()
	m := regexp.MustCompile(`status \| CapEff:\s+([0-9a-f]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no CapEff:\n%s", out)
	}
	caps, _ := strconv.ParseUint(m[1], 16, 64)
	// CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
	const want = 1<<0 | 1<<1 | 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8
	if caps != want {
		t.Errorf("CapEff = %s, want %x (the step capabilities only)", m[1], want)
	}
	checkLines(t, out, `status \| NoNewPrivs:\s+1`, `root-writes \| ok`, `as-user \| 1000`, `nonet \| step-interfaces=lo,`)
	// RUN has a network namespace of its own, with loopback only; Podman
	// 4.3's Docker API runs RUN on the host network whatever the build asks
	// (docs/engines.md).
	netns := `build \| .*interfaces=lo, ` + j.RunID
	if dockertest.IsPodman(e.d) {
		netns = `build \| .*interfaces=.*lo,.* ` + j.RunID
	}
	checkLines(t, out, netns)
}

// TestEscalationsRefused: privileged: true and network: host are refused
// before anything runs, naming the setting; a job that allows them plans.
func TestEscalationsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"contoso"})
	bb := busybox(t, e.d)
	file := `version: v1.1.0
steps:
  - id: priv
    privileged: true
    cmd: ` + bb + ` echo should-not-run
`
	j, log := e.job("contoso", file, "", nil)
	_, err := e.execute(j)
	if !errors.Is(err, engine.ErrInvalidTask) || !strings.Contains(err.Error(), "gantry server --allow-privileged-steps contoso") {
		t.Fatalf("err = %v, want ErrInvalidTask naming --allow-privileged-steps", err)
	}
	if strings.Contains(log.String(), "should-not-run") || strings.Contains(log.String(), "Setting up Docker") {
		t.Errorf("something ran:\n%s", log)
	}
	j, log = e.job("contoso", strings.Replace(file, "privileged: true", "network: host", 1), "", nil)
	j.AllowPrivileged = true
	if _, err := e.execute(j); err != nil {
		t.Fatalf("allowed: %v\n%s", err, log)
	}
}

// TestImagesScoped: a run cannot use, tag, inspect, push or remove an image
// of a registry it has no login for that happens to be on the engine, and
// cannot tag over the engine's shared images.
func TestImagesScoped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"contoso", "fabrikam"})
	bb := busybox(t, e.d)
	other := e.hosts["fabrikam"] + "/private:1"
	if err := e.d.TagImage(t.Context(), bb, other); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.d.RemoveImage(context.Background(), other, false) })
	img, err := e.d.InspectImage(t.Context(), other)
	if err != nil {
		t.Fatal(err)
	}
	j, log := e.job("contoso", `version: v1.1.0
steps:
  - id: run-other
    ignoreErrors: true
    cmd: `+other+` echo ran-other
  - id: run-by-id
    ignoreErrors: true
    cmd: `+strings.TrimPrefix(img.ID, "sha256:")[:12]+` echo ran-by-id
  - id: tag-other
    ignoreErrors: true
    cmd: docker tag `+other+` {{.Run.Registry}}/stolen:1
  - id: inspect-other
    ignoreErrors: true
    cmd: docker inspect `+other+`
  - id: push-other
    ignoreErrors: true
    cmd: docker push `+other+`
  - id: rmi-shared
    ignoreErrors: true
    cmd: docker rmi `+bb+`
  - id: tag-shared
    ignoreErrors: true
    cmd: docker tag `+bb+` `+bb+`
  - id: own
    cmd: docker tag `+bb+` {{.Run.Registry}}/mine:1
  - id: list
    cmd: docker images
`, "", nil)
	// fabrikam's credential is not the run's: drop it.
	if _, err := e.execute(withoutLogin(j, e.hosts["fabrikam"])); err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	out := log.String()
	if strings.Contains(out, "ran-other") || strings.Contains(out, "ran-by-id") || strings.Contains(out, "using the local copy") {
		t.Errorf("the run used another registry's image from the engine:\n%s", out)
	}
	checkLines(t, out,
		`tag-other \| Error response from daemon: No such image: `+regexp.QuoteMeta(other),
		`inspect-other \| Error response from daemon: No such object: `+regexp.QuoteMeta(other),
		`push-other \| Error response from daemon: An image does not exist locally with the tag: `+regexp.QuoteMeta(other),
		`rmi-shared \| Error response from daemon: No such image: `+regexp.QuoteMeta(bb),
		`tag-shared \| Error response from daemon: tag `+regexp.QuoteMeta(bb)+`: the engine's image .* is shared by every run.*`,
		`list \| `+regexp.QuoteMeta(e.hosts["contoso"])+`/mine\s+1\s.*`,
	)
	if regexp.MustCompile(`list \| .*(fabrikam|private|gantry-)`).MatchString(out) || strings.Contains(out, "list | "+bb) {
		t.Errorf("docker images lists images the run did not make or pull:\n%s", out)
	}
}

// TestEngineOnlyCredentials: a login marked EngineOnly, presented as an
// identity token (a refresh token of the registry), serves the run's pulls
// and builds (also on Podman and through BuildKit's session) but is not in
// any step's Docker config.
func TestEngineOnlyCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"contoso", "fabrikam"})
	e.pushNodeBase("fabrikam", "")
	node := e.hosts["fabrikam"] + "/node:15-alpine"
	j, log := e.job("contoso", `version: v1.1.0
steps:
  - id: config
    cmd: `+node+` cat /acb/home/.docker/config.json
  - id: build
    build: -t {{.Run.Registry}}/from-fabrikam:1 -f Dockerfile .
`, testenv.WriteTree(t, map[string]string{"Dockerfile": "FROM " + node + "\nRUN echo built\n"}), nil)
	c := e.credential("fabrikam", j.RunID)
	refresh, err := e.au.RegistryRefreshToken(t.Context(), "fabrikam", c.Username, c.Password, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c.Password, c.IdentityToken, c.EngineOnly = "", refresh, true
	j.Credentials = append(j.Credentials, c)
	if _, err := e.execute(j); err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	out := log.String()
	checkLines(t, out, `config \| .*"`+regexp.QuoteMeta(e.hosts["contoso"])+`": \{`)
	if strings.Contains(out, refresh) {
		t.Errorf("the identity token is in the run log")
	}
	if strings.Contains(out, `"`+e.hosts["fabrikam"]+`"`) {
		t.Errorf("the engine-only login is in the step's Docker config:\n%s", out)
	}
}

// TestImagesScopedReads: what a build reads besides its bases — COPY
// --from=IMAGE and RUN --mount=from=IMAGE — is checked as bases are: an
// image of a registry the run has no login for is not taken from the
// engine. And a Docker Hub name that another live run built or tagged (the
// engine did not have it) is that run's own: another run may neither run
// it nor build from it, as it would take it for Docker Hub's image.
func TestImagesScopedReads(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"contoso", "fabrikam"})
	bb := busybox(t, e.d)
	other := e.hosts["fabrikam"] + "/private:" + randomID()
	if err := e.d.TagImage(t.Context(), bb, other); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.d.RemoveImage(context.Background(), other, false) })
	for name, df := range map[string]string{
		"copy":  "FROM " + bb + "\nCOPY --from=" + other + " /bin/busybox /stolen\n",
		"mount": "FROM " + bb + "\nRUN --mount=type=bind,from=" + other + ",target=/o cp /o/bin/busybox /stolen\n",
	} {
		j, log := e.job("contoso", "version: v1.1.0\nsteps:\n  - build: -t {{.Run.Registry}}/reads:{{.Run.ID}} .\n",
			testenv.WriteTree(t, map[string]string{"Dockerfile": df}), nil)
		_, err := e.execute(withoutLogin(j, e.hosts["fabrikam"]))
		if err == nil || !strings.Contains(err.Error(), "image "+other) || !strings.Contains(err.Error(), "the engine's copy is not used") {
			t.Errorf("%s: err = %v\n%s", name, err, log)
		}
	}

	// Run A tags its own image with a Docker Hub name the engine lacks and
	// stays alive; run B must not take that tag for Docker Hub's.
	poison := "poison-" + randomID() + ":1"
	a, alog := e.job("contoso", "version: v1.1.0\nsteps:\n  - cmd: docker tag "+bb+" "+poison+"\n  - cmd: "+bb+" sleep 20\n", "", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := e.engine.Execute(ctx, a); done <- err }()
	if !alog.waitFor("acb_step_1", 30*time.Second) {
		t.Fatalf("run A did not tag:\n%s", alog)
	}
	b, blog := e.job("contoso", "version: v1.1.0\nsteps:\n  - id: run-it\n    ignoreErrors: true\n    cmd: "+poison+" echo ran-poison\n"+
		"  - id: build-it\n    build: -t {{.Run.Registry}}/poisoned:{{.Run.ID}} .\n",
		testenv.WriteTree(t, map[string]string{"Dockerfile": "FROM " + poison + "\n"}), nil)
	_, err := e.execute(b)
	cancel()
	<-done
	if err == nil || !strings.Contains(err.Error(), "built or tagged by another run") || strings.Contains(blog.String(), "ran-poison") {
		t.Errorf("run B: err = %v\n%s", err, blog)
	}
	checkLines(t, blog.String(), `.*run-it.*built or tagged by another run.*`)
}

// withoutLogin is j without its login for the registry host: a run of
// another registry, which has no right to it.
func withoutLogin(j engine.Job, host string) engine.Job {
	j.Credentials = slices.DeleteFunc(slices.Clone(j.Credentials), func(c engine.Credential) bool { return c.Registry == host })
	return j
}
