package instance

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gantryhq/gantry/internal/db"
	"github.com/google/uuid"
)

// record is one row of container_instances, secrets still sealed.
type record struct {
	ID               string
	Name             string
	Image            string
	ImageID          string
	Spec             recordSpec
	SecureEnv        []byte // sealed JSON object, nil when none
	RegistryServer   string
	RegistryUsername string
	RegistryPassword []byte // sealed, nil when none
	Ports            []Binding
	ContainerID      string
	State            string
	UpdatedBy        string
	CreatedAt        time.Time
	UpdatedAt        time.Time
	// Principal is the principal ID of the caller that last set the
	// instance; CredentialPrincipal the one that gave the stored registry
	// credentials ("" when there are none, or for callers without one).
	// Both are kept in the spec column's JSON (see specColumn).
	Principal           string
	CredentialPrincipal string
}

// recordSpec is the JSON of the spec column.
type recordSpec struct {
	Command []string          `json:"command,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	// SecureEnvNames are the names of the sealed variables (the names are
	// not secret).
	SecureEnvNames []string `json:"secureEnvNames,omitempty"`
	CPU            float64  `json:"cpu,omitempty"`
	MemoryGB       float64  `json:"memoryGB,omitempty"`
	RestartPolicy  string   `json:"restartPolicy"`
}

// specColumn is the JSON of the spec column: the spec, and who set the
// instance and its credentials. (They share the column so that recording
// them needed no migration; an old row reads as set by no principal, whose
// stored credentials no authenticated caller reuses.)
type specColumn struct {
	recordSpec
	Principal           string `json:"principal,omitempty"`
	CredentialPrincipal string `json:"credentialPrincipal,omitempty"`
}

var (
	timeText  = db.FormatTime
	parseTime = db.ParseTime
)

// Sealing bindings: a sealed value only opens in the row it was made for.
func secureEnvBinding(id string) string { return "container-instance/" + id + "/secure-env" }
func passwordBinding(id string) string  { return "container-instance/" + id + "/registry-password" }

const recordColumns = `id, name, image, image_id, spec, secure_env, registry_server, registry_username,
	registry_password, ports, container_id, state, updated_by, created_at, updated_at`

func scanRecord(row interface{ Scan(...any) error }) (*record, error) {
	var r record
	var spec, ports, created, updated string
	err := row.Scan(&r.ID, &r.Name, &r.Image, &r.ImageID, &spec, &r.SecureEnv, &r.RegistryServer, &r.RegistryUsername,
		&r.RegistryPassword, &ports, &r.ContainerID, &r.State, &r.UpdatedBy, &created, &updated)
	if err != nil {
		return nil, err
	}
	var col specColumn
	if err := json.Unmarshal([]byte(spec), &col); err != nil {
		return nil, fmt.Errorf("container %q: stored spec: %w", r.Name, err)
	}
	r.Spec, r.Principal, r.CredentialPrincipal = col.recordSpec, col.Principal, col.CredentialPrincipal
	if err := json.Unmarshal([]byte(ports), &r.Ports); err != nil {
		return nil, fmt.Errorf("container %q: stored ports: %w", r.Name, err)
	}
	r.CreatedAt, r.UpdatedAt = parseTime(created), parseTime(updated)
	return &r, nil
}

// get returns the named record or an error wrapping ErrNotFound.
func (m *Manager) get(ctx context.Context, name string) (*record, error) {
	row := m.db.R.QueryRowContext(ctx, `SELECT `+recordColumns+` FROM container_instances WHERE name = ?`, name)
	r, err := scanRecord(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("container %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading container %q: %w", name, err)
	}
	return r, nil
}

// all returns every record, by name.
func (m *Manager) all(ctx context.Context) ([]*record, error) {
	rows, err := m.db.R.QueryContext(ctx, `SELECT `+recordColumns+` FROM container_instances ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	defer rows.Close()
	var out []*record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("listing containers: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	return out, nil
}

// names returns the names of every instance.
func (m *Manager) names(ctx context.Context) ([]string, error) {
	rows, err := m.db.R.QueryContext(ctx, `SELECT name FROM container_instances ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("listing containers: %w", err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	return out, nil
}

// save inserts or updates r (by ID).
func (m *Manager) save(ctx context.Context, r *record) error {
	spec, err := json.Marshal(specColumn{recordSpec: r.Spec, Principal: r.Principal, CredentialPrincipal: r.CredentialPrincipal})
	if err != nil {
		return fmt.Errorf("saving container %q: %w", r.Name, err)
	}
	ports, err := json.Marshal(r.Ports)
	if err != nil {
		return fmt.Errorf("saving container %q: %w", r.Name, err)
	}
	_, err = m.db.W.ExecContext(ctx, `INSERT INTO container_instances (`+recordColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET
			image = excluded.image, image_id = excluded.image_id, spec = excluded.spec,
			secure_env = excluded.secure_env, registry_server = excluded.registry_server,
			registry_username = excluded.registry_username, registry_password = excluded.registry_password,
			ports = excluded.ports, container_id = excluded.container_id, state = excluded.state,
			updated_by = excluded.updated_by, updated_at = excluded.updated_at`,
		r.ID, r.Name, r.Image, r.ImageID, string(spec), r.SecureEnv, r.RegistryServer, r.RegistryUsername,
		r.RegistryPassword, string(ports), r.ContainerID, r.State, r.UpdatedBy, timeText(r.CreatedAt), timeText(r.UpdatedAt))
	if err != nil {
		return fmt.Errorf("saving container %q: %w", r.Name, err)
	}
	return nil
}

// setState records the last observed state.
func (m *Manager) setState(ctx context.Context, id, state string) error {
	if _, err := m.db.W.ExecContext(ctx, `UPDATE container_instances SET state = ? WHERE id = ? AND state <> ?`, state, id, state); err != nil {
		return fmt.Errorf("recording container state: %w", err)
	}
	return nil
}

// remove deletes the record with the given ID.
func (m *Manager) remove(ctx context.Context, id string) error {
	if _, err := m.db.W.ExecContext(ctx, `DELETE FROM container_instances WHERE id = ?`, id); err != nil {
		return fmt.Errorf("deleting container record: %w", err)
	}
	return nil
}

// ownerID returns the owner ID of the database, creating it on first use.
func (m *Manager) ownerID(ctx context.Context) (string, error) {
	m.ownerMu.Lock()
	defer m.ownerMu.Unlock()
	if m.owner != "" {
		return m.owner, nil
	}
	if _, err := m.db.W.ExecContext(ctx, `INSERT OR IGNORE INTO container_instance_owner (id, owner) VALUES (1, ?)`, uuid.NewString()); err != nil {
		return "", fmt.Errorf("creating container owner ID: %w", err)
	}
	if err := m.db.W.QueryRowContext(ctx, `SELECT owner FROM container_instance_owner WHERE id = 1`).Scan(&m.owner); err != nil {
		return "", fmt.Errorf("reading container owner ID: %w", err)
	}
	return m.owner, nil
}

// openSecureEnv opens the sealed secure environment of r.
func (m *Manager) openSecureEnv(r *record) (map[string]string, error) {
	if len(r.SecureEnv) == 0 {
		return nil, nil
	}
	plain, err := m.sealer.Open(r.SecureEnv, secureEnvBinding(r.ID))
	if err != nil {
		return nil, fmt.Errorf("container %q: secure environment: %w", r.Name, err)
	}
	var env map[string]string
	if err := json.Unmarshal(plain, &env); err != nil {
		return nil, fmt.Errorf("container %q: secure environment: stored value is not a JSON object", r.Name)
	}
	return env, nil
}

func (m *Manager) sealSecureEnv(r *record, env map[string]string) error {
	r.SecureEnv = nil
	if len(env) == 0 {
		return nil
	}
	plain, err := json.Marshal(env)
	if err != nil {
		return err
	}
	sealed, err := m.sealer.Seal(plain, secureEnvBinding(r.ID))
	if err != nil {
		return fmt.Errorf("container %q: sealing secure environment: %w", r.Name, err)
	}
	r.SecureEnv = sealed
	return nil
}

// openCredentials returns r's stored registry credentials (nil if none).
func (m *Manager) openCredentials(r *record) (*Credentials, error) {
	if len(r.RegistryPassword) == 0 {
		return nil, nil
	}
	pw, err := m.sealer.Open(r.RegistryPassword, passwordBinding(r.ID))
	if err != nil {
		return nil, fmt.Errorf("container %q: registry password: %w", r.Name, err)
	}
	return &Credentials{Server: r.RegistryServer, Username: r.RegistryUsername, Password: string(pw)}, nil
}

// sealCredentials stores c, given by principal, in r (none when c is nil).
func (m *Manager) sealCredentials(r *record, c *Credentials, principal string) error {
	r.RegistryServer, r.RegistryUsername, r.RegistryPassword, r.CredentialPrincipal = "", "", nil, ""
	if c == nil {
		return nil
	}
	sealed, err := m.sealer.Seal([]byte(c.Password), passwordBinding(r.ID))
	if err != nil {
		return fmt.Errorf("container %q: sealing registry password: %w", r.Name, err)
	}
	r.RegistryServer, r.RegistryUsername, r.RegistryPassword, r.CredentialPrincipal = c.Server, c.Username, sealed, principal
	return nil
}
