package cli

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/httpapi"
	"github.com/gantryhq/gantry/internal/instance"
	"github.com/gantryhq/gantry/internal/testenv"
	"github.com/gantryhq/gantry/internal/testenv/stack"
)

// executeWithContainers runs the real command line.
func executeWithContainers(ctx context.Context, args []string, out, errOut io.Writer) int {
	return Execute(ctx, args, strings.NewReader(""), out, errOut)
}

// startContainerServer starts an in-process control API with a real
// instance manager on the engine and points the CLI at it as admin. It
// returns an image in a registry that requires authentication (busybox
// httpd serving "$MSG" on $PORT and printing "serving on $PORT"), that
// registry, and the server log.
func startContainerServer(t *testing.T) (image string, reg *dockertest.Registry, serverLog *testenv.Buffer) {
	t.Helper()
	engine := dockertest.Engine(t)
	dockertest.Sweep(t, engine)
	reg = dockertest.StartRegistry(t, true)
	ctx := t.Context()

	// The app: busybox httpd serving "<MSG>" on $PORT.
	local := dockertest.Name(t, "app") + ":1"
	dockertest.BuildImage(t, engine, local, map[string]string{
		"Dockerfile": "FROM " + dockertest.BusyboxImage(t, engine, "") + "\nCMD [\"sh\", \"-c\", \"mkdir -p /www && echo \\\"$MSG\\\" > /www/index.html && echo serving on $PORT && exec httpd -f -p $PORT -h /www\"]\n",
	})
	image = reg.Host + "/hello-world:1"
	if err := engine.TagImage(ctx, local, image); err != nil {
		t.Fatal(err)
	}
	dockertest.RemoveImageOnCleanup(t, engine, image)
	if _, err := engine.PushImage(ctx, image, reg.Auth(), nil); err != nil {
		t.Fatal(err)
	}

	// The server.
	sk := stack.New(t, "")
	sk.Admin(t, "admin-password")
	d, st, au, vlt := sk.DB, sk.Store, sk.Auth, sk.Vault
	serverLog = &testenv.Buffer{}
	log := slog.New(slog.NewTextHandler(serverLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := instance.New(d, engine, vlt, instance.WithLogger(log), instance.WithLabels(dockertest.Labels(t)),
		instance.WithStopTimeout(time.Second), instance.WithDrainTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop(context.Background()) })
	srv := httptest.NewServer(httpapi.New(st, au, vlt, stack.NoRegistries{}, httpapi.WithContainers(m), httpapi.WithLogger(log)))
	t.Cleanup(srv.Close)

	useServer(t, srv.URL, auth.AdminUsername, "admin-password")
	return image, reg, serverLog
}

// TestContainerCommands runs `gantry container ...` through the real root
// command against an in-process control API with a real instance manager
// on the engine.
func TestContainerCommands(t *testing.T) {
	image, reg, serverLog := startContainerServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var allOutput strings.Builder
	run := func(wantCode int, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		code := executeWithContainers(ctx, args, &out, &errOut)
		allOutput.WriteString(out.String() + errOut.String())
		if code != wantCode {
			t.Fatalf("gantry %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, wantCode, out.String(), errOut.String())
		}
		return out.String() + errOut.String()
	}

	// The tutorial's deploy step, az flags included.
	out := run(1, "container", "create", "--resource-group", "rg", "-n", "web", "--image", image,
		"--registry-username", reg.Username, "--registry-password", "wrong-"+reg.Password, "--ip-address", "public", "--ports", "80")
	if !strings.Contains(out, "ERROR:") {
		t.Errorf("wrong password: %s", out)
	}
	out = run(0, "container", "create", "--resource-group", "rg", "-n", "web", "--image", image,
		"--registry-username", reg.Username, "--registry-password", reg.Password, "--ip-address", "public", "--ports", "80",
		"-e", "MSG=hello", "--secure-environment-variables", "API_KEY=k3y")
	if !strings.Contains(out, `"operation": "Created"`) || !strings.Contains(out, `"state": "Running"`) {
		t.Errorf("create output:\n%s", out)
	}
	url := strings.TrimSpace(run(0, "container", "show", "-n", "web", "--query", "ipAddress.url", "-o", "tsv"))
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("url = %q", url)
	}
	if got := fetch(t, url); got != "hello" {
		t.Errorf("GET %s = %q", url, got)
	}
	if out := run(0, "container", "list", "-o", "table"); !strings.Contains(out, "NAME") || !strings.Contains(out, "web") || !strings.Contains(out, url) {
		t.Errorf("list:\n%s", out)
	}

	// Deploy again with a new environment: replaced, same address; the
	// stored credentials pull again.
	out = run(0, "container", "create", "-n", "web", "--image", image, "-e", "MSG=world", "--query", "operation", "-o", "tsv")
	if strings.TrimSpace(out) != "Replaced" {
		t.Errorf("second create: %q", out)
	}
	if got := fetch(t, url); got != "world" {
		t.Errorf("GET %s after replace = %q", url, got)
	}
	if out := run(0, "container", "logs", "-n", "web"); !strings.Contains(out, "serving on") {
		t.Errorf("logs: %q", out)
	}
	// az's space-separated form: -e A=1 B=2 sets both.
	out = run(0, "container", "create", "-n", "web", "--image", image, "-e", "A=1", "B=2", "--query", "environmentVariables[].name", "-o", "tsv")
	if got := strings.Fields(out); len(got) != 2 || got[0] != "A" || got[1] != "B" {
		t.Errorf("space-separated env: %q", out)
	}

	run(0, "container", "delete", "-n", "web", "--yes")
	if out := run(1, "container", "show", "-n", "web"); !strings.Contains(out, "not found") {
		t.Errorf("show after delete: %q", out)
	}
	for _, secret := range []string{reg.Password, "k3y"} {
		if strings.Contains(allOutput.String(), secret) || strings.Contains(serverLog.String(), secret) {
			t.Errorf("a secret reached the CLI output or the server log")
		}
	}
}

// fetch returns the trimmed body of GET url.
func fetch(t *testing.T, url string) string {
	t.Helper()
	_, body := testenv.Get(t, url)
	return strings.TrimSpace(body)
}
