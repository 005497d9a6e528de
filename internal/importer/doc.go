// Package importer brings content from other registries into gantry's:
// server-side imports (az acr import) and pull-through cache rules with
// credential sets (ACR's artifact cache).
//
// # Import
//
// [Service.Import] copies an image, a multi-platform index with every
// platform manifest, or an OCI artifact of any type, together with its
// referrers (signatures, SBOMs: from the referrers API, or the
// sha256-<hex> tag schema when the source has none), into one or more
// target repositories. The source is any Distribution-API registry,
// reached through the server's one registry client (package remote, on
// go-containerregistry: https checked against the system's roots and the
// configured CA bundle, plain http for loopback hosts and hosts configured
// so; Docker token auth or Basic); or a registry of this server, named by its login server or as
// gantry://<registry>/<repository>. Credentials may be vault URIs,
// resolved with the caller's permissions.
//
// Every request to a source, its token service and its redirects obeys
// the server's egress policy (WithEgress, package egress): never the
// control API's address, link-local or metadata addresses, or hosts the
// admin's --upstream-allow / --upstream-deny lists exclude, checked on the
// address dialed; this machine (loopback) only for an import asked for by
// the admin or an owner of the target registry, never by a
// repository-scoped token alone. Cache rules can only be created by the
// admin and registry owners, so their fetches may reach loopback; their
// source is checked when the rule is created and at every fetch.
// Authorization is dropped on a redirect to another scheme, host or port.
// A refusal fails at once with ErrRefused (DENIED), naming the source and
// the reason.
//
// Only blobs the target lacks are transferred: a blob the repository holds
// is skipped, one another repository of the registry holds that the caller
// may read is linked (store.LinkBlob, no bytes move), the rest is streamed
// from the source straight into the store (store.PutBlob verifies the
// digest), several at once (WithConcurrency). A same-server import links
// every blob, so it takes milliseconds whatever the size. Manifests are
// stored children first; the root gets the target tags last. Without
// Force a target tag that exists and points elsewhere fails the import
// (ErrTagExists) before anything is copied; a tag already pointing at the
// same digest is not an error. Progress is reported step by step.
//
// The registry client retries requests to a source on 429, 5xx and
// network errors with jittered exponential backoff, under the policy of the
// work (remote.ImportPolicy, FillPolicy, RevalidatePolicy), honouring
// Retry-After up to a bound (a longer one fails at once with
// ErrRateLimited); when RateLimit-Remaining (or X-RateLimit-Remaining)
// reaches 0 with a reset time, requests wait for the reset. Its repository
// clients (with their tokens) are pooled per source, repository and
// credentials. Blob downloads stream and resume with Range requests after a
// broken connection.
//
// # Cache rules
//
// A cache rule maps a target repository of a registry (a name, prefix/* or
// *) to a source repository (login-server/path, with the same wildcard);
// ACR's overlap rules apply: wildcard rules may not overlap each other, a
// static rule may not share its target with another static rule, and a
// static rule under a wildcard one wins over it. A credential set holds
// vault URIs of the source's user name and password. Like ACR's, it has its
// own identity (a principal created with it, deleted with it): the admin
// grants it get on the vault with `gantry keyvault set-policy --object-id`,
// and the server resolves the secrets as that principal (its health shows
// whether it can). Rules and credential sets live in SQLite (migration
// 050); the registry handlers consult an in-memory snapshot.
//
// The Service is the registry handler's Fallback for every registry, with
// two optional capabilities (package registry):
//
//   - ManifestSource: every manifest read of a covered repository comes
//     here. A digest the store holds is served from it. A tag is served
//     from the store while it is fresh (WithTagTTL, the config's
//     cache.tagTTL, default 5 minutes), then revalidated with a HEAD (not
//     counted by Docker Hub); if the digest moved, the new manifest is
//     fetched. Missing content is fetched from the source and served at
//     once, while a background fill stores its whole tree: every platform
//     manifest of an index and all their blobs (eagerly, so a later digest
//     pull of any platform, or a pull with the source down, works), then
//     the tag. When the source is down, throttling (429) or refuses the
//     credentials, the cached copy is served and a warning logged; with
//     nothing cached the client gets 503 UNAVAILABLE or 429.
//   - BlobSource: a missing blob is fetched once however many clients ask
//     (concurrent fetches of one blob share a flight), and streamed to
//     each while it is stored: the fetch writes through an unlinked spool
//     file (WithSpoolDir) that readers follow; the last byte is released
//     only after the store has verified the digest, so a bad upstream
//     answer reaches clients as a broken transfer, never as content.
//
// Fills are durable. Each is recorded in the database (cache_fills,
// migration 051: the root manifest's media type and body, so that a
// restart needs no upstream to know what to fetch; the tags to point at it;
// the rule; attempts, next attempt time, last error) when its first attempt
// begins, and deleted when it completes. An attempt that fails for a reason
// that may pass (the upstream unreachable, 5xx, 429, a timeout, the server
// stopping) is retried without any client pull after a backoff
// (WithFillRetry: 30 seconds, doubling up to an hour, at least the
// upstream's Retry-After), for at most 10 attempts; a permanent failure
// (the upstream answers 404 for a manifest or blob of the tree, the rule or
// the registry is gone, a limit is exceeded, the egress policy refuses the
// source) drops the fill with a warning. [Service.Start] resumes the
// recorded fills (of a server stopped, killed, or waiting for a retry) at
// their next attempt time; retries and resumed fills run at most four at a
// time. Meanwhile the fill's manifests are served from memory, pulls of the
// same content join it, and a tag waiting for it is served its manifest
// within the TTL, then revalidated like a cached copy (a tag that moved
// upstream goes to the new content). Deleting the rule or the registry
// deletes its fills' records.
//
// Manifest fetches and tag revalidations are deduplicated the same way.
// Pushes into covered repositories are refused ([Service.CheckPush],
// DENIED), and so are imports. Referrers are not pulled through; import
// them. Deleting a rule keeps what it cached.
//
// Background work (fills, blob flights) runs under the context given to
// [Service.Start] and stops with it (a fill cut short so is recorded for
// the next start, the attempt not counted); [Service.Wait] waits for it.
package importer
