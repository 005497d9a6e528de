package vault

import (
	"crypto/rand"
	"errors"
	"fmt"
)

// sealVersion prefixes sealed values so the format can change later.
const sealVersion = 1

// errOpen is returned when sealed data fails authentication.
var errOpen = errors.New("sealed value fails authentication (tampered, moved or sealed under another key)")

// Seal encrypts a secret another domain stores itself (a task's git token,
// a plain-text registry password) under the vault master key. binding is
// authenticated but not encrypted: it ties the ciphertext to its owner (e.g.
// "task/<id>/git-token"), so a sealed value copied to another row does not
// open.
func (s *Service) Seal(plaintext []byte, binding string) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("sealing: %w", err)
	}
	out := append([]byte{sealVersion}, nonce...)
	return s.aead.Seal(out, nonce, plaintext, []byte("seal\x00"+binding)), nil
}

// Open decrypts a value made by Seal with the same binding.
func (s *Service) Open(sealed []byte, binding string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n || sealed[0] != sealVersion {
		return nil, fmt.Errorf("opening sealed value: %w", errOpen)
	}
	plain, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte("seal\x00"+binding))
	if err != nil {
		return nil, fmt.Errorf("opening sealed value: %w", errOpen)
	}
	return plain, nil
}
