package cli

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// credentialHelperSuffix is what the Docker config's credHelpers name the
// gantry helper by: Docker runs docker-credential-<suffix>.
const credentialHelperSuffix = "gantry"

// dockerConfigPath is the Docker client's config: $DOCKER_CONFIG/config.json,
// default ~/.docker/config.json.
func dockerConfigPath() (string, error) {
	return userFile("DOCKER_CONFIG", "the Docker config", os.UserHomeDir, ".docker", "config.json")
}

// userFile is $env/file, else base()/sub/file (base: the user's home or
// config directory); what names the file in the error when base fails.
func userFile(env, what string, base func() (string, error), sub, file string) (string, error) {
	dir := os.Getenv(env)
	if dir == "" {
		b, err := base()
		if err != nil {
			return "", fmt.Errorf("locating %s (set %s): %w", what, env, err)
		}
		dir = filepath.Join(b, sub)
	}
	return filepath.Join(dir, file), nil
}

// saveDockerAuth saves user and password for server in the Docker client's
// config as docker login does without a credential store, and removes a
// credential helper configured for server (it would take precedence).
func saveDockerAuth(server, user, password string) error {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	return editDockerConfig(server, map[string]string{"auth": auth}, "")
}

// saveDockerHelper configures the gantry credential helper for server in
// the Docker client's config (credHelpers) and removes a password saved
// for server (auths), which the helper makes stale.
func saveDockerHelper(server string) error {
	return editDockerConfig(server, nil, credentialHelperSuffix)
}

// editDockerConfig sets server's entries in the Docker client's config:
// auths[server] = auth and credHelpers[server] = helper, deleting each that
// is nil or empty. The other entries and settings are kept; the file is
// replaced atomically and is 0600.
func editDockerConfig(server string, auth map[string]string, helper string) error {
	p, err := dockerConfigPath()
	if err != nil {
		return err
	}
	cfg := map[string]json.RawMessage{}
	b, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, &cfg); err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
	}
	var authValue, helperValue any
	if auth != nil {
		authValue = auth
	}
	if helper != "" {
		helperValue = helper
	}
	if err := setConfigEntry(cfg, "auths", server, authValue); err != nil {
		return fmt.Errorf("reading %s: %w", p, err)
	}
	if err := setConfigEntry(cfg, "credHelpers", server, helperValue); err != nil {
		return fmt.Errorf("reading %s: %w", p, err)
	}
	if b, err = json.MarshalIndent(cfg, "", "\t"); err != nil {
		return err
	}
	return writePrivate(p, append(b, '\n'))
}

// setConfigEntry sets key of the object cfg[field] to v, or deletes it when
// v is nil (and drops a credHelpers object left empty; Docker writes auths
// even when empty).
func setConfigEntry(cfg map[string]json.RawMessage, field, key string, v any) error {
	entries := map[string]json.RawMessage{}
	if raw := cfg[field]; raw != nil {
		if err := json.Unmarshal(raw, &entries); err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
	}
	if v == nil {
		if _, ok := entries[key]; !ok {
			return nil
		}
		delete(entries, key)
	} else {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		entries[key] = b
	}
	if len(entries) == 0 && field != "auths" {
		delete(cfg, field)
		return nil
	}
	b, err := json.Marshal(entries)
	if err != nil {
		return err
	}
	cfg[field] = b
	return nil
}
