package vault

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/gantryhq/gantry/internal/testenv"
)

func TestSealOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := New(testenv.DB(t, dir), filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("ghp_exampletoken")
	sealed, err := s.Seal(secret, "task/1/git-token")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) {
		t.Fatal("sealed value contains the plaintext")
	}
	got, err := s.Open(sealed, "task/1/git-token")
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := s.Open(sealed, "task/2/git-token"); err == nil {
		t.Fatal("opened a sealed value under another binding")
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := s.Open(sealed, "task/1/git-token"); err == nil {
		t.Fatal("opened a tampered value")
	}
	if _, err := s.Open([]byte{1, 2}, "x"); err == nil {
		t.Fatal("opened a short value")
	}
}
