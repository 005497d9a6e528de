package engine_test

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/engine"
	"github.com/gantryhq/gantry/internal/registry"
	"github.com/gantryhq/gantry/internal/standin"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

// fixtures is the directory of the tutorial's sample repositories.
func fixtures(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "testdata", "fixtures")
	if _, err := os.Stat(dir); err != nil {
		dockertest.Require(t, "fixtures not found at %s", dir)
	}
	return dir
}

// moduleRoot is the repository root (for go build ./cmd/gantry).
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

var (
	gantryOnce sync.Once
	gantryBin  string
	gantryErr  error
	gantryDir  string
)

// gantryBinary builds the static gantry binary once per test process.
func gantryBinary(t testing.TB) string {
	t.Helper()
	gantryOnce.Do(func() {
		gantryDir, gantryErr = os.MkdirTemp("", "gantry-engine-test-")
		if gantryErr != nil {
			return
		}
		gantryBin = filepath.Join(gantryDir, "gantry")
		cmd := exec.Command("go", "build", "-o", gantryBin, "./cmd/gantry")
		cmd.Dir = moduleRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			gantryErr = fmt.Errorf("go build ./cmd/gantry: %v\n%s", err, out)
		}
	})
	if gantryErr != nil {
		t.Fatal(gantryErr)
	}
	return gantryBin
}

// testCLIImage is the repository of the CLI images the tests build; they
// are removed when the tests end.
const testCLIImage = "gantry-test/gantry-cli"

func TestMain(m *testing.M) {
	code := m.Run()
	if gantryDir != "" {
		os.RemoveAll(gantryDir)
		if host := os.Getenv("DOCKER_HOST"); host != "" {
			if d, err := docker.New(docker.EndpointFromEnv(os.Getenv)); err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				list, _ := d.ListImages(ctx, docker.ListImagesOptions{Labels: []string{engine.LabelCLI}})
				for _, im := range list {
					for _, tag := range im.RepoTags {
						if strings.HasPrefix(tag, testCLIImage+":") {
							_ = d.RemoveImage(ctx, tag, false)
						}
					}
				}
				cancel()
			}
		}
	}
	os.Exit(code)
}

// env is a gantry server's worth of registries served in-process on
// 127.0.0.1 with the real auth service (Docker token auth, run
// credentials), plus an engine.
type env struct {
	t      testing.TB
	d      *docker.Client
	st     *store.Store
	au     *auth.Service
	hosts  map[string]string // registry name -> host:port
	engine *engine.Engine
}

// newEnv starts the named registries (anonymous pull for names starting
// with "public" or "hub") and an engine with the options.
func newEnv(t testing.TB, registries []string, opts ...engine.Option) *env {
	t.Helper()
	d := dockertest.Engine(t)
	ctx := context.Background()
	dir := t.TempDir()
	database, err := db.Open(ctx, filepath.Join(dir, "gantry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { database.Close() })
	st, err := store.Open(ctx, database, filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	au, err := auth.New(database, filepath.Join(dir, "keys"), auth.WithRegistryLookup(st))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, d: d, st: st, au: au, hosts: map[string]string{}}
	for _, name := range registries {
		anon := strings.HasPrefix(name, "public") || strings.HasPrefix(name, "hub")
		if _, err := st.CreateRegistry(ctx, store.Registry{Name: name, AnonymousPull: anon}); err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.Handle("/v2/", registry.New(name, st, registry.WithAuthorizer(au)))
		mux.Handle("/oauth2/", au.TokenHandler(name))
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		e.hosts[name] = strings.TrimPrefix(srv.URL, "http://")
	}
	e.engine = engine.New(d, opts...)
	// Runs remove what they pull; this catches what a failing test leaves.
	// Tags already on the engine under these hosts are another process's:
	// a test of another package had this port before (and its runs'
	// tags, or a container instance's image, may still be there).
	ours := func(tag string) bool {
		for _, host := range e.hosts {
			if strings.HasPrefix(tag, host+"/") {
				return true
			}
		}
		return false
	}
	before := map[string]bool{}
	if list, err := d.ListImages(context.Background(), docker.ListImagesOptions{}); err == nil {
		for _, im := range list {
			for _, tag := range im.RepoTags {
				if ours(tag) {
					before[tag] = true
				}
			}
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, err := d.ListImages(ctx, docker.ListImagesOptions{})
		if err != nil {
			t.Error(err)
			return
		}
		for _, im := range list {
			for _, tag := range im.RepoTags {
				for _, host := range e.hosts {
					if strings.HasPrefix(tag, host+"/") && !before[tag] {
						t.Errorf("image tag %s left on the engine", tag)
						_ = d.RemoveImage(ctx, tag, false)
					}
				}
			}
		}
	})
	return e
}

// credential issues a run credential for registry (push and pull there).
func (e *env) credential(registry, runID string) engine.Credential {
	e.t.Helper()
	secret, err := e.au.IssueRunCredential(context.Background(), auth.RunGrant{Registry: registry, RunID: runID, TTL: time.Hour})
	if err != nil {
		e.t.Fatal(err)
	}
	return engine.Credential{Registry: e.hosts[registry], Username: auth.RunUsername, Password: secret}
}

// dockerAuth is credential as an engine AuthConfig.
func (e *env) dockerAuth(registry string) *docker.AuthConfig {
	c := e.credential(registry, "setup-"+randomID())
	return &docker.AuthConfig{Username: c.Username, Password: c.Password, ServerAddress: c.Registry}
}

var (
	idMu  sync.Mutex
	idSeq int
)

// randomID returns a short run ID unique in the process and across
// processes sharing the engine.
func randomID() string {
	idMu.Lock()
	defer idMu.Unlock()
	idSeq++
	return fmt.Sprintf("t%x%d", time.Now().UnixNano()%0xfffff, idSeq)
}

// job builds a job in registry for a task file with the given workspace.
func (e *env) job(registry, file, workspace string, values map[string]string) (engine.Job, *syncBuffer) {
	e.t.Helper()
	id := randomID()
	log := &syncBuffer{}
	j := engine.Job{
		RunID:        id,
		Registry:     e.hosts[registry],
		RegistryName: registry,
		TaskName:     "test",
		FileName:     "acr-task.yaml",
		File:         []byte(file),
		Values:       values,
		Workspace:    workspace,
		Credentials:  []engine.Credential{e.credential(registry, id)},
		Log:          log,
	}
	// Safety net: whatever the run leaves is removed when the test ends.
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := e.engine.Cleanup(ctx, registry, id); err != nil {
			e.t.Errorf("cleanup of run %s: %v", id, err)
		}
	})
	if testing.Verbose() {
		e.t.Cleanup(func() {
			if e.t.Failed() {
				e.t.Logf("run %s log:\n%s", id, log.String())
			}
		})
	}
	return j, log
}

// execute runs a job with a generous bound.
func (e *env) execute(j engine.Job) (engine.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return e.engine.Execute(ctx, j)
}

// noLeftovers fails t if containers or volumes of the run are left.
func (e *env) noLeftovers(t testing.TB, registry, runID string) {
	t.Helper()
	if left := e.leftovers(registry, runID); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// leftovers lists the containers and volumes carrying the run's label.
func (e *env) leftovers(registry, runID string) []string {
	e.t.Helper()
	ctx := context.Background()
	label := engine.LabelRun + "=" + registry + "/" + runID
	var out []string
	cs, err := e.d.ListContainers(ctx, docker.ListContainersOptions{All: true, Labels: []string{label}})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, c := range cs {
		out = append(out, "container "+strings.Join(c.Names, ","))
	}
	vs, err := e.d.ListVolumes(ctx, label)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, v := range vs {
		out = append(out, "volume "+v.Name)
	}
	return out
}

// pushNodeBase builds the node stand-in (plus extra Dockerfile lines) and
// pushes it as <registry>/node:15-alpine; it returns the digest.
func (e *env) pushNodeBase(registry, extra string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	src, err := standin.NodeImage(ctx, e.d, "")
	if err != nil {
		e.t.Fatal(err)
	}
	if extra != "" {
		tag := dockertest.Name(e.t, "gantry-test/node-variant") + ":1"
		dockertest.BuildImage(e.t, e.d, tag, map[string]string{"Dockerfile": "FROM " + src + "\n" + extra + "\n"})
		src = tag
	}
	digest, err := standin.Push(ctx, e.d, src, e.hosts[registry]+"/node:15-alpine", e.dockerAuth(registry))
	if err != nil {
		e.t.Fatal(err)
	}
	return digest
}

// manifestDigest asks a registry for a tag's digest ("" when absent).
func (e *env) manifestDigest(registry, repo, tag string) string {
	e.t.Helper()
	c := e.credential(registry, "check-"+randomID())
	req, _ := http.NewRequest(http.MethodHead, "http://"+e.hosts[registry]+"/v2/"+repo+"/manifests/"+tag, nil)
	req.SetBasicAuth(c.Username, c.Password)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	return resp.Header.Get("Docker-Content-Digest")
}

// workspace copies a fixture directory (modes kept) into a temporary dir,
// with optional replacements of whole files.
func workspace(t testing.TB, fixture string, replace map[string]string) string {
	t.Helper()
	src := filepath.Join(fixtures(t), fixture)
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, info.Mode().Perm()|0o200)
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range replace {
		if err := os.WriteFile(filepath.Join(dst, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func readFixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// busybox returns an unqualified tag of the test busybox image (a Docker
// Hub name that is present locally, so the engine does not pull it).
func busybox(t testing.TB, d *docker.Client) string {
	t.Helper()
	return dockertest.BusyboxImage(t, d, dockertest.Name(t, "busybox")+":1")
}

// syncBuffer is a log safe for concurrent writes that can be watched.
type syncBuffer struct{ testenv.Buffer }

// waitFor polls the log until it contains s or the time is up.
func (b *syncBuffer) waitFor(s string, within time.Duration) bool {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(b.String(), s) {
		select {
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
	return true
}

var _ io.Writer = (*syncBuffer)(nil)

// freePort returns a free TCP port of 127.0.0.1.
func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}
