package auth

import (
	"fmt"
	"net/http"
	"time"

	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/errdefs"
)

// Sentinel errors. Callers match them with errors.Is; the registry and the
// control API translate them to 401 and 403.
var (
	// ErrUnauthenticated means the request carried no valid credentials.
	ErrUnauthenticated = errdefs.ErrUnauthenticated
	// ErrDenied means the caller is known but lacks a permission.
	ErrDenied = errdefs.ErrDenied
)

// Sentinel errors of the management API. ErrNotFound also matches
// db.ErrNotFound, and ErrExists and ErrConflict also match db.ErrConflict, so
// one error table can serve every domain package.
var (
	// ErrNotFound means a registry, token, scope map, principal or role
	// assignment does not exist.
	ErrNotFound = errdefs.New("not found", db.ErrNotFound)
	// ErrExists means an object with that name already exists.
	ErrExists = errdefs.New("already exists", db.ErrConflict)
	// ErrConflict means a write conflicts with the current state, e.g.
	// deleting a scope map that tokens still use.
	ErrConflict = errdefs.New("conflict", db.ErrConflict)
	// ErrInvalid means an argument is malformed or not allowed: a bad name,
	// pattern, action, role or scope, or an edit of a system scope map.
	ErrInvalid = errdefs.New("invalid argument", errdefs.ErrInvalid)
	// ErrTooManyAttempts means a client failed to log in too often and is
	// refused for a while. It wraps ErrUnauthenticated, so handlers that only
	// know ErrUnauthenticated still answer 401; see [ThrottledError] for the
	// delay to put in a Retry-After header (or answer 429).
	ErrTooManyAttempts = errdefs.New("too many failed login attempts, try again later", errdefs.ErrTooManyRequests, ErrUnauthenticated)
	// ErrLoginBusy means the server is computing as many password hashes as
	// it allows at once and its short queue is full (a flood of logins): the
	// login is refused without checking the password. Like
	// ErrTooManyAttempts it wraps ErrUnauthenticated and comes as a
	// [ThrottledError].
	ErrLoginBusy = errdefs.New("too many logins in progress, try again later", errdefs.ErrTooManyRequests, ErrUnauthenticated)
)

// ThrottledError is returned (wrapped) when a login is refused for a while:
// by the brute-force limiter (it matches ErrTooManyAttempts) or because too
// many password hashes are being computed (it matches ErrLoginBusy). It
// matches ErrUnauthenticated either way; handlers answer 429 with a
// Retry-After header.
type ThrottledError struct {
	// RetryAfter is how long the client must wait before trying again.
	RetryAfter time.Duration
	// Err is why: ErrTooManyAttempts (also when nil) or ErrLoginBusy.
	Err error
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("%s (retry after %s)", e.Unwrap(), e.RetryAfter.Round(time.Second))
}

// Unwrap returns Err, or ErrTooManyAttempts when Err is nil.
func (e *ThrottledError) Unwrap() error {
	if e.Err == nil {
		return ErrTooManyAttempts
	}
	return e.Err
}

// Resource types of Docker token scopes.
const (
	TypeRepository = "repository"
	TypeRegistry   = "registry"
	// CatalogName is the Access.Name of the catalog ("registry:catalog:*").
	CatalogName = "catalog"
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
	// ActionList is a gantry action for listing a repository's tags
	// (GET /v2/<name>/tags/list). It is allowed with content/read or
	// metadata/read. Docker clients ask the token endpoint for "pull" to list
	// tags, so a bearer token carrying pull satisfies it; challenges spell it
	// "pull". Registry handlers may also ask for ActionPull on tag lists, which
	// then requires content/read.
	ActionList = "list"
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

// Kind tells what sort of principal an Identity is.
type Kind string

// Kinds of identities.
const (
	KindAnonymous Kind = ""
	KindAdmin     Kind = "admin"
	KindToken     Kind = "token"
	// KindIdentity is a task identity acting directly, e.g. when the engine
	// resolves vault secrets on behalf of a task.
	KindIdentity Kind = "identity"
	// KindRun is a task run authenticated with a run credential. Its
	// Principal is the task identity, or the credential's own ID when the
	// task has no identity.
	KindRun Kind = "run"
)

// Identity is the authenticated caller of a request.
type Identity struct {
	// Principal is the principal ID (admin, a token, a task identity), empty
	// for anonymous callers.
	Principal string
	// Name is a display name: "admin", the token name, "task:<registry>/<task>".
	Name string
	// RunID is set when the caller is a task run; tag history records it.
	RunID string
	// Kind is the sort of principal.
	Kind Kind
	// Registry is the registry a token or a run belongs to.
	Registry string

	// credential is what the caller authenticated with (which admin
	// password, token password or run credential) and when it expires, so
	// that a refresh token issued for the caller (IssueRefreshToken) stops
	// working with it.
	credential credentialRef
}

// credentialRef is the reference to a credential that bearer and refresh
// tokens carry (session.ref) and its expiry.
type credentialRef struct {
	ref     string
	expires time.Time
}

// Anonymous reports whether the identity is the unauthenticated caller.
func (i Identity) Anonymous() bool { return i.Principal == "" }

// Admin reports whether the identity is the admin user.
func (i Identity) Admin() bool { return i.Kind == KindAdmin && i.Principal != "" }

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
