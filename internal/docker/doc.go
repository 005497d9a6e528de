// Package docker is gantry's adapter to a container engine's Docker Engine
// API: dockerd (Debian's 20.10 through Docker 29) or Podman's compatible
// service. The wire protocol is the client library's
// (github.com/moby/moby/client); builds run on the engine's BuildKit
// (github.com/moby/buildkit/client) where it offers one. This package
// holds gantry's vocabulary on top: small value types the task engine,
// container instances and the demo use, and one translation of the
// engine's error categories into gantry's sentinels.
//
// # Connecting
//
// [New] takes an [Endpoint] ([EndpointFromEnv] reads DOCKER_HOST,
// DOCKER_TLS_VERIFY, DOCKER_TLS and DOCKER_CERT_PATH as the docker CLI
// does) and does not contact the engine. The first call that needs it
// connects ([Client.Connect]): a ping negotiates the API version (the
// highest both sides speak, between [MinAPIVersion] and [MaxAPIVersion];
// no request is sent before that), then the engine's version is read. An
// engine that does not answer fails with [ErrUnavailable] naming the
// address, one whose API range does not meet gantry's with
// [ErrUnsupported]; both are retried by the next call, so a client made
// while the engine is down works once it is up.
//
// # Builds
//
// [Client.Build] builds a directory with BuildKit where the engine offers
// it (dockerd 18.09 and newer, through its /grpc and /session endpoints, as
// buildx's docker driver does) and the classic builder otherwise (Podman);
// [Client.Builder] says which and why. BuildKit gives RUN
// --mount=type=cache, RUN --mount=type=secret fed from
// [BuildOptions.Secrets] through the build session (never a layer, the
// history or a log), and the engine's layer cache between builds; RUN
// steps use the host network (the engines gantry runs have no bridge).
// Registry credentials for FROM images reach BuildKit through the
// session's auth provider and the classic builder as X-Registry-Config.
// [Client.BuildImage] is the classic builder from a tar stream, for small
// images made from in-memory files.
//
// Methods are named verb-noun ([Client.Build], [Client.CreateContainer],
// [Client.ListVolumes]) so that consumers can declare the few they need in
// a small interface of their own.
//
// # Errors
//
// Errors wrap the package's sentinels ([ErrNotFound], [ErrConflict],
// [ErrNotRunning], [ErrInvalid], [ErrUnauthorized], [ErrUnavailable],
// [ErrUnsupported], [ErrNoBuildKit]) and carry the engine's message:
//
//	_, err := c.InspectImage(ctx, "app:1")
//	if errors.Is(err, docker.ErrNotFound) { ... }
//
// Errors reported in the middle of a JSON message stream (a failing build
// step, a refused push) are returned the same way.
//
// Every call takes a context. Cancelling it aborts the request; for streaming
// calls (build, pull, push, logs, attach, wait) the stream stops and the call
// returns the context's error. Cancelling a request does not stop a running
// container: [Client.RunContainer] kills the container it started when its
// context ends, the lower-level calls leave that to the caller.
//
// Containers are always created without a TTY, so their output is the
// multiplexed stdout/stderr stream that [Client.ContainerLogs] and
// [Client.AttachContainer] split into two writers.
package docker
