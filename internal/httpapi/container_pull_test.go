package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv/stack"
)

// specRecorder is an httpapi.Containers that records the specs it is given;
// Apply of "refused" fails as the manager does when the stored pull
// credential may not serve the caller.
type specRecorder struct {
	mu    sync.Mutex
	specs []instance.Spec
}

func (f *specRecorder) Apply(_ context.Context, spec instance.Spec) (instance.Instance, instance.Outcome, error) {
	f.mu.Lock()
	f.specs = append(f.specs, spec)
	f.mu.Unlock()
	if spec.Name == "refused" {
		return instance.Instance{}, "", fmt.Errorf("container %q: replacing image %s needs pull credentials: give --registry-username and --registry-password, or use an identity with pull access to it: %w",
			spec.Name, spec.Image, instance.ErrCredentialsRequired)
	}
	return instance.Instance{Name: spec.Name, Image: spec.Image, Host: "127.0.0.1", State: instance.StateRunning}, instance.Created, nil
}

func (f *specRecorder) last() instance.Spec {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.specs[len(f.specs)-1]
}

func (f *specRecorder) Get(context.Context, string) (instance.Instance, error) {
	return instance.Instance{}, instance.ErrNotFound
}
func (f *specRecorder) List(context.Context) ([]instance.Instance, error) { return nil, nil }
func (f *specRecorder) Logs(context.Context, string, instance.LogOptions, io.Writer, io.Writer) error {
	return nil
}
func (f *specRecorder) Delete(context.Context, string) error { return nil }

// TestContainerCreatePullAccess checks what the control API tells the
// manager about the caller: its principal, and its own credentials when it
// may pull the image from a registry of this server itself (issue 12, S8).
func TestContainerCreatePullAccess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const adminPassword = "admin-password-for-tests"
	svc := newServices(t, adminPassword)
	st, au := svc.Store, svc.Auth
	if _, err := st.CreateRegistry(ctx, store.Registry{Name: "fabrikam", Listen: "127.0.0.1:5003"}); err != nil {
		t.Fatal(err)
	}
	run := func(runID string, roles map[string]auth.Role) (principal, secret string) {
		p, err := au.CreateIdentity(ctx, "task:contoso/"+runID)
		if err != nil {
			t.Fatal(err)
		}
		for scope, role := range roles {
			if _, err := au.CreateRoleAssignment(ctx, p.ID, role, scope); err != nil {
				t.Fatal(err)
			}
		}
		secret, err = au.IssueRunCredential(ctx, auth.RunGrant{Registry: "contoso", RunID: runID, Principal: p.ID, Name: "task:contoso/" + runID, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return p.ID, secret
	}
	deployerID, deployerSecret := run("cb1", map[string]auth.Role{auth.ContainersScope: auth.RoleOwner})
	pullerID, pullerSecret := run("cb2", map[string]auth.Role{auth.ContainersScope: auth.RoleOwner,
		auth.RepositoryScope("fabrikam", "app"): auth.RoleAcrPull})

	rec := &specRecorder{}
	srv := httptest.NewServer(httpapi.New(st, au, svc.Vault, stack.NoRegistries{}, httpapi.WithContainers(rec)))
	t.Cleanup(srv.Close)
	mk := func(opt client.Option) *client.Client {
		c, err := client.New(srv.URL, opt)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	admin := mk(client.WithBasicAuth(auth.AdminUsername, adminPassword))
	deployer, puller := mk(client.WithBearer(deployerSecret)), mk(client.WithBearer(pullerSecret))
	who, err := admin.Whoami(ctx)
	if err != nil {
		t.Fatal(err)
	}
	adminID := who.Principal

	for _, tc := range []struct {
		name      string
		c         *client.Client
		req       api.CreateContainerRequest
		principal string
		want      *instance.Credentials // the caller's credentials passed on
	}{
		{"admin", admin, api.CreateContainerRequest{Image: "127.0.0.1:5003/app:1"}, adminID,
			&instance.Credentials{Server: "127.0.0.1:5003", Username: auth.AdminUsername, Password: adminPassword}},
		{"admin, localhost spelling", admin, api.CreateContainerRequest{Image: "localhost:5003/app:1"}, adminID,
			&instance.Credentials{Server: "localhost:5003", Username: auth.AdminUsername, Password: adminPassword}},
		{"admin with credentials", admin, api.CreateContainerRequest{Image: "127.0.0.1:5003/app:1", RegistryUsername: "u", RegistryPassword: "p"}, adminID, nil},
		{"admin, another registry", admin, api.CreateContainerRequest{Image: "127.0.0.1:5999/app:1"}, adminID, nil},
		{"admin, Docker Hub", admin, api.CreateContainerRequest{Image: "busybox:1"}, adminID, nil},
		{"run without pull access", deployer, api.CreateContainerRequest{Image: "127.0.0.1:5003/app:1"}, deployerID, nil},
		{"run with acrpull on the repository", puller, api.CreateContainerRequest{Image: "127.0.0.1:5003/app:1"}, pullerID,
			&instance.Credentials{Server: "127.0.0.1:5003", Username: auth.RunUsername, Password: pullerSecret}},
		{"run with acrpull, another repository", puller, api.CreateContainerRequest{Image: "127.0.0.1:5003/other:1"}, pullerID, nil},
	} {
		if _, err := tc.c.CreateContainer(ctx, "web", tc.req); err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		spec := rec.last()
		if spec.Principal != tc.principal || spec.Principal == "" {
			t.Errorf("%s: principal %q, want %q", tc.name, spec.Principal, tc.principal)
		}
		got := spec.CallerCredentials
		if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
			t.Errorf("%s: caller credentials %v, want %v", tc.name, got, tc.want)
		}
	}

	_, err = deployer.CreateContainer(ctx, "refused", api.CreateContainerRequest{Image: "127.0.0.1:5003/app:1"})
	if !errors.Is(err, api.ErrDenied) || !strings.Contains(err.Error(), "--registry-username and --registry-password") {
		t.Errorf("refused replace: %v, want denied naming the flags", err)
	}
}
