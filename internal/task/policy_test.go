package task

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckContext(t *testing.T) {
	data := t.TempDir()
	root := t.TempDir()
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(data, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A link under a root that leads into the data directory.
	if err := os.Symlink(filepath.Join(data, "keys"), filepath.Join(root, "keys-link")); err != nil {
		t.Fatal(err)
	}
	s := &Service{dataDir: data, contextRoots: []string{root}}
	cases := []struct {
		context string
		admin   bool
		want    string // "" for allowed
	}{
		{filepath.Join(root, "app"), false, ""},
		{"file://" + filepath.Join(root, "app"), false, ""},
		{"https://github.com/contoso/app.git", false, ""},
		{outside, false, "is not under a context root"},
		{"file://" + outside + "#main", false, "is not under a context root"},
		{outside, true, ""},
		{filepath.Join(data, "keys"), false, "data directory"},
		{filepath.Join(data, "keys"), true, "data directory"},
		{filepath.Join(root, "keys-link"), false, "data directory"},
		{filepath.Join(root, "keys-link", "sub"), true, "data directory"},
		{filepath.Dir(data), true, "data directory"},
		{"relative/dir", false, "absolute path"},
		{filepath.Join(root, "app", "..", "..", filepath.Base(outside)), false, "is not under a context root"},
	}
	for _, c := range cases {
		err := s.checkContext(c.context, c.admin)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("checkContext(%q, admin=%v) = %v, want allowed", c.context, c.admin, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrInvalid)):
			t.Errorf("checkContext(%q, admin=%v) = %v, want an invalid error with %q", c.context, c.admin, err, c.want)
		}
	}
	none := &Service{dataDir: data}
	if err := none.checkContext(outside, false); err == nil || !strings.Contains(err.Error(), "--context-root") {
		t.Errorf("without roots: %v, want the setting named", err)
	}
}

// TestCreateRefusesEscalations: an inline task file asking for privileged:
// true on a registry the admin has not allowed is refused at create, naming
// the setting, and nothing is created; allowed, or when the file only
// renders in a run, it is accepted.
func TestCreateRefusesEscalations(t *testing.T) {
	e := newEnv(t, t.TempDir())
	ctx := t.Context()
	priv := []byte("version: v1.1.0\nsteps:\n  - cmd: busybox true\n    privileged: true\n")
	_, err := e.svc.CreateTask(ctx, CreateRequest{Registry: "contoso", Name: "privileged", File: "acr-task.yaml", FileContent: priv})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "gantry server --allow-privileged-steps contoso") ||
		!strings.Contains(err.Error(), "acr-task.yaml:4:17: steps[0].privileged") {
		t.Fatalf("create: %v, want the setting and the position named", err)
	}
	if _, err := e.svc.GetTask(ctx, "contoso", "privileged"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the refused task exists: %v", err)
	}
	// A host network for a step, or a network other than none for a
	// build's RUN, likewise.
	for name, file := range map[string]string{
		"hostnet":       "version: v1.1.0\nsteps:\n  - cmd: busybox true\n    network: host\n",
		"build-default": "version: v1.1.0\nsteps:\n  - build: --network default -t x:1 .\n",
		"build-peer":    "version: v1.1.0\nsteps:\n  - build: --network container:peer -t x:1 .\n",
	} {
		_, err := e.svc.CreateTask(ctx, CreateRequest{Registry: "contoso", Name: name, File: "acr-task.yaml", FileContent: []byte(file)})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "gantry server --allow-privileged-steps contoso") ||
			!strings.Contains(err.Error(), "acr-task.yaml:") {
			t.Errorf("create %s: %v, want the setting and the position named", name, err)
		}
		if _, err := e.svc.GetTask(ctx, "contoso", name); !errors.Is(err, ErrNotFound) {
			t.Errorf("the refused task %s exists: %v", name, err)
		}
	}
	// A file that needs its run to render is checked when it runs.
	later := []byte("version: v1.1.0\nsteps:\n  - cmd: busybox true\n    privileged: {{ required \"x\" .Values.x }}\n")
	if _, err := e.svc.CreateTask(ctx, CreateRequest{Registry: "contoso", Name: "rendered-later", File: "acr-task.yaml", FileContent: later}); err != nil {
		t.Errorf("create of a file that renders only in a run: %v", err)
	}
	e.svc.privileged = []string{"contoso"}
	if _, err := e.svc.CreateTask(ctx, CreateRequest{Registry: "contoso", Name: "privileged", File: "acr-task.yaml", FileContent: priv}); err != nil {
		t.Errorf("create on an allowed registry: %v", err)
	}
}
