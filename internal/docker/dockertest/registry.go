package dockertest

import (
	"testing"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/testenv"
)

// Registry is a docker-registry process on 127.0.0.1 (see
// testenv.StartDistribution) that the engine can pull from and push to.
type Registry struct {
	*testenv.Distribution
}

// Auth returns the registry's credentials for a pull, push or build (nil
// without authentication).
func (r *Registry) Auth() *docker.AuthConfig {
	if r.Username == "" {
		return nil
	}
	return &docker.AuthConfig{Username: r.Username, Password: r.Password, ServerAddress: r.Host}
}

// StartRegistry starts Debian's docker-registry on a free port of
// 127.0.0.1 with a temporary storage root, with htpasswd authentication
// (a random password for user "gantry") when auth is set. The process is
// stopped when t ends, also when t fails. It requires docker-registry (and
// htpasswd for auth) like Engine requires DOCKER_HOST.
func StartRegistry(t testing.TB, auth bool) *Registry {
	t.Helper()
	return &Registry{testenv.StartDistribution(t, auth)}
}
