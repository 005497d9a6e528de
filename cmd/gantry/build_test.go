package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The tests of this package build the gantry binary the way a release is
// built (scripts/build.sh) and check what it says about itself and, in
// image_test.go, the image scripts/image.sh makes of it.

// root is the repository root, relative to this package.
const root = "../.."

var (
	// binDir holds the binaries the tests build; TestMain removes it.
	binDir string
	// started is when the process started, before any build.
	started = time.Now()
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gantry-build-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var script struct {
	once sync.Once
	path string
	err  error
}

// scriptBinary returns the gantry binary scripts/build.sh builds, once per
// process.
func scriptBinary(t *testing.T) string {
	t.Helper()
	script.once.Do(func() {
		path := filepath.Join(binDir, "script", "gantry")
		cmd := exec.Command(filepath.Join(root, "scripts", "build.sh"), path)
		cmd.Env = withoutEnv(os.Environ(), "VERSION", "COMMIT", "DATE", "SOURCE_DATE_EPOCH")
		if out, err := cmd.CombinedOutput(); err != nil {
			script.err = fmt.Errorf("scripts/build.sh: %w\n%s", err, out)
			return
		}
		script.path = path
	})
	if script.err != nil {
		t.Fatal(script.err)
	}
	return script.path
}

// withoutEnv returns environ without the variables named.
func withoutEnv(environ []string, names ...string) []string {
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, n := range names {
			drop = drop || k == n
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}

// runVersion runs `bin --version` and `bin version -o json` with no server
// to ask and no saved login, and returns both outputs.
func runVersion(t *testing.T, bin string) (line string, fields map[string]string) {
	t.Helper()
	env := append(withoutEnv(os.Environ(), "GANTRY_USERNAME", "GANTRY_PASSWORD", "GANTRY_TOKEN"),
		"GANTRY_SERVER=http://127.0.0.1:1", "GANTRY_CONFIG_DIR="+t.TempDir())
	run := func(args ...string) []byte {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gantry %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	line = strings.TrimSuffix(string(run("--version")), "\n")
	if err := json.Unmarshal(run("version", "-o", "json"), &fields); err != nil {
		t.Fatalf("gantry version -o json: %v", err)
	}
	return line, fields
}

// TestVersionLdflags: the version, commit and date set with -ldflags -X are
// what gantry version and gantry --version print.
func TestVersionLdflags(t *testing.T) {
	t.Parallel()
	const (
		pkg     = "github.com/gantryhq/gantry/internal/buildinfo"
		version = "1.2.3-rc.1"
		commit  = "0123456789abcdef0123456789abcdef01234567"
		date    = "2026-12-04T19:00:00Z"
	)
	bin := filepath.Join(t.TempDir(), "gantry")
	cmd := exec.Command("go", "build", "-o", bin,
		"-ldflags", fmt.Sprintf("-X %s.version=v%s -X %s.commit=%s -X %s.date=%s", pkg, version, pkg, commit, pkg, date),
		".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	line, fields := runVersion(t, bin)
	if want := "gantry 1.2.3-rc.1 (commit 0123456789ab, built 2026-12-04T19:00:00Z)"; line != want {
		t.Errorf("gantry --version = %q, want %q", line, want)
	}
	want := map[string]string{"client": version, "commit": commit, "date": date}
	if fmt.Sprint(fields) != fmt.Sprint(want) {
		t.Errorf("gantry version = %v, want %v (and no server: none answers)", fields, want)
	}
}

// TestBuildScript: scripts/build.sh stamps a semantic version, the commit
// checked out and the time of the build, and the binary is static.
func TestBuildScript(t *testing.T) {
	t.Parallel()
	bin := scriptBinary(t)
	line, fields := runVersion(t, bin)

	if !regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$`).MatchString(fields["client"]) {
		t.Errorf("version %q is not semantic", fields["client"])
	}
	rev, dirty := strings.CutSuffix(fields["commit"], "-dirty")
	if head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output(); err != nil {
		t.Logf("no git to check the commit against: %v", err)
	} else if rev != strings.TrimSpace(string(head)) {
		t.Errorf("commit %q, want HEAD %s", fields["commit"], head)
	}
	when, err := time.Parse(time.RFC3339, fields["date"])
	if err != nil || when.Before(started.Truncate(time.Second)) || when.After(time.Now()) || !strings.HasSuffix(fields["date"], "Z") {
		t.Errorf("date %q: not the time of the build in UTC (%v)", fields["date"], err)
	}
	short := rev[:min(12, len(rev))]
	if dirty {
		short += "-dirty"
	}
	if want := fmt.Sprintf("gantry %s (commit %s, built %s)", fields["client"], short, fields["date"]); line != want {
		t.Errorf("gantry --version = %q, want %q", line, want)
	}

	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath=true"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("go version -m %s: no %s\n%s", bin, want, out)
		}
	}
}
