package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/testenv"
)

// TestSystemdUnit checks deploy/gantry.service with systemd-analyze, which
// needs no running systemd: verify (syntax, known settings, an executable
// ExecStart, here this test binary in gantry's place) and security (the
// exposure level of the sandbox stays at most 2.5 of 10).
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	analyze := testenv.Tool(t, "systemd-analyze")
	b, err := os.ReadFile(filepath.Join(root, "deploy", "gantry.service"))
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "ExecStart=/usr/local/bin/gantry server ") {
		t.Fatal("gantry.service: ExecStart is not /usr/local/bin/gantry server ...")
	}
	unit := filepath.Join(t.TempDir(), "gantry.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/gantry", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", unit).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	if out, err := exec.Command(analyze, "security", "--offline=true", "--threshold=25", unit).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze security: %v\n%s", err, out)
	}
}
