package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// HostsFile is the file Hosts edits.
const HostsFile = "/etc/hosts"

// Hosts maps names (which must end in .gantry.test) to 127.0.0.1 in
// /etc/hosts for the test, in lines marked with the test's own tag, and
// removes exactly those lines when t ends, also on failure. Edits are
// serialised with other processes' by an flock on the file. Without the
// right to write the file the test skips (or fails: Require).
func Hosts(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if !strings.HasSuffix(n, ".gantry.test") && n != "gantry.test" {
			t.Fatalf("testenv.Hosts: %q is not a *.gantry.test name", n)
		}
	}
	lockNames(t)
	tag := "# gantry-test " + RandomHex(8)
	var add strings.Builder
	for _, n := range names {
		fmt.Fprintf(&add, "127.0.0.1 %s %s\n", n, tag)
	}
	if err := editHosts(func(s string) string {
		if s != "" && !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		return s + add.String()
	}); err != nil {
		Require(t, "mapping names in %s: %v", HostsFile, err)
		return
	}
	t.Cleanup(func() {
		if err := editHosts(func(s string) string {
			var keep []string
			for _, line := range strings.SplitAfter(s, "\n") {
				if !strings.HasSuffix(strings.TrimRight(line, "\n"), tag) {
					keep = append(keep, line)
				}
			}
			return strings.Join(keep, "")
		}); err != nil {
			t.Errorf("removing the test's names from %s: %v", HostsFile, err)
		}
	})
}

// namesLock is the file whose flock serialises the tests that map names
// (Hosts) and make the engine trust a CA (DockerTrust), across the test
// binaries `go test ./...` runs at once: two such tests at the same time
// once made the engine's BuildKit reject a registry's certificate in the
// TLS walkthrough, and rewriting /etc/hosts while a resolver reads it can
// show the resolver a torn file.
const namesLock = "/tmp/gantry-test-names.lock"

// lockNames holds namesLock until t ends (its cleanup runs after the
// cleanups registered later, which undo the test's names).
func lockNames(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(namesLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("testenv: locking %s: %v", namesLock, err)
	}
	t.Cleanup(func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	})
}

// editHosts rewrites /etc/hosts in place (it may be a bind mount, so it is
// not replaced by a rename) under an exclusive flock.
func editHosts(edit func(string) string) error {
	f, err := os.OpenFile(HostsFile, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	b, err := os.ReadFile(HostsFile)
	if err != nil {
		return err
	}
	// Written over the old content, then cut to length: a reader never
	// sees an empty file.
	out := edit(string(b))
	if _, err := f.WriteAt([]byte(out), 0); err != nil {
		return err
	}
	if err := f.Truncate(int64(len(out))); err != nil {
		return err
	}
	return f.Sync()
}

// DockerTrust makes the engine's Docker daemon trust the PEM CA for the
// registry host (host:port) for the test: /etc/docker/certs.d/HOST/ca.crt,
// removed when t ends (dockerd reads the directory at each connection).
func DockerTrust(t testing.TB, host string, caPEM []byte) {
	t.Helper()
	dir := filepath.Join("/etc/docker/certs.d", host)
	if _, err := os.Stat(dir); err == nil {
		t.Fatalf("testenv.DockerTrust: %s exists already", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		Require(t, "making the engine trust a CA: %v", err)
		return
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
}
