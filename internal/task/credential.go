package task

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"

	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/vault"
)

var timerName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,50}$`)

// CredentialRequest adds or updates a task credential. Username and
// Password are plain text or vault URIs. UseIdentity "system" alone logs in
// with the task's identity; with a username and password, as in the
// tutorial, it says the identity reads their vault URIs (which is what task
// credentials always do).
type CredentialRequest struct {
	LoginServer string
	Username    string
	Password    string
	UseIdentity string
}

func (c CredentialRequest) validate() error {
	if c.LoginServer == "" {
		return invalid("loginServer", "must be set")
	}
	switch c.UseIdentity {
	case "", "system", "[system]":
	default:
		return invalid("useIdentity", "%q: only the system-assigned identity ([system]) is supported", c.UseIdentity)
	}
	if (c.Username == "") != (c.Password == "") {
		return invalid("username", "give both -u and -p, or neither (--use-identity [system] alone logs in with the task identity)")
	}
	if c.UseIdentity == "" && c.Username == "" {
		return invalid("username", "give -u and -p, or --use-identity [system]")
	}
	return nil
}

// AddCredential adds a registry login to a task; it fails if the login
// server already has one (ErrExists).
func (s *Service) AddCredential(ctx context.Context, registry, task string, c CredentialRequest) (*Task, error) {
	return s.putCredential(ctx, registry, task, c, false)
}

// UpdateCredential replaces a task's login for a server; it fails if there
// is none (ErrNotFound).
func (s *Service) UpdateCredential(ctx context.Context, registry, task string, c CredentialRequest) (*Task, error) {
	return s.putCredential(ctx, registry, task, c, true)
}

func (s *Service) putCredential(ctx context.Context, registry, task string, c CredentialRequest, update bool) (*Task, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	t, err := s.GetTask(ctx, registry, task)
	if err != nil {
		return nil, err
	}
	useID := ""
	if c.UseIdentity != "" {
		useID = "system"
		if t.Identity == "" {
			return nil, invalid("useIdentity", "task %s has no identity; create it with --assign-identity first", task)
		}
	}
	var pw []byte
	isURI := false
	switch {
	case c.Password == "":
	case vault.IsURI(c.Password):
		if _, err := vault.ParseURI(c.Password); err != nil {
			return nil, invalid("password", "%v", err)
		}
		pw, isURI = []byte(c.Password), true
	default:
		if pw, err = s.sealer.Seal([]byte(c.Password), sealContext(t.ID, "credential/"+c.LoginServer)); err != nil {
			return nil, err
		}
	}
	if vault.IsURI(c.Username) {
		if _, err := vault.ParseURI(c.Username); err != nil {
			return nil, invalid("username", "%v", err)
		}
	}
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM task_credentials WHERE task_id = ? AND login_server = ?`,
			t.ID, c.LoginServer).Scan(&n); err != nil {
			return err
		}
		switch {
		case update && n == 0:
			return fmt.Errorf("credential for %s on task %s: %w", c.LoginServer, task, ErrNotFound)
		case !update && n > 0:
			return fmt.Errorf("credential for %s on task %s (use update): %w", c.LoginServer, task, ErrExists)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO task_credentials(task_id, login_server, username, password, password_is_uri, use_identity)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(task_id, login_server) DO UPDATE SET username = excluded.username,
			password = excluded.password, password_is_uri = excluded.password_is_uri, use_identity = excluded.use_identity`,
			t.ID, c.LoginServer, c.Username, pw, isURI, useID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.GetTask(ctx, registry, task)
}

// RemoveCredential removes a task's login for a server.
func (s *Service) RemoveCredential(ctx context.Context, registry, task, loginServer string) (*Task, error) {
	t, err := s.GetTask(ctx, registry, task)
	if err != nil {
		return nil, err
	}
	res, err := s.db.W.ExecContext(ctx, `DELETE FROM task_credentials WHERE task_id = ? AND login_server = ?`, t.ID, loginServer)
	if err != nil {
		return nil, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, fmt.Errorf("credential for %s on task %s: %w", loginServer, task, ErrNotFound)
	}
	return s.GetTask(ctx, registry, task)
}

var isUnique = db.IsUniqueViolation
