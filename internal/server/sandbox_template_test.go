package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/api"
)

// TestSandboxTemplateBudget (S7): a task file whose template would allocate
// without bound ({{ repeat 1000000000000 "x" }}, a range over until of the
// same count, many small untils) or loop without end fails its run at once
// (the loop at its time budget), with an error
// naming the position, the step and the expression, before any step runs;
// the server keeps answering on the control API and the registry. (Before
// the render budget, the first one killed the server: runtime: out of
// memory.)
func TestSandboxTemplateBudget(t *testing.T) {
	srv, base := startEngineServer(t, serverOptions{})
	host := srv.createRegistry("templates", false)
	adm := srv.admin()
	oci := newOCIClient(t, host, "admin", srv.adminPassword)
	pushTinyImage(t, oci, "app", "v1")
	ctx := context.Background()

	// want follows "acr-task.yaml:6:COL: ", COL being where at (in expr) is.
	tests := []struct {
		name, expr, at, want string
		within               time.Duration
	}{
		{"tmpl-repeat", `{{ repeat 1000000000000 "x" }}`, "repeat",
			`steps[1]: template: at <repeat 1000000000000 "x">: error calling repeat: over the render budget: the result would be 1000000000000 bytes, more than the 4 MiB a template function may produce`,
			30 * time.Second},
		{"tmpl-until", `{{ range until 1000000000000 }}x{{ end }}`, "until",
			`steps[1]: template: at <until 1000000000000>: error calling until: over the render budget: the result would have 1000000000000 elements, more than the 100000 a template function may produce`,
			30 * time.Second},
		// Each inner until is small enough; together they are not.
		{"tmpl-total", `{{ range until 100000 }}{{ range until 100000 }}{{ end }}{{ end }}`, "until 100000 }}{{ end",
			`steps[1]: template: at <until 100000>: error calling until: over the render budget: the template functions produced more than 64 MiB in total`,
			30 * time.Second},
		// A loop that allocates nothing stops at the time budget (5 s).
		{"tmpl-loop", `{{ range 1000000000000 }}{{ end }}`, "1000000000000",
			`steps[1]: template: at <range 1000000000000>: over the render budget: rendering took longer than 5s`,
			40 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := "    cmd: " + base + " echo " + tt.expr
			file := "version: v1.1.0\nsteps:\n  - id: first\n    cmd: " + base + " true\n  - id: big\n" + line + "\n"
			want := fmt.Sprintf("acr-task.yaml:6:%d: %s", strings.Index(line, tt.at), tt.want)
			if _, err := adm.CreateTask(ctx, "templates", api.CreateTaskRequest{Name: tt.name, File: "acr-task.yaml", FileContent: []byte(file)}); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			run, err := adm.RunTask(ctx, "templates", tt.name, api.RunTaskRequest{})
			if err != nil {
				t.Fatal(err)
			}
			run = finishedRun(t, adm, "templates", run.RunID)
			if d := time.Since(start); d > tt.within {
				t.Errorf("the run took %s to fail", d)
			}
			if run.Status != "Failed" || !strings.Contains(run.Error, want) {
				t.Errorf("run %s: %s %q\nwant Failed with %s", run.RunID, run.Status, run.Error, want)
			}
			for _, s := range run.Steps {
				if s.Status == "Succeeded" {
					t.Errorf("step %s ran", s.ID)
				}
			}

			// The server still answers.
			if _, err := adm.Version(ctx); err != nil {
				t.Errorf("GET /v1/version: %v", err)
			}
			if r := oci.do("GET", "/v2/app/manifests/v1", nil, map[string]string{"Accept": mtManifest}); r.status != 200 {
				t.Errorf("GET /v2/app/manifests/v1: %s", r)
			}
		})
	}
}
