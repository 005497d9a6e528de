package cli

import "testing"

// useServer points the command line at the control API at url as user
// with password, with a fresh configuration directory and no token.
func useServer(t *testing.T, url, user, password string) {
	t.Helper()
	t.Setenv("GANTRY_SERVER", url)
	t.Setenv("GANTRY_CONFIG_DIR", t.TempDir())
	t.Setenv("GANTRY_USERNAME", user)
	t.Setenv("GANTRY_PASSWORD", password)
	t.Setenv("GANTRY_TOKEN", "")
}
