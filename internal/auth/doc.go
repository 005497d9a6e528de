// Package auth decides who a caller is and what they may do: the admin user,
// repository-scoped tokens with scope maps, task identities with role
// assignments, run credentials, and the short-lived bearer tokens the
// registries hand to Docker clients.
//
// # Principals
//
// Every caller that can hold a permission is a principal with a UUID: the
// admin user, each token and each task identity. A task run authenticates
// with a run credential (see [Service.IssueRunCredential]); it acts as its
// task's identity when the task has one.
//
// # Data-plane permissions
//
// Registry operations are expressed with the Docker token-scope actions
// (pull, push, delete, and "*" on registry:catalog) plus the gantry action
// [ActionList] for listing tags. They map onto scope-map actions:
//
//	pull    content/read
//	list    content/read or metadata/read
//	push    content/write
//	delete  content/delete
//	catalog admin, runs on their own registry, role holders at registry scope; never tokens
//
// Who holds which scope-map actions on a repository:
//
//	admin      everything on every registry
//	token      the union of its scope map's rules matching the repository, on its own registry only
//	run        everything on its own registry, plus its task identity's role assignments
//	identity   its role assignments: acrpull = content/read+metadata/read,
//	           acrpush = acrpull+content/write+metadata/write, owner = all
//	anonymous  content/read+metadata/read on registries created with anonymous pull
//
// # Control-plane permissions
//
// See [Operation] and [Service.Check].
//
// # Caching
//
// Grants are re-read from the database, through an in-process cache that
// every write of this package invalidates at once, on every request: a scope
// map update, a disabled token or a revoked run takes effect on the next
// request even for bearer tokens already issued. Writes made behind the
// package's back (for example a registry deleted by the store, which
// cascades to its tokens) are seen after the cache TTL or after
// [Service.Invalidate].
//
// # Password floods
//
// The admin password is stored as an argon2id hash, which costs 19 MiB and
// tens of milliseconds to check. A login first passes the brute-force
// limiter (per client address and user name); then a successful check made
// in the last 2 minutes is reused, under a keyed hash of the password and
// the stored hash, and concurrent logins with the same password share one
// check; otherwise the hash is computed in one of a few slots (one per
// core, but at most 32 MiB in all: one at the default cost), after a wait
// of at most a second in a short queue and a second look at the limiter.
// Beyond the queue the login is refused with [ErrLoginBusy], 429 with Retry-After.
// Token passwords and run credentials are high-entropy and checked with a
// keyed hash (HMAC-SHA256), which needs none of this.
package auth
