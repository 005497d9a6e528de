package demo

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/testenv"
)

// TestSamplesAreTheSeeds: the repositories the demo runs are the
// tutorial's, byte for byte (testdata/fixtures/seed-samples is the copy of
// the seeds' sample repositories).
func TestSamplesAreTheSeeds(t *testing.T) {
	t.Parallel()
	seeds := filepath.Join("..", "..", "testdata", "fixtures", "seed-samples")
	n := 0
	err := filepath.WalkDir(seeds, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(seeds, p)
		want, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		got, err := samples.ReadFile("samples/" + filepath.ToSlash(rel))
		if err != nil {
			t.Errorf("the demo lacks %s: %v", rel, err)
			return nil
		}
		if !bytes.Equal(got, want) {
			t.Errorf("samples/%s differs from the seed", rel)
		}
		n++
		return nil
	})
	if err != nil || n < 8 {
		t.Fatalf("compared %d files: %v", n, err)
	}
}

// TestWalkthrough runs the whole demo on the real engine: every stage is
// asserted by Run itself (runs, triggers, the site's color, the gate's
// failure), so a nil error is the tutorial ending as it should.
func TestWalkthrough(t *testing.T) {
	out := walkthrough(t, false)
	t.Logf("\n%s", out)
}

// TestWalkthroughTLS runs the walkthrough over TLS with registry hostnames
// (gantry demo --tls): task files see .Run.Registry as
// contoso.gantry.test:PORT.
func TestWalkthroughTLS(t *testing.T) {
	var names []string
	for _, r := range Registries {
		names = append(names, r+"."+Domain)
	}
	testenv.Hosts(t, names...)
	out := walkthrough(t, true)
	for _, want := range []string{"-> contoso.gantry.test:", "the engine trusts the local CA for contoso.gantry.test:", "control API https://"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if !strings.Contains(out, "contoso.gantry.test:") || strings.Contains(out, "-> 127.0.0.1:") {
		t.Errorf("login servers not in hostname form:\n%s", out)
	}
	t.Logf("\n%s", out)
}

// walkthrough runs the demo and checks that it ends as the tutorial says.
func walkthrough(t *testing.T, overTLS bool) string {
	testenv.DockerHost(t)
	bin := filepath.Join(t.TempDir(), "gantry")
	build := exec.Command("go", "build", "-o", bin, "github.com/gantryhq/gantry/cmd/gantry")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building a static gantry: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var out bytes.Buffer
	printed := 0
	err := Run(ctx, Options{
		Engine:       docker.EndpointFromEnv(os.Getenv),
		GantryBinary: bin,
		Out:          &out,
		TLS:          overTLS,
		PrintRuns: func(w io.Writer, runs []api.Run) error {
			printed++
			for _, r := range runs {
				if _, err := io.WriteString(w, r.RunID+" "+r.Task+" "+r.Status+" "+r.Trigger+"\n"); err != nil {
					return err
				}
			}
			return nil
		},
	})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"background DeepSkyBlue", "background Orange", "background Green",
		"ERROR: Invalid Color: Red", "The walkthrough ended as the tutorial says",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if printed == 0 {
		t.Error("no list-runs tables printed")
	}
	return out.String()
}
