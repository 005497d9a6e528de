// Package remote is gantry's one client of OCI registries: import, the
// artifact cache's pull-through, external base-image polling and
// gantry-bench all reach other registries through it.
//
// It is built on github.com/google/go-containerregistry: its transport
// package does the Distribution API's handshake (the /v2/ ping, Basic or
// Docker token auth from a Bearer challenge, token refresh on 401) and its
// authn package carries credentials. go-containerregistry was chosen over
// oras-go because crane, the peer gantry's import is measured against, is
// built on it (the same HTTP path, so the comparison is fair), and because
// the scanners the security gate will use (syft/stereoscope, trivy) take
// its v1.Image. What it lacks gantry adds below its transport, once:
//
//   - retries with jittered exponential backoff for 429, 5xx and network
//     errors of idempotent requests, honouring Retry-After (up to the
//     Policy's patience) and the RateLimit-* / X-RateLimit-* headers;
//   - the server's upstream policy (internal/egress) on every dialed address;
//   - a CA bundle added to the system's roots, and per-registry plain-HTTP
//     and skip-verify settings (Host);
//   - manifests verified against the digest asked for and announced, and
//     bounded in size; blobs streamed (never buffered) and resumed with a
//     Range request when the connection breaks.
//
// Errors match the categories of internal/errdefs and this package's
// sentinels (ErrSourceUnknown, ErrUpstreamAuth, ErrRateLimited,
// ErrUnavailable, ErrUpstream, ErrRefused); an HTTP answer is an
// *UpstreamError naming the host, request and status.
package remote
