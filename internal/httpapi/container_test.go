package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/httpapi"
	"github.com/gantryhq/gantry/internal/instance"
	"github.com/gantryhq/gantry/internal/testenv/stack"
)

// containerFake is an in-memory httpapi.Containers. Names starting with
// "fail-" make Apply fail with the error named after the prefix.
type containerFake struct {
	mu    sync.Mutex
	items map[string]instance.Instance
	specs []instance.Spec
}

var containerFailures = map[string]error{
	"fail-notready": fmt.Errorf("container %q: %w: it exited with code 3\nlast log lines:\n  boom", "fail-notready", instance.ErrNotReady),
	"fail-port":     fmt.Errorf("front address 127.0.0.1:80: %w", instance.ErrPortInUse),
	"fail-image":    fmt.Errorf("%w: registry unreachable", instance.ErrImage),
}

func (f *containerFake) Apply(_ context.Context, spec instance.Spec) (instance.Instance, instance.Outcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.specs = append(f.specs, spec)
	if err := containerFailures[spec.Name]; err != nil {
		return instance.Instance{}, "", err
	}
	outcome := instance.Created
	if _, ok := f.items[spec.Name]; ok {
		outcome = instance.Replaced
	}
	in := instance.Instance{
		ID: "id-" + spec.Name, Name: spec.Name, Image: spec.Image, Env: spec.Env, Host: "127.0.0.1",
		Ports: []instance.Binding{{Port: 80, Protocol: "TCP", FrontPort: 41000, ListenPort: 42000}},
		State: instance.StateRunning, ContainerID: "c0ffee", UpdatedBy: spec.By,
	}
	for k := range spec.SecureEnv {
		in.SecureEnvNames = append(in.SecureEnvNames, k)
	}
	if spec.Registry != nil {
		in.RegistryServer, in.RegistryUsername = spec.Registry.Server, spec.Registry.Username
	}
	f.items[spec.Name] = in
	return in, outcome, nil
}

func (f *containerFake) Get(_ context.Context, name string) (instance.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	in, ok := f.items[name]
	if !ok {
		return in, fmt.Errorf("container %q: %w", name, instance.ErrNotFound)
	}
	return in, nil
}

func (f *containerFake) List(context.Context) ([]instance.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []instance.Instance
	for _, in := range f.items {
		out = append(out, in)
	}
	return out, nil
}

func (f *containerFake) Logs(ctx context.Context, name string, _ instance.LogOptions, stdout, _ io.Writer) error {
	if _, err := f.Get(ctx, name); err != nil {
		return err
	}
	_, err := io.WriteString(stdout, "serving on 42000\n")
	return err
}

func (f *containerFake) Delete(ctx context.Context, name string) error {
	if _, err := f.Get(ctx, name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.items, name)
	return nil
}

// containerServer is a control API with the container endpoints over
// containers, and its callers.
type containerServer struct {
	url      string
	admin    *client.Client
	token    *client.Client // a registry token: no control-plane rights
	deployer *client.Client // a run of a task whose identity is owner on /containers
	webOnly  *client.Client // a run whose identity is owner on /containers/web only
	anon     *client.Client
}

func newContainerServer(t *testing.T, containers httpapi.Containers) *containerServer {
	t.Helper()
	ctx := context.Background()
	const adminPassword = "admin-password-for-tests"
	svc := newServices(t, adminPassword)
	st, au, vlt := svc.Store, svc.Auth, svc.Vault
	tok, err := au.CreateToken(ctx, auth.TokenSpec{Registry: "contoso", Name: "deployer", ScopeMap: "_repositories_admin"})
	if err != nil {
		t.Fatal(err)
	}
	runCredential := func(runID, scope string) string {
		p, err := au.CreateIdentity(ctx, "task:contoso/"+runID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := au.CreateRoleAssignment(ctx, p.ID, auth.RoleOwner, scope); err != nil {
			t.Fatal(err)
		}
		secret, err := au.IssueRunCredential(ctx, auth.RunGrant{Registry: "contoso", RunID: runID, Principal: p.ID, Name: "task:contoso/hello-world", TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return secret
	}
	srv := httptest.NewServer(httpapi.New(st, au, vlt, stack.NoRegistries{}, httpapi.WithContainers(containers)))
	t.Cleanup(srv.Close)
	mk := func(opts ...client.Option) *client.Client {
		c, err := client.New(srv.URL, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return &containerServer{
		url:      srv.URL,
		admin:    mk(client.WithBasicAuth(auth.AdminUsername, adminPassword)),
		token:    mk(client.WithBasicAuth("contoso/deployer", tok.Passwords[0].Value)),
		deployer: mk(client.WithBearer(runCredential("cb1", auth.ContainersScope))),
		webOnly:  mk(client.WithBearer(runCredential("cb2", auth.ContainerScope("web")))),
		anon:     mk(),
	}
}

func TestContainerEndpointsAuthorization(t *testing.T) {
	t.Parallel()
	fake := &containerFake{items: map[string]instance.Instance{}}
	s := newContainerServer(t, fake)
	ctx := context.Background()
	req := api.CreateContainerRequest{Image: "127.0.0.1:5003/hello-world:cb1"}

	type call struct {
		name string
		do   func(c *client.Client) error
	}
	create := func(name string) call {
		return call{"create " + name, func(c *client.Client) error { _, err := c.CreateContainer(ctx, name, req); return err }}
	}
	show := func(name string) call {
		return call{"show " + name, func(c *client.Client) error { _, err := c.GetContainer(ctx, name); return err }}
	}
	logs := func(name string) call {
		return call{"logs " + name, func(c *client.Client) error {
			body, err := c.ContainerLogs(ctx, name, client.ContainerLogsOptions{})
			if err == nil {
				body.Close()
			}
			return err
		}}
	}
	del := func(name string) call {
		return call{"delete " + name, func(c *client.Client) error { return c.DeleteContainer(ctx, name) }}
	}
	list := call{"list", func(c *client.Client) error { _, err := c.ListContainers(ctx); return err }}

	for _, tc := range []struct {
		caller string
		c      *client.Client
		call   call
		want   error // nil: allowed
	}{
		{"anonymous", s.anon, create("web"), api.ErrUnauthenticated},
		{"anonymous", s.anon, list, api.ErrUnauthenticated},
		{"token", s.token, create("web"), api.ErrDenied},
		{"token", s.token, list, api.ErrDenied},
		{"admin", s.admin, create("web"), nil},
		{"token", s.token, show("web"), api.ErrDenied},
		{"token", s.token, logs("web"), api.ErrDenied},
		{"token", s.token, del("web"), api.ErrDenied},
		{"admin", s.admin, show("web"), nil},
		{"admin", s.admin, logs("web"), nil},
		{"admin", s.admin, list, nil},
		{"owner of /containers", s.deployer, create("web"), nil},
		{"owner of /containers", s.deployer, create("api"), nil},
		{"owner of /containers", s.deployer, list, nil},
		{"owner of /containers", s.deployer, show("api"), nil},
		{"owner of /containers/web", s.webOnly, create("web"), nil},
		{"owner of /containers/web", s.webOnly, show("web"), nil},
		{"owner of /containers/web", s.webOnly, create("api"), api.ErrDenied},
		{"owner of /containers/web", s.webOnly, show("api"), api.ErrDenied},
		{"owner of /containers/web", s.webOnly, list, api.ErrDenied},
		{"owner of /containers/web", s.webOnly, del("api"), api.ErrDenied},
		{"owner of /containers", s.deployer, del("api"), nil},
		{"admin", s.admin, del("web"), nil},
		{"admin", s.admin, show("web"), api.ErrNotFound},
	} {
		err := tc.call.do(tc.c)
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%s: %s: %v, want allowed", tc.caller, tc.call.name, err)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%s: %s: %v, want %v", tc.caller, tc.call.name, err, tc.want)
		}
	}
	// The run's display name is recorded as the deployer.
	fake.mu.Lock()
	by := fake.specs[1].By
	fake.mu.Unlock()
	if by != "task:contoso/hello-world" {
		t.Errorf("deployed by %q", by)
	}
}

func TestContainerEndpoints(t *testing.T) {
	t.Parallel()
	fake := &containerFake{items: map[string]instance.Instance{}}
	s := newContainerServer(t, fake)
	ctx := context.Background()
	const password = "s3cret-registry-password"

	req := api.CreateContainerRequest{
		Image:                 "127.0.0.1:5003/hello-world:cb1",
		Environment:           map[string]string{"COLOR": "green"},
		SecureEnvironment:     map[string]string{"API_KEY": "k3y"},
		RegistryUsername:      "puller",
		RegistryPassword:      password,
		Ports:                 []api.ContainerPortRequest{{Port: 80}},
		StartupTimeoutSeconds: 30,
	}
	// Raw request: the status and body as sent.
	body := fmt.Sprintf(`{"image":%q,"environmentVariables":{"COLOR":"green"},"secureEnvironmentVariables":{"API_KEY":"k3y"},"registryUsername":"puller","registryPassword":%q,"ports":[{"port":80}],"startupTimeoutSeconds":30}`, req.Image, password)
	hr, _ := http.NewRequest(http.MethodPut, s.url+"/v1/containers/web", strings.NewReader(body))
	hr.SetBasicAuth(auth.AdminUsername, "admin-password-for-tests")
	hr.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %s %s", resp.Status, raw)
	}
	for _, secret := range []string{password, "k3y"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("create response contains a secret: %s", raw)
		}
	}
	fake.mu.Lock()
	spec := fake.specs[0]
	fake.mu.Unlock()
	if spec.Registry == nil || spec.Registry.Password != password || spec.Registry.Username != "puller" ||
		spec.SecureEnv["API_KEY"] != "k3y" || spec.StartupTimeout != 30*time.Second || spec.By != auth.AdminUsername {
		t.Errorf("spec passed on: %+v", spec)
	}

	again, err := s.admin.CreateContainer(ctx, "web", req)
	if err != nil || again.Operation != api.ContainerReplaced {
		t.Fatalf("second create: %v %+v", err, again)
	}
	c, err := s.admin.GetContainer(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if c.IPAddress.URL != "http://127.0.0.1:41000" || c.IPAddress.Ports[0].Address != "127.0.0.1:41000" || c.IPAddress.Ports[0].ListenPort != 42000 {
		t.Errorf("address: %+v", c.IPAddress)
	}
	if len(c.Environment) != 2 || c.Environment[0].Name != "API_KEY" || c.Environment[0].Value != nil || !c.Environment[0].Secure ||
		c.Environment[1].Name != "COLOR" || c.Environment[1].Value == nil || *c.Environment[1].Value != "green" {
		t.Errorf("environment: %+v", c.Environment)
	}
	if len(c.ImageRegistryCredentials) != 1 || c.ImageRegistryCredentials[0].Username != "puller" {
		t.Errorf("credentials: %+v", c.ImageRegistryCredentials)
	}

	logs, err := s.admin.ContainerLogs(ctx, "web", client.ContainerLogsOptions{Tail: 10})
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(logs)
	logs.Close()
	if string(text) != "serving on 42000\n" {
		t.Errorf("logs: %q", text)
	}

	for _, tc := range []struct {
		name string
		req  api.CreateContainerRequest
		want error
		msg  string
	}{
		{"Bad_Name", req, api.ErrInvalid, "name"},
		{"web", api.CreateContainerRequest{}, api.ErrInvalid, "image"},
		{"fail-notready", req, api.ErrInvalid, "boom"},
		{"fail-port", req, api.ErrConflict, "in use"},
		{"fail-image", req, api.ErrUnavailable, "unreachable"},
	} {
		_, err := s.admin.CreateContainer(ctx, tc.name, tc.req)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("create %s: %v, want %v mentioning %q", tc.name, err, tc.want, tc.msg)
		}
	}
	if _, err := s.admin.ContainerLogs(ctx, "nope", client.ContainerLogsOptions{}); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("logs of a missing container: %v", err)
	}
	if _, err := s.admin.ContainerLogs(ctx, "web", client.ContainerLogsOptions{Tail: -1}); err != nil {
		t.Errorf("negative tail is dropped by the client: %v", err)
	}
}
