// Package keyfile keeps the server's secret keys in files of their own,
// apart from the database (DATA/keys, 0700, each key 0600): a copy of the
// database alone does not hold what decrypts or verifies its secrets.
package keyfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrNoDir is returned when no keys directory is given.
var ErrNoDir = errors.New("keys directory not set")

// Load reads the 32-byte hex key dir/name, creating it with a random key
// (0600, in a 0700 directory) if it does not exist. Two processes creating
// it at once end up with the same key. A key file readable by others is
// tightened to 0600.
func Load(dir, name string) ([]byte, error) {
	if dir == "" {
		return nil, ErrNoDir
	}
	path := filepath.Join(dir, name)
	for range 2 {
		b, err := os.ReadFile(path)
		if err == nil {
			key, err := hex.DecodeString(strings.TrimSpace(string(b)))
			if err != nil || len(key) != 32 {
				return nil, fmt.Errorf("key file %s: not a 32-byte hex key", path)
			}
			if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
				if err := os.Chmod(path, 0o600); err != nil {
					return nil, fmt.Errorf("restricting key file %s: %w", path, err)
				}
			}
			return key, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("reading key file: %w", err)
		}
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := WriteNew(path, []byte(hex.EncodeToString(key)+"\n")); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("creating key file: %w", err)
		}
	}
	return nil, fmt.Errorf("key file %s: could not create", path)
}

// WriteNew writes data to path with mode 0600, atomically (a synced
// temporary file hard-linked into place), failing with fs.ErrExist if path
// already exists.
func WriteNew(path string, data []byte) error { return WriteNewPerm(path, data, 0o600) }

// WriteNewPerm is WriteNew with the file mode perm (a public certificate
// beside its key, say).
func WriteNewPerm(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Link(tmp.Name(), path)
}
