package plan_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/plan"
	"github.com/gantryhq/gantry/internal/taskfile"
)

// FuzzPlan renders and plans arbitrary task files: no input may panic, and every
// error must wrap one of taskfile's sentinels.
func FuzzPlan(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.plantest")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		input, _, _ := strings.Cut(string(data), separator)
		f.Add(input)
	}
	for _, tt := range invalidFiles {
		f.Add(tt.src)
	}
	f.Fuzz(func(t *testing.T, src string) {
		r, err := taskfile.Render(context.Background(), []byte(src), taskfile.Options{
			Run:             taskfile.Run{ID: "ca1", Registry: "127.0.0.1:5001"},
			ResolveSecret:   func(_ context.Context, id, _ string) (string, error) { return "v-" + id, nil },
			ReadAliasSource: func(context.Context, string) ([]byte, error) { return []byte("a: b"), nil },
		})
		if err != nil {
			if !errors.Is(err, taskfile.ErrInvalid) && !errors.Is(err, taskfile.ErrValues) &&
				!errors.Is(err, taskfile.ErrSecret) && !errors.Is(err, taskfile.ErrAliasSource) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		p, err := plan.New(r)
		if err != nil {
			if !errors.Is(err, taskfile.ErrInvalid) {
				t.Fatalf("plan error wraps no sentinel: %v", err)
			}
			return
		}
		_ = p.String()
		for i, s := range p.Steps {
			for _, parent := range s.Parents {
				if j, ok := indexOf(p, parent); !ok || j >= i {
					t.Fatalf("step %s depends on %q, not an earlier step", s.ID, parent)
				}
			}
			if (s.Cmd != nil) == (s.Build != nil) && (s.Cmd != nil || s.Push == nil) {
				t.Fatalf("step %s has not exactly one of cmd, build, push", s.ID)
			}
		}
	})
}

func indexOf(p *plan.Plan, id string) (int, bool) {
	for i, s := range p.Steps {
		if s.ID == id {
			return i, true
		}
	}
	return 0, false
}
