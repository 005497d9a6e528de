// Package auth decides who a caller is and what they may do: the admin user,
// repository-scoped tokens with scope maps, task identities with role
// assignments, and the short-lived bearer tokens the registries hand to
// Docker clients.
package auth

import (
	"errors"
	"net/http"
)

// Sentinel errors. Callers match them with errors.Is; the registry and the
// control API translate them to 401 and 403.
var (
	// ErrUnauthenticated means the request carried no valid credentials.
	ErrUnauthenticated = errors.New("authentication required")
	// ErrDenied means the caller is known but lacks a permission.
	ErrDenied = errors.New("access denied")
)

// Registry-protocol actions, as they appear in Docker token scopes
// ("repository:name:pull,push").
const (
	ActionPull   = "pull"
	ActionPush   = "push"
	ActionDelete = "delete"
	// ActionCatalog is the only action on the "registry" resource type
	// ("registry:catalog:*"); tokens are never granted it.
	ActionCatalog = "*"
)

// Access is one resource a request needs, in Docker token-scope form.
type Access struct {
	// Type is "repository" or "registry".
	Type string
	// Name is the repository name, or "catalog" for Type "registry".
	Name string
	// Actions lists what is needed on Name; all of them are required.
	Actions []string
}

// Identity is the authenticated caller of a request.
type Identity struct {
	// Principal is the principal ID (admin, a token, a task identity), empty
	// for anonymous callers.
	Principal string
	// Name is a display name: "admin", the token name, "task:<registry>/<task>".
	Name string
	// RunID is set when the caller is a task run; tag history records it.
	RunID string
}

// Anonymous reports whether the identity is the unauthenticated caller.
func (i Identity) Anonymous() bool { return i.Principal == "" }

// Authorizer authenticates registry requests and checks access. The registry
// handler calls it before any read or write.
type Authorizer interface {
	// Authorize returns the caller's identity if it may perform every access
	// in need on registry. Errors wrap ErrUnauthenticated or ErrDenied.
	Authorize(r *http.Request, registry string, need []Access) (Identity, error)
	// Challenge returns the WWW-Authenticate header value for a 401 answer.
	Challenge(r *http.Request, registry string, need []Access) string
}

// AllowAll is an Authorizer that lets every caller do everything; it is for
// tests of components that do not concern access control.
type AllowAll struct{}

// Authorize implements Authorizer.
func (AllowAll) Authorize(*http.Request, string, []Access) (Identity, error) {
	return Identity{Principal: "test", Name: "test"}, nil
}

// Challenge implements Authorizer.
func (AllowAll) Challenge(*http.Request, string, []Access) string { return "" }

var _ Authorizer = AllowAll{}
