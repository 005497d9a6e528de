package httpapi_test

import (
	"testing"

	"github.com/gantryhq/gantry/internal/testenv"
	"github.com/gantryhq/gantry/internal/testenv/stack"
)

// newServices returns the real stores behind a control API under test: a
// database in a temporary directory, an admin with adminPassword and the
// registry "contoso".
func newServices(t *testing.T, adminPassword string) *stack.Stack {
	t.Helper()
	sk := stack.New(t, "")
	sk.Admin(t, adminPassword)
	testenv.CreateRegistries(t, sk.Store, "contoso")
	return sk
}
