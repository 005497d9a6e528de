package demo

import (
	"context"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/taskfile"
)

// TestAddScanStep: stage 6's edit of the seed's gate task file (CRLF line
// endings) inserts the scan step before the promotion, which then waits
// for it, and the result is a valid task file.
func TestAddScanStep(t *testing.T) {
	seed, err := samples.ReadFile("samples/import-baseimage-node/acr-task.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := string(addScanStep(seed))
	if got == string(seed) {
		t.Fatal("addScanStep left the task file unchanged")
	}
	scan := strings.Index(got, "  - id: scan-base-image\r\n")
	retag := strings.Index(got, "  - id: retag-base-image\r\n")
	if scan < 0 || retag < scan || !strings.Contains(got[retag:], "when: ['scan-base-image']") ||
		strings.Count(got, "\n") != strings.Count(got, "\r\n") {
		t.Fatalf("edited task file:\n%s", got)
	}
	r, err := taskfile.Render(context.Background(), []byte(got), taskfile.Options{
		Set: []string{"REGISTRY_FROM_URL=127.0.0.1:5001/"}, Run: taskfile.Run{Registry: "127.0.0.1:5002", ID: "qu1"}})
	if err != nil {
		t.Fatalf("the edited task file does not render: %v", err)
	}
	if !strings.Contains(r.Text, "gantry scan 127.0.0.1:5001/node:15-alpine --fail-on high") {
		t.Fatalf("rendered:\n%s", r.Text)
	}
}
