package engine

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestUntarStaysInside: a workspace copied back from a step container
// cannot write outside the directory it is unpacked into, through a link a
// step left (also one whose target's subdirectories do not exist yet) or a
// hard link with ../ in its name.
func TestUntarStaysInside(t *testing.T) {
	outside := t.TempDir()
	entries := map[string][]*tar.Header{
		"through a link": {
			{Name: "esc", Typeflag: tar.TypeSymlink, Linkname: outside},
			{Name: "esc/new/f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3},
		},
		"through a relative link": {
			{Name: "a/", Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: "a/up", Typeflag: tar.TypeSymlink, Linkname: "../../../../../../../../.." + outside},
			{Name: "a/up/f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3},
		},
		"hard link out": {
			{Name: "h", Typeflag: tar.TypeLink, Linkname: "../../../../../../etc/hostname"},
		},
		"dot-dot name": {
			{Name: "../f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3},
		},
	}
	for name, hs := range entries {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, h := range hs {
				if err := tw.WriteHeader(h); err != nil {
					t.Fatal(err)
				}
				if h.Size > 0 {
					tw.Write([]byte("bad"))
				}
			}
			tw.Close()
			dir := t.TempDir()
			if err := untar(&buf, dir); err == nil {
				t.Errorf("untar accepted the archive")
			}
			left, _ := os.ReadDir(outside)
			if len(left) > 0 {
				t.Errorf("written outside: %v", left)
			}
		})
	}
	// Links that stay inside still work.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "d/f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2})
	tw.Write([]byte("ok"))
	tw.WriteHeader(&tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "d"})
	tw.WriteHeader(&tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "d/f"})
	tw.Close()
	dir := t.TempDir()
	if err := untar(&buf, dir); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "l", "f")); err != nil || string(b) != "ok" {
		t.Errorf("l/f = %q, %v", b, err)
	}
}
