package instance_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/instance"
	"github.com/gantryhq/gantry/internal/testenv"
	"github.com/gantryhq/gantry/internal/vault"
)

// env is one test's database, sealer, engine and image registry.
type env struct {
	t      *testing.T
	dir    string
	db     *db.DB
	sealer *vault.Service
	engine *docker.Client
	reg    *dockertest.Registry
	logs   *testenv.Buffer
}

func newEnv(t *testing.T, auth bool) *env {
	t.Helper()
	engine := dockertest.Engine(t)
	dockertest.Sweep(t, engine)
	dir := t.TempDir()
	d := testenv.DB(t, dir)
	sealer, err := vault.New(d, filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, dir: dir, db: d, sealer: sealer, engine: engine, reg: dockertest.StartRegistry(t, auth), logs: &testenv.Buffer{}}
}

// manager starts a manager over the env's database; it is stopped when the
// test ends (stopping twice is fine).
func (e *env) manager(opts ...instance.Option) *instance.Manager {
	e.t.Helper()
	base := []instance.Option{
		instance.WithLabels(dockertest.Labels(e.t)),
		instance.WithLogger(slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		instance.WithStartupTimeout(20 * time.Second),
		instance.WithDrainTimeout(time.Second),
		instance.WithStopTimeout(2 * time.Second),
	}
	m, err := instance.New(e.db, e.engine, e.sealer, append(base, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := m.Start(ctx(e.t)); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = m.Stop(context.Background()) })
	return m
}

// image builds a busybox image that serves "<version> $MSG" over HTTP on
// $PORT (busybox httpd, logging requests to stderr), pushes it to the
// env's registry as app:<version> and returns its reference there.
func (e *env) image(version string) string {
	e.t.Helper()
	engine := e.engine
	base := dockertest.BusyboxImage(e.t, engine, "")
	local := dockertest.Name(e.t, "app") + ":" + version
	dockertest.BuildImage(e.t, engine, local, map[string]string{
		// build-id makes the image unique to the test, so that removing it
		// cannot disturb a parallel test.
		"Dockerfile": "FROM " + base + "\nCOPY version build-id /\nCOPY serve.sh /serve.sh\nCMD [\"sh\", \"/serve.sh\"]\n",
		"version":    version + "\n",
		"build-id":   dockertest.Name(e.t, "build") + "\n",
		"serve.sh": `mkdir -p /www
echo "$(cat /version) ${MSG:-}" > /www/index.html
echo "serving $(cat /version) on port ${PORT:-80}"
exec httpd -f -v -p "${PORT:-80}" -h /www
`,
	})
	ref := e.reg.Host + "/app:" + version
	c := ctx(e.t)
	if err := engine.TagImage(c, local, ref); err != nil {
		e.t.Fatal(err)
	}
	dockertest.RemoveImageOnCleanup(e.t, engine, ref)
	if _, err := engine.PushImage(c, ref, e.reg.Auth(), nil); err != nil {
		e.t.Fatal(err)
	}
	return ref
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return c
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func fetch(url string) (string, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	return strings.TrimSpace(string(b)), nil
}

func mustFetch(t *testing.T, url, want string) {
	t.Helper()
	got, err := fetch(url)
	if err != nil || got != want {
		t.Fatalf("GET %s = %q, %v; want %q", url, got, err, want)
	}
}

// poller fetches url until stopped and counts failures.
type poller struct {
	url      string
	stop     chan struct{}
	done     chan struct{}
	ok, fail atomic.Int64
	mu       sync.Mutex
	errs     []string
	seen     map[string]int
}

func startPoller(url string) *poller {
	p := &poller{url: url, stop: make(chan struct{}), done: make(chan struct{}), seen: map[string]int{}}
	go func() {
		defer close(p.done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			body, err := fetch(url)
			p.mu.Lock()
			if err != nil {
				p.fail.Add(1)
				p.errs = append(p.errs, err.Error())
			} else {
				p.ok.Add(1)
				p.seen[body]++
			}
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

func (p *poller) halt() {
	close(p.stop)
	<-p.done
}

func TestCreateReplaceUnchanged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	v1, v2 := e.image("v1"), e.image("v2")
	m := e.manager()
	c := ctx(t)
	name := dockertest.Name(t, "web")

	in, outcome, err := m.Apply(c, instance.Spec{Name: name, Image: v1, Env: map[string]string{"MSG": "hello"}, By: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	if outcome != instance.Created || in.State != instance.StateRunning || in.ContainerID == "" {
		t.Fatalf("create: %s %+v", outcome, in)
	}
	if len(in.Ports) != 1 || in.Ports[0].Port != 80 || in.Ports[0].FrontPort == 0 || in.Ports[0].ListenPort == 0 {
		t.Fatalf("ports: %+v", in.Ports)
	}
	url := in.URL()
	mustFetch(t, url, "v1 hello")
	// The container is confined: no raw sockets on the host network, no
	// new privileges (docs/security.md).
	if conf := string(dockertest.CLI(t, "inspect", "-f", "{{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}}", in.ContainerID)); !strings.Contains(conf, "NET_RAW") ||
		!strings.Contains(conf, "no-new-privileges") {
		t.Errorf("the instance's container runs with %s", conf)
	}

	// Replace with a new image and env while a client polls the front.
	p := startPoller(url)
	in2, outcome, err := m.Apply(c, instance.Spec{Name: name, Image: v2, Env: map[string]string{"MSG": "world"}, By: "task:contoso/hello-world"})
	p.halt()
	if err != nil {
		t.Fatal(err)
	}
	if outcome != instance.Replaced || in2.ContainerID == in.ContainerID {
		t.Fatalf("replace: %s, container %s -> %s", outcome, in.ContainerID, in2.ContainerID)
	}
	if in2.URL() != url || in2.CreatedAt != in.CreatedAt || !in2.UpdatedAt.After(in.UpdatedAt) || in2.UpdatedBy != "task:contoso/hello-world" {
		t.Errorf("after replace: url %s (was %s), created %v (was %v), updated %v, by %q", in2.URL(), url, in2.CreatedAt, in.CreatedAt, in2.UpdatedAt, in2.UpdatedBy)
	}
	if p.fail.Load() != 0 || p.ok.Load() == 0 {
		t.Errorf("during the replacement %d requests failed, %d succeeded: %v", p.fail.Load(), p.ok.Load(), p.errs)
	}
	t.Logf("during the replacement: %d requests, answers %v", p.ok.Load(), p.seen)
	mustFetch(t, url, "v2 world")
	// The old container is removed in the background.
	testenv.WaitFor(t, 30*time.Second, "the old container's removal", func() bool {
		_, err := e.engine.InspectContainer(c, in.ContainerID)
		return errors.Is(err, docker.ErrNotFound)
	})

	// The same spec again changes nothing.
	in3, outcome, err := m.Apply(c, instance.Spec{Name: name, Image: v2, Env: map[string]string{"MSG": "world"}})
	if err != nil || outcome != instance.Unchanged || in3.ContainerID != in2.ContainerID {
		t.Fatalf("same spec again: %s %v, container %s -> %s", outcome, err, in2.ContainerID, in3.ContainerID)
	}
	// So does a secure variable with the same value; a changed one does not.
	in4, outcome, err := m.Apply(c, instance.Spec{Name: name, Image: v2, Env: map[string]string{"MSG": "world"}, SecureEnv: map[string]string{"TOKEN": "t0p"}})
	if err != nil || outcome != instance.Replaced {
		t.Fatalf("secure env added: %s %v", outcome, err)
	}
	if _, outcome, err = m.Apply(c, instance.Spec{Name: name, Image: v2, Env: map[string]string{"MSG": "world"}, SecureEnv: map[string]string{"TOKEN": "t0p"}}); err != nil || outcome != instance.Unchanged {
		t.Fatalf("same secure env: %s %v", outcome, err)
	}
	if len(in4.SecureEnvNames) != 1 || in4.SecureEnvNames[0] != "TOKEN" || in4.Env["TOKEN"] != "" {
		t.Errorf("secure env shown as %v / %v", in4.SecureEnvNames, in4.Env)
	}
	if strings.Contains(fmt.Sprintf("%+v", in4), "t0p") {
		t.Errorf("secure value in the instance: %+v", in4)
	}

	list, err := m.List(c)
	if err != nil || len(list) != 1 || list[0].Name != name {
		t.Fatalf("list: %v %+v", err, list)
	}

	// Logs are the current container's.
	var out bytes.Buffer
	if err := m.Logs(c, name, instance.LogOptions{}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "serving v2 on port") {
		t.Errorf("logs:\n%s", out.String())
	}
	if _, _, err := m.Apply(c, instance.Spec{Name: name, Image: v2, Env: map[string]string{"PORT": "80"}}); !errors.Is(err, instance.ErrInvalid) {
		t.Errorf("reserved PORT: %v", err)
	}
}

func TestFailedReplacementKeepsServing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	v1 := e.image("v1")
	m := e.manager()
	c := ctx(t)
	name := dockertest.Name(t, "web")
	in, _, err := m.Apply(c, instance.Spec{Name: name, Image: v1, Env: map[string]string{"MSG": "stable"}})
	if err != nil {
		t.Fatal(err)
	}
	url := in.URL()

	for _, tc := range []struct {
		name string
		spec instance.Spec
		want []string
	}{
		{"exits", instance.Spec{Name: name, Image: v1, Command: []string{"sh", "-c", "echo boom >&2; exit 3"}},
			[]string{"exited with code 3", "boom", "previous container keeps serving"}},
		{"never listens", instance.Spec{Name: name, Image: v1, Command: []string{"sh", "-c", "echo idle; sleep 60"}, StartupTimeout: 1500 * time.Millisecond},
			[]string{"nothing accepted connections on port 80", "idle"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startPoller(url)
			_, _, err := m.Apply(c, tc.spec)
			p.halt()
			if !errors.Is(err, instance.ErrNotReady) {
				t.Fatalf("apply: %v, want ErrNotReady", err)
			}
			t.Logf("error: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q", w)
				}
			}
			if p.fail.Load() != 0 {
				t.Errorf("%d requests failed: %v", p.fail.Load(), p.errs)
			}
			mustFetch(t, url, "v1 stable")
			got, err := m.Get(c, name)
			if err != nil || got.ContainerID != in.ContainerID || got.State != instance.StateRunning {
				t.Fatalf("after failure: %v %+v", err, got)
			}
			// The failed container is gone.
			list, err := e.engine.ListContainers(c, docker.ListContainersOptions{All: true, Labels: []string{instance.LabelID + "=" + in.ID}})
			if err != nil || len(list) != 1 || list[0].ID != in.ContainerID {
				t.Errorf("containers of the instance: %v %+v", err, list)
			}
		})
	}

	// A failed first create leaves nothing behind.
	other := dockertest.Name(t, "bad")
	if _, _, err := m.Apply(c, instance.Spec{Name: other, Image: v1, Command: []string{"false"}}); !errors.Is(err, instance.ErrNotReady) {
		t.Fatalf("bad create: %v", err)
	}
	if _, err := m.Get(c, other); !errors.Is(err, instance.ErrNotFound) || !errors.Is(err, db.ErrNotFound) {
		t.Errorf("failed create left an instance: %v", err)
	}
	// An image that does not exist.
	if _, _, err := m.Apply(c, instance.Spec{Name: other, Image: e.reg.Host + "/nope:1"}); !errors.Is(err, instance.ErrImage) {
		t.Errorf("missing image: %v, want ErrImage", err)
	}
}

func TestRestartAdoptsAndRestores(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	v1 := e.image("v1")
	c := ctx(t)
	name := dockertest.Name(t, "web")
	m1 := e.manager(instance.WithResyncInterval(0))
	in, _, err := m1.Apply(c, instance.Spec{Name: name, Image: v1, Env: map[string]string{"MSG": "persisted"}, SecureEnv: map[string]string{"S": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	url := in.URL()
	mustFetch(t, url, "v1 persisted")
	// A container of this database that no instance claims (left by a crash).
	owner := ""
	ct, err := e.engine.InspectContainer(c, in.ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	owner = ct.Labels()[instance.LabelOwner]
	labels := dockertest.Labels(t)
	labels[instance.LabelOwner] = owner
	stray, err := e.engine.CreateContainer(c, dockertest.Name(t, "stray"), docker.ContainerConfig{Image: v1, Labels: labels}, docker.HostConfig{NetworkMode: "host"})
	if err != nil {
		t.Fatal(err)
	}

	// gantry goes down: the front closes, the container keeps running.
	if err := m1.Stop(c); err != nil {
		t.Fatal(err)
	}
	if _, err := fetch(url); err == nil {
		t.Fatal("front still answers after Stop")
	}
	// A new manager adopts the running container.
	m2 := e.manager(instance.WithResyncInterval(0))
	mustFetch(t, url, "v1 persisted")
	got, err := m2.Get(c, name)
	if err != nil || got.ContainerID != in.ContainerID || got.State != instance.StateRunning {
		t.Fatalf("adopted: %v %+v", err, got)
	}
	if _, err := e.engine.InspectContainer(c, stray); !errors.Is(err, docker.ErrNotFound) {
		t.Errorf("unclaimed container not removed: %v", err)
	}

	// Down again; the container disappears meanwhile: it is re-created.
	if err := m2.Stop(c); err != nil {
		t.Fatal(err)
	}
	if err := e.engine.RemoveContainer(c, in.ContainerID, docker.RemoveContainerOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	m3 := e.manager(instance.WithResyncInterval(0))
	mustFetch(t, url, "v1 persisted")
	got, err = m3.Get(c, name)
	if err != nil || got.ContainerID == in.ContainerID || got.State != instance.StateRunning || got.URL() != url {
		t.Fatalf("re-created: %v %+v", err, got)
	}

	// While running, a container that is removed behind gantry's back is
	// re-created by the background resync.
	if err := m3.Stop(c); err != nil {
		t.Fatal(err)
	}
	m4 := e.manager(instance.WithResyncInterval(200 * time.Millisecond))
	if err := e.engine.RemoveContainer(c, got.ContainerID, docker.RemoveContainerOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the resync to replace the removed container", func() bool {
		in, err := m4.Get(c, name)
		return err == nil && in.State == instance.StateRunning && in.ContainerID != got.ContainerID
	})
	mustFetch(t, url, "v1 persisted")
}

func TestFrontPorts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	v1 := e.image("v1")
	m := e.manager()
	c := ctx(t)
	name := dockertest.Name(t, "web")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	if _, _, err := m.Apply(c, instance.Spec{Name: name, Image: v1, Ports: []instance.Port{{Port: 80, FrontPort: takenPort}}}); !errors.Is(err, instance.ErrPortInUse) || !errors.Is(err, db.ErrConflict) {
		t.Fatalf("taken front port: %v", err)
	}
	first, second := freePort(t), freePort(t)
	in, _, err := m.Apply(c, instance.Spec{Name: name, Image: v1, Ports: []instance.Port{{Port: 80, FrontPort: first}}})
	if err != nil {
		t.Fatal(err)
	}
	if in.Ports[0].FrontPort != first {
		t.Fatalf("front port %d, asked for %d", in.Ports[0].FrontPort, first)
	}
	mustFetch(t, in.URL(), "v1")
	// Omitting the front port keeps it; asking for another moves it.
	if _, outcome, err := m.Apply(c, instance.Spec{Name: name, Image: v1}); err != nil || outcome != instance.Unchanged {
		t.Fatalf("same spec without the front port: %s %v", outcome, err)
	}
	in2, outcome, err := m.Apply(c, instance.Spec{Name: name, Image: v1, Ports: []instance.Port{{Port: 80, FrontPort: second}}})
	if err != nil || outcome != instance.Replaced || in2.Ports[0].FrontPort != second {
		t.Fatalf("moving the front port: %s %v %+v", outcome, err, in2.Ports)
	}
	mustFetch(t, in2.URL(), "v1")
	testenv.WaitFor(t, 10*time.Second, "the site to go down", func() bool { _, err := fetch(in.URL()); return err != nil })
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	v1 := e.image("v1")
	m := e.manager()
	c := ctx(t)
	name := dockertest.Name(t, "web")
	// Two ports: the second is served by a daemonized httpd on $PORT_8080.
	in, _, err := m.Apply(c, instance.Spec{Name: name, Image: v1, Ports: []instance.Port{{Port: 80}, {Port: 8080}},
		Command: []string{"sh", "-c", `mkdir -p /admin && echo admin > /admin/index.html && httpd -p "$PORT_8080" -h /admin && exec sh /serve.sh`}})
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Ports) != 2 || in.Ports[0].FrontPort == in.Ports[1].FrontPort {
		t.Fatalf("ports: %+v", in.Ports)
	}
	mustFetch(t, in.URL(), "v1")
	mustFetch(t, fmt.Sprintf("http://127.0.0.1:%d/", in.Ports[1].FrontPort), "admin")
	if err := m.Delete(c, name); err != nil {
		t.Fatal(err)
	}
	if _, err := e.engine.InspectContainer(c, in.ContainerID); !errors.Is(err, docker.ErrNotFound) {
		t.Errorf("container still there: %v", err)
	}
	if _, err := fetch(in.URL()); err == nil {
		t.Errorf("front still answers")
	}
	if _, err := m.Get(c, name); !errors.Is(err, instance.ErrNotFound) {
		t.Errorf("get after delete: %v", err)
	}
	if err := m.Delete(c, name); !errors.Is(err, instance.ErrNotFound) {
		t.Errorf("delete again: %v", err)
	}
	if err := m.Logs(c, name, instance.LogOptions{}, io.Discard, io.Discard); !errors.Is(err, instance.ErrNotFound) {
		t.Errorf("logs after delete: %v", err)
	}
}

func TestRegistryCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	v1 := e.image("v1")
	m := e.manager(instance.WithResyncInterval(0))
	c := ctx(t)
	name := dockertest.Name(t, "private")
	password := e.reg.Password

	// Make sure the engine has to pull: drop the local copies.
	if err := e.engine.RemoveImage(c, v1, true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Apply(c, instance.Spec{Name: name, Image: v1}); !errors.Is(err, instance.ErrImage) || !errors.Is(err, docker.ErrUnauthorized) {
		t.Fatalf("without credentials: %v", err)
	}
	wrong := "wrong-" + password
	_, _, err := m.Apply(c, instance.Spec{Name: name, Image: v1, Registry: &instance.Credentials{Username: e.reg.Username, Password: wrong}})
	if !errors.Is(err, instance.ErrImage) || strings.Contains(err.Error(), wrong) {
		t.Fatalf("wrong password: %v", err)
	}
	in, _, err := m.Apply(c, instance.Spec{Name: name, Image: v1, Registry: &instance.Credentials{Username: e.reg.Username, Password: password}})
	if err != nil {
		t.Fatal(err)
	}
	mustFetch(t, in.URL(), "v1")
	if in.RegistryServer != e.reg.Host || in.RegistryUsername != e.reg.Username {
		t.Errorf("registry: %q %q", in.RegistryServer, in.RegistryUsername)
	}
	if strings.Contains(fmt.Sprintf("%+v", in), password) {
		t.Errorf("password in the instance")
	}
	var stored []byte
	if err := e.db.R.QueryRowContext(c, `SELECT registry_password FROM container_instances WHERE name = ?`, name).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if len(stored) == 0 || bytes.Contains(stored, []byte(password)) {
		t.Errorf("stored password is not sealed")
	}
	// Credentials for another registry than the image's are refused.
	if _, _, err := m.Apply(c, instance.Spec{Name: name, Image: v1, Registry: &instance.Credentials{Server: "other:5000", Username: "u", Password: "p"}}); !errors.Is(err, instance.ErrInvalid) {
		t.Errorf("credentials for another server: %v", err)
	}

	// After a restart with neither the container nor the image on the
	// engine, the stored credentials pull it again.
	if err := m.Stop(c); err != nil {
		t.Fatal(err)
	}
	if err := e.engine.RemoveContainer(c, in.ContainerID, docker.RemoveContainerOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if err := e.engine.RemoveImage(c, in.ImageID, true); err != nil {
		t.Fatal(err)
	}
	m2 := e.manager(instance.WithResyncInterval(0))
	mustFetch(t, in.URL(), "v1")
	got, err := m2.Get(c, name)
	if err != nil || got.State != instance.StateRunning || got.ImageID != in.ImageID {
		t.Fatalf("restored: %v %+v", err, got)
	}
	// Without new credentials, the stored ones are used again.
	if _, outcome, err := m2.Apply(c, instance.Spec{Name: name, Image: v1, Env: map[string]string{"MSG": "again"}}); err != nil || outcome != instance.Replaced {
		t.Fatalf("apply with stored credentials: %s %v", outcome, err)
	}
	mustFetch(t, in.URL(), "v1 again")

	if strings.Contains(e.logs.String(), password) || strings.Contains(e.logs.String(), wrong) {
		t.Errorf("a password reached the log")
	}
}
