package keyfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "keys")
	k1, err := Load(dir, "a.key")
	if err != nil || len(k1) != 32 {
		t.Fatalf("Load = %x, %v", k1, err)
	}
	k2, err := Load(dir, "a.key")
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second Load = %x, %v; want the same key", k2, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "a.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	if err := os.Chmod(filepath.Join(dir, "a.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir, "a.key"); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "a.key")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file not tightened: %v", fi.Mode())
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.key"), []byte("nothex"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir, "bad.key"); err == nil {
		t.Fatal("Load accepted a malformed key")
	}
	if _, err := Load("", "x"); !errors.Is(err, ErrNoDir) {
		t.Fatalf("Load without dir = %v", err)
	}
	if err := WriteNew(filepath.Join(dir, "a.key"), []byte("x")); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("WriteNew over an existing file = %v, want fs.ErrExist", err)
	}
}
