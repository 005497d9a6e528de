// Package testenv provides what the integration tests of several packages
// need alike: the rule for missing dependencies (the engine of DOCKER_HOST,
// external tools, the tutorial's sample repositories), commands, temporary
// databases and stores, a throw-away docker-registry process on 127.0.0.1
// (and waiting for an HTTP server to answer), log buffers, a settable
// clock, file trees in a temporary directory and the medians benchmarks
// report. Everything a helper starts is stopped in t.Cleanup, also when the
// test fails.
//
// Only tests import testenv. It imports no domain package but internal/db
// and internal/store, so that the internal tests of every other package
// can use it; helpers that need auth, vault or registry are in
// internal/testenv/stack.
//
// A test whose dependency is missing skips, unless
// GANTRY_REQUIRE_INTEGRATION=1 (set by scripts/test.sh and CI), in which
// case it fails.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Require skips the test (or, with GANTRY_REQUIRE_INTEGRATION=1, fails it)
// with the reason why an integration dependency is missing.
func Require(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("GANTRY_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("%s (GANTRY_REQUIRE_INTEGRATION=1)", msg)
	}
	t.Skip(msg)
}

// DockerHost returns DOCKER_HOST, requiring it (see Require).
func DockerHost(t testing.TB) string {
	t.Helper()
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		Require(t, "DOCKER_HOST is not set: no docker engine to test against")
	}
	return host
}

// HasEngine reports whether a test should use the engine: DOCKER_HOST is
// set, or GANTRY_REQUIRE_INTEGRATION=1 demands it (then DockerHost fails
// the test). For tests that run with and without an engine.
func HasEngine() bool {
	return os.Getenv("DOCKER_HOST") != "" || os.Getenv("GANTRY_REQUIRE_INTEGRATION") == "1"
}

// Tool returns the path of an external tool: the repository's .tools/bin
// (where scripts/tools.sh installs pinned versions) first, else PATH. It
// requires the tool (see Require).
func Tool(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(root(), ".tools", "bin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	Require(t, "%s not found (run scripts/tools.sh or install it)", name)
	return ""
}

// root is the repository's root directory.
func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Samples returns the directory of the tutorial's sample repositories
// (testdata/fixtures/seed-samples), or the path elem below it, requiring
// it (see Require).
func Samples(t testing.TB, elem ...string) string {
	t.Helper()
	dir := filepath.Join(append([]string{root(), "testdata", "fixtures", "seed-samples"}, elem...)...)
	if _, err := os.Stat(dir); err != nil {
		Require(t, "fixtures not found at %s", dir)
	}
	return dir
}

// Run runs a command with env added to this process's environment and
// returns its combined output, failing t with that output when it fails.
func Run(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// RandomHex returns n random bytes, hex-encoded (names, passwords).
func RandomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Buffer is a bytes.Buffer safe for concurrent writes: a log sink, or the
// stdout and stderr of a process.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Clock is a settable clock for code that takes a func() time.Time: it
// stands still until Advance moves it.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock that reads t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// WaitFor polls cond every 20 ms until it holds, and fails the test,
// naming what it waited for, when timeout passes first.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Get returns the status and body of GET url, failing the test when the
// request fails.
func Get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}
