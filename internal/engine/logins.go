package engine

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/oci"
	"github.com/gantryhq/gantry/internal/remote"
)

// logins are a run's registry logins: the job's credentials, as docker
// login and logout in its steps change them. They authenticate the run's
// pulls, pushes and builds, and (but EngineOnly ones) fill the steps'
// config.json.
type logins struct {
	mu    sync.Mutex
	creds map[string]Credential // registryKey(host) -> login
}

func newLogins(creds []Credential) *logins {
	l := &logins{creds: map[string]Credential{}}
	for _, c := range creds {
		l.creds[registryKey(c.Registry)] = c
	}
	return l
}

// credFor returns the login for the registry host.
func (l *logins) credFor(host string) (Credential, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.creds[registryKey(host)]
	return c, ok
}

// set adds or replaces the login for c.Registry (docker login).
func (l *logins) set(c Credential) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.creds[registryKey(c.Registry)] = c
}

// remove removes the login for the registry host (docker logout) and
// reports whether there was one.
func (l *logins) remove(host string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.creds[registryKey(host)]
	delete(l.creds, registryKey(host))
	return ok
}

// authFor returns the login for the registry of ref, or nil.
func (l *logins) authFor(ref string) *docker.AuthConfig {
	c, ok := l.credFor(imageOf(ref).Registry)
	if !ok {
		return nil
	}
	a := c.auth(c.Registry)
	return &a
}

// authConfigs are the logins for a build (X-Registry-Config).
func (l *logins) authConfigs() map[string]docker.AuthConfig {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.creds) == 0 {
		return nil
	}
	m := make(map[string]docker.AuthConfig, len(l.creds))
	for k, c := range l.creds {
		host := c.Registry
		if k == dockerHub {
			host = oci.DockerHubConfig
		}
		m[host] = c.auth(host)
	}
	return m
}

// dockerConfig is ~/.docker/config.json of the steps: the logins, as
// docker login writes them, and the header acb sets.
func (l *logins) dockerConfig() ([]byte, error) {
	type entry struct {
		Auth string `json:"auth"`
	}
	cfg := struct {
		Auths       map[string]entry  `json:"auths"`
		HTTPHeaders map[string]string `json:"HttpHeaders"`
	}{Auths: map[string]entry{}, HTTPHeaders: map[string]string{"X-Meta-Source-Client": "gantry/tasks"}}
	l.mu.Lock()
	for _, c := range l.creds {
		if c.EngineOnly {
			continue
		}
		host := c.Registry
		if registryKey(host) == dockerHub {
			host = oci.DockerHubConfig
		}
		cfg.Auths[host] = entry{Auth: base64.StdEncoding.EncodeToString([]byte(c.Username + ":" + c.Password))}
	}
	l.mu.Unlock()
	return json.MarshalIndent(cfg, "", "\t")
}

// login is a pending verification of one registry login.
type login struct {
	host string
	done chan error
}

// checkLogins verifies every credential against its registry in the
// background; the results are read in order.
func checkLogins(ctx context.Context, rc *remote.Client, creds []Credential) []login {
	var out []login
	for _, c := range creds {
		l := login{host: c.Registry, done: make(chan error, 1)}
		out = append(out, l)
		go func() {
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			l.done <- pingRegistry(cctx, rc, c)
		}()
	}
	return out
}
