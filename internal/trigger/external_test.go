package trigger

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/engine"
	"github.com/gantryhq/gantry/internal/oci"
	"github.com/gantryhq/gantry/internal/remote"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/task"
	"github.com/gantryhq/gantry/internal/testenv/stack"
)

// upstream is another registry server on loopback (a stand-in for Docker
// Hub): gantry's own registry handler over its own store, with Docker token
// authentication.
type upstream struct {
	store *store.Store
	host  string
}

func startUpstream(t *testing.T, anonymousPull bool) *upstream {
	t.Helper()
	sk := stack.New(t, "")
	sk.Admin(t, "upstream-password")
	host := sk.ServeRegistry(t, store.Registry{Name: "hub", AnonymousPull: anonymousPull})
	return &upstream{store: sk.Store, host: host}
}

func TestExternalBaseImagePolled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		anonymous bool
	}{{"anonymous pull", true}, {"bearer token with a login", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := startUpstream(t, tc.anonymous)
			clock := newFakeClock(t0)
			e := newEnv(t, t.TempDir(), envConfig{})
			e.registry(t, "contoso", appHost)
			ctx := context.Background()
			d1 := push(t, up.store, "hub", "library/node", store.Actor{}, "15-alpine")
			e.createTask(t, "contoso", "hello-world", nil)
			e.exec.set("hello-world", func(ctx context.Context, job engine.Job) (engine.Result, error) {
				d, err := up.store.ResolveTag(ctx, "hub", "library/node", "15-alpine")
				if err != nil {
					return engine.Result{}, err
				}
				return engine.Result{Dependencies: []engine.Dependency{{Step: "build",
					Runtime: engine.Image{Registry: up.host, Repository: "library/node", Tag: "15-alpine", Digest: d.String()}}}}, nil
			})
			e.startTasks(t)
			e.runNow(t, "contoso", "hello-world")

			polled := make(chan error, 10)
			opts := []Option{WithClock(clock), WithDebounce(0), WithExternalPollInterval(10 * time.Minute),
				withHooks(hooks{extPolled: func(_ string, err error) { polled <- err }})}
			if !tc.anonymous {
				opts = append(opts, WithCredentials(func(_ context.Context, host string) (string, string, error) {
					if host != up.host {
						t.Errorf("credentials asked for %s", host)
					}
					return auth.AdminUsername, "upstream-password", nil
				}))
			}
			s, _ := e.startTrigger(t, opts...)
			// The first poll is at once and finds the tracked digest.
			if err := recv(t, polled, "the first poll"); err != nil {
				t.Fatal(err)
			}
			settle(t, s)
			if runs := e.runs(t, "contoso", "hello-world", task.TriggerImageUpdate); len(runs) != 0 {
				t.Fatalf("%d runs for an unchanged base", len(runs))
			}

			d2 := push(t, up.store, "hub", "library/node", store.Actor{}, "15-alpine")
			clock.Advance(12 * time.Minute)
			if err := recv(t, polled, "the second poll"); err != nil {
				t.Fatal(err)
			}
			runs := e.waitRuns(t, "contoso", "hello-world", task.TriggerImageUpdate, 1)
			c := runs[0].Cause.ImageUpdate
			if c.Image != up.host+"/library/node:15-alpine" || c.OldDigest != d1.String() || c.NewDigest != d2.String() || c.Registry != "" {
				t.Fatalf("cause = %+v", c)
			}
			e.waitFinished(t, "contoso", "hello-world")
			// Polled again, unchanged (and now built from): nothing more.
			clock.Advance(12 * time.Minute)
			recv(t, polled, "the third poll")
			settle(t, s)
			if runs := e.runs(t, "contoso", "hello-world", task.TriggerImageUpdate); len(runs) != 1 {
				t.Fatalf("%d runs, want 1", len(runs))
			}
			info, err := s.Describe(ctx, "contoso", "hello-world")
			if err != nil {
				t.Fatal(err)
			}
			if tr := info.Base.Tracked; len(tr) != 1 || tr[0].GantryRegistry != "" || tr[0].Current != d2.String() || tr[0].CheckedAt.IsZero() {
				t.Fatalf("tracked = %+v", tr)
			}
		})
	}
}

func TestHeadDigestErrors(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, false)
	s := New(nil, nil, nil, nil)
	ctx := context.Background()
	push(t, up.store, "hub", "library/node", store.Actor{}, "1")
	if _, err := s.headDigest(ctx, up.host, "library/node", "1"); err == nil || !strings.Contains(err.Error(), "login") &&
		!strings.Contains(err.Error(), "token") {
		t.Fatalf("private registry without a login: %v", err)
	}
	anon := startUpstream(t, true)
	d := push(t, anon.store, "hub", "library/node", store.Actor{}, "1")
	if got, err := s.headDigest(ctx, anon.host, "library/node", "1"); err != nil || got != d.String() {
		t.Fatalf("headDigest = %s, %v; want %s", got, err, d)
	}
	if _, err := s.headDigest(ctx, anon.host, "library/node", "missing"); err == nil {
		t.Fatal("a missing tag has a digest")
	}
}

// TestPollEndpoint: Docker Hub's official images are polled at
// registry-1.docker.io under library/, loopback registries in plain HTTP,
// others in HTTPS.
func TestPollEndpoint(t *testing.T) {
	t.Parallel()
	c := remote.New()
	endpoint := func(host, repository string) (string, string) {
		r := oci.Reference{Domain: host, Path: repository}.Normalize()
		return c.Scheme(host) + "://" + oci.APIHost(r.Domain), r.Path
	}
	if base, repo := endpoint("docker.io", "node"); base != "https://registry-1.docker.io" || repo != "library/node" {
		t.Fatalf("docker hub endpoint = %s %s", base, repo)
	}
	if base, _ := endpoint("localhost:5000", "x"); base != "http://localhost:5000" {
		t.Fatalf("loopback endpoint = %s", base)
	}
	if base, _ := endpoint("registry.example.com", "x"); base != "https://registry.example.com" {
		t.Fatalf("remote endpoint = %s", base)
	}
}

func TestHostNormalisation(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"localhost:5001": "127.0.0.1:5001", "127.0.0.1:5001": "127.0.0.1:5001", "[::1]:5001": "127.0.0.1:5001",
		"0.0.0.0:5001": "127.0.0.1:5001", "Registry.Example.com": "registry.example.com", ":5001": "127.0.0.1:5001",
	} {
		if got := normalizeHost(in); got != want {
			t.Errorf("normalizeHost(%q) = %q, want %q", in, got, want)
		}
	}
	got := hostSpellings("127.0.0.1:5001")
	for _, want := range []string{"127.0.0.1:5001", "localhost:5001", "[::1]:5001"} {
		found := false
		for _, g := range got {
			found = found || g == want
		}
		if !found {
			t.Errorf("hostSpellings lacks %s: %v", want, got)
		}
	}
}
