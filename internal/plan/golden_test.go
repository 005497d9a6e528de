package plan_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/plan"
	"github.com/gantryhq/gantry/internal/taskfile"
)

var update = flag.Bool("update", false, "rewrite the expected output of testdata/*.plantest")

// separator splits a .plantest file into the task file and the expected plan.
const separator = "\n----------\n"

// TestGolden renders every testdata/*.plantest task file and compares the plan (or
// the error) with the expected text after the separator. Run with -update to
// rewrite the expectations.
//
// The task file may start with directive comments (full-line comments are ignored by
// the renderer, so line numbers stay those of the file):
//
//	#! file NAME              file name used in problems
//	#! run KEY=VALUE          run data (ID, Registry, RegistryName, Date as RFC 3339,
//	                          OS, Architecture, Commit, Branch, TaskName, SharedVolume)
//	#! set KEY=VALUE          a --set value
//	#! values YAML            the values file, on one line (flow style)
//	#! secret URI=VALUE       what the secret resolver returns for URI
//	#! source NAME YAML       an alias src file, on one line
//	#! image-alias NAME=IMAGE replaces the default image aliases (repeatable)
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.plantest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".plantest"), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, want, ok := strings.Cut(string(data), separator)
			if !ok && !*update {
				t.Fatalf("%s: no %q separator", file, strings.TrimSpace(separator))
			}
			got := renderPlan(t, input)
			if *update {
				if err := os.WriteFile(file, []byte(input+separator+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("%s: plan differs (run go test ./internal/plan -run TestGolden -update and review the diff)\n--- got\n%s\n--- want\n%s", file, got, want)
			}
		})
	}
}

// renderPlan renders input with the options its directives describe and returns
// the plan's text, or "error: " and the error.
func renderPlan(t *testing.T, input string) string {
	t.Helper()
	opts := taskfile.Options{
		File: "acr-task.yaml",
		Run: taskfile.Run{
			ID:           "ca1",
			Registry:     "127.0.0.1:5001",
			RegistryName: "contosobaseartifacts",
			Date:         time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
			OS:           "linux",
			Architecture: "amd64",
			SharedVolume: "gantry_ca1_workspace",
		},
	}
	secrets := map[string]string{}
	sources := map[string]string{}
	for _, line := range strings.Split(input, "\n") {
		d, ok := strings.CutPrefix(line, "#! ")
		if !ok {
			continue
		}
		verb, arg, _ := strings.Cut(d, " ")
		k, v, _ := strings.Cut(arg, "=")
		switch verb {
		case "file":
			opts.File = arg
		case "set":
			opts.Set = append(opts.Set, arg)
		case "values":
			opts.Values = []byte(arg)
		case "secret":
			secrets[k] = v
		case "source":
			name, yaml, _ := strings.Cut(arg, " ")
			sources[name] = yaml
		case "image-alias":
			if opts.ImageAliases == nil {
				opts.ImageAliases = map[string]string{}
			}
			opts.ImageAliases[k] = v
		case "run":
			setRun(t, &opts.Run, k, v)
		default:
			t.Fatalf("unknown directive %q", line)
		}
	}
	opts.ResolveSecret = func(_ context.Context, id, uri string) (string, error) {
		v, ok := secrets[uri]
		if !ok {
			return "", fmt.Errorf("secret %s not found", uri)
		}
		return v, nil
	}
	opts.ReadAliasSource = func(_ context.Context, src string) ([]byte, error) {
		v, ok := sources[src]
		if !ok {
			return nil, fmt.Errorf("%s: no such file", src)
		}
		return []byte(v), nil
	}
	r, err := taskfile.Render(context.Background(), []byte(input), opts)
	if err != nil {
		return "error: " + err.Error() + "\n"
	}
	p, err := plan.New(r)
	if err != nil {
		return "error: " + err.Error() + "\n"
	}
	return p.String()
}

// setRun sets the field k of r to v, parsing v as RFC 3339 for Date.
func setRun(t *testing.T, r *taskfile.Run, k, v string) {
	t.Helper()
	if k == "Date" {
		d, err := time.Parse(time.RFC3339, v)
		if err != nil {
			t.Fatal(err)
		}
		r.Date = d
		return
	}
	fields := map[string]*string{
		"ID": &r.ID, "Registry": &r.Registry, "RegistryName": &r.RegistryName,
		"OS": &r.OS, "Architecture": &r.Architecture, "Commit": &r.Commit,
		"Branch": &r.Branch, "TaskName": &r.TaskName, "SharedVolume": &r.SharedVolume,
	}
	f, ok := fields[k]
	if !ok {
		t.Fatalf("unknown run field %q", k)
	}
	*f = v
}
