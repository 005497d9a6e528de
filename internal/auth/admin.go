package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/argon2"
)

// AdminUsername is the user name of the admin account.
const AdminUsername = "admin"

// AdminPasswordFile is the file, in the data directory, that receives the
// admin password generated on first start when none is configured.
const AdminPasswordFile = "admin-password"

// AdminSetup reports what EnsureAdmin did.
type AdminSetup struct {
	// Principal is the admin's principal ID.
	Principal string
	// Created is true when this call created the admin user.
	Created bool
	// PasswordFile is the path of the file this call wrote the generated
	// password to (0600), or empty. The server prints it.
	PasswordFile string
	// PasswordChanged is true when an existing admin's password was replaced
	// by the configured one.
	PasswordChanged bool
}

// EnsureAdmin creates the admin user on first start. password is the
// configured admin password (GANTRY_ADMIN_PASSWORD), read by the caller;
// when it is empty a random password is generated and written to
// dataDir/admin-password (0600). When the admin exists and a configured
// password is given that does not match, the stored password is replaced:
// the configuration is the way to recover a lost admin password.
func (s *Service) EnsureAdmin(ctx context.Context, password, dataDir string) (AdminSetup, error) {
	var id, hash string
	err := s.db.W.QueryRowContext(ctx, `SELECT principal_id, password_hash FROM users WHERE name = ?`, AdminUsername).Scan(&id, &hash)
	switch {
	case err == nil:
		if password == "" || s.verifyPasswordHash(hash, password) {
			return AdminSetup{Principal: id}, nil
		}
		_, err := s.db.W.ExecContext(ctx, `UPDATE users SET password_hash = ?, updated_at = ? WHERE principal_id = ?`,
			s.hashPassword(password), timeText(s.now()), id)
		if err != nil {
			return AdminSetup{}, fmt.Errorf("updating admin password: %w", err)
		}
		s.changed(ctx, "admin password replaced by the configured one")
		return AdminSetup{Principal: id, PasswordChanged: true}, nil
	case !errors.Is(err, sql.ErrNoRows):
		return AdminSetup{}, fmt.Errorf("reading admin user: %w", err)
	}

	setup := AdminSetup{Principal: uuid.NewString(), Created: true}
	if password == "" {
		if dataDir == "" {
			return AdminSetup{}, fmt.Errorf("no admin password and no data directory to write one to: %w", ErrInvalid)
		}
		password = base64.RawURLEncoding.EncodeToString(randomBytes(24))
		path := filepath.Join(dataDir, AdminPasswordFile)
		// A file left over from an earlier database is replaced.
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return AdminSetup{}, fmt.Errorf("replacing admin password file: %w", err)
		}
		if err := writeNewFile(path, []byte(password+"\n")); err != nil {
			return AdminSetup{}, fmt.Errorf("writing admin password file: %w", err)
		}
		setup.PasswordFile = path
	}
	now := timeText(s.now())
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO principals(id, kind, name, created_at) VALUES (?, 'user', ?, ?)`,
			setup.Principal, AdminUsername, now); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO users(principal_id, name, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`,
			setup.Principal, AdminUsername, s.hashPassword(password), now, now)
		return err
	})
	if err != nil {
		return AdminSetup{}, fmt.Errorf("creating admin user: %w", err)
	}
	s.changed(ctx, "admin user created", "principal", setup.Principal)
	return setup, nil
}

type adminRecord struct {
	id   string
	hash string
	ref  string // fingerprint of the hash: bearer and refresh tokens carry it
}

func (s *Service) adminRecord(ctx context.Context) (*adminRecord, error) {
	return cached(s, s.admin, "", func() (*adminRecord, error) {
		var rec adminRecord
		err := s.db.R.QueryRowContext(ctx, `SELECT principal_id, password_hash FROM users WHERE name = ?`, AdminUsername).Scan(&rec.id, &rec.hash)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading admin user: %w", err)
		}
		sum := sha256.Sum256([]byte(rec.hash))
		rec.ref = hex.EncodeToString(sum[:12])
		return &rec, nil
	})
}

// adminVerifiedTTL is how long a successful admin password verification is
// remembered. The entry is keyed by the stored hash as well as the password
// (a keyed hash of both), and the admin record is re-read after every change
// (Invalidate), so a replaced password never matches an old entry: entries
// need no generation, and other changes (a new token) do not drop them.
const adminVerifiedTTL = 2 * time.Minute

// verifyAdmin checks the admin password. A recent successful verification
// is remembered under a keyed hash of the password and the stored hash, so
// per-request Basic authentication does not pay for argon2id each time,
// and concurrent logins with the same password wait for the first one's
// verification instead of each computing the hash. Otherwise the argon2id
// hash is computed through the hash gate, which bounds the hashes computed
// at once; admit is called once a slot is taken, right before hashing, and
// refuses a client locked out meanwhile.
func (s *Service) verifyAdmin(ctx context.Context, password string, admit func() error) (session, error) {
	rec, err := s.adminRecord(ctx)
	if err != nil {
		return session{}, err
	}
	if rec == nil {
		// No admin yet: an unknown user costs as much as a wrong password.
		err := s.slowHash(ctx, admit, func() { s.verifyPasswordHash(s.dummyPasswordHash(), password) })
		if err != nil {
			return session{}, err
		}
		return session{}, errBadCredentials
	}
	ok := session{kind: KindAdmin, principal: rec.id, name: AdminUsername, ref: rec.ref}
	key := string(s.cacheMAC(rec.hash, password))
	verified := func() bool {
		_, hit := s.adminOK.get(key, 0, s.now(), adminVerifiedTTL)
		return hit
	}
	if verified() {
		return ok, nil
	}
	// Wait once for a verification of the same password in progress; if
	// it failed (or its client gave up), verify on our own.
	s.verifyingMu.Lock()
	wait, inProgress := s.verifying[key]
	if !inProgress {
		s.verifying[key] = make(chan struct{})
	}
	s.verifyingMu.Unlock()
	if inProgress {
		select {
		case <-wait:
		case <-ctx.Done():
			return session{}, fmt.Errorf("admin login: %w", ctx.Err())
		}
		if verified() {
			return ok, nil
		}
	} else {
		defer func() {
			s.verifyingMu.Lock()
			close(s.verifying[key])
			delete(s.verifying, key)
			s.verifyingMu.Unlock()
		}()
	}
	now := s.now()
	good := false
	if err := s.slowHash(ctx, admit, func() { good = s.verifyPasswordHash(rec.hash, password) }); err != nil {
		return session{}, err
	}
	if !good {
		return session{}, errBadCredentials
	}
	s.adminOK.put(key, struct{}{}, 0, now)
	return ok, nil
}

// slowHash runs hash, which computes a password hash, in a slot of the hash
// gate, once admit lets the client in.
func (s *Service) slowHash(ctx context.Context, admit func() error, hash func()) error {
	release, err := s.gate.enter(ctx)
	if err != nil {
		return fmt.Errorf("admin login: %w", err)
	}
	defer release()
	if err := admit(); err != nil {
		return err
	}
	hash()
	return nil
}

func (s *Service) cacheMAC(stored, password string) []byte {
	return hmacSum(s.cacheKey, stored+"\x00"+password)
}

// argonParams are argon2id parameters.
type argonParams struct {
	memory  uint32 // KiB
	time    uint32
	threads uint8
	keyLen  uint32
	saltLen uint32
}

var defaultArgon = argonParams{memory: 19456, time: 2, threads: 1, keyLen: 32, saltLen: 16}

// hashPassword returns the argon2id hash of pw in PHC string format.
func (s *Service) hashPassword(pw string) string {
	p := s.hashParams
	salt := randomBytes(int(p.saltLen))
	s.hashes.Add(1)
	key := argon2.IDKey([]byte(pw), salt, p.time, p.memory, p.threads, p.keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memory, p.time, p.threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// verifyPasswordHash checks pw against a PHC argon2id hash in constant time.
func (s *Service) verifyPasswordHash(encoded, pw string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false
	}
	var p argonParams
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.memory, &p.time, &p.threads); err != nil {
		return false
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(want) == 0 {
		return false
	}
	s.hashes.Add(1)
	s.compares.Add(1)
	got := argon2.IDKey([]byte(pw), salt, p.time, p.memory, p.threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// dummyPasswordHash is verified against when there is no admin yet, so an
// unknown user costs as much as a wrong password.
func (s *Service) dummyPasswordHash() string {
	s.dummyOnce.Do(func() { s.dummyHash = s.hashPassword(string(randomBytes(16))) })
	return s.dummyHash
}
