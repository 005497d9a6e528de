// Package docker is a small client for the Docker Engine API, written against
// the standard library only. It is what gantry's task executor, container
// instances and demo use to build, pull, push and run images on the engine.
//
// The client pins API version 1.41 (Docker Engine 20.10, the version Debian 12
// ships and that podman also serves); [New] refuses an engine that cannot
// speak it. It talks HTTP over a unix socket (DOCKER_HOST unix:///path) or
// plain TCP (tcp://host:port), reusing connections.
//
// Methods are named verb-noun ([Client.BuildImage], [Client.CreateContainer],
// [Client.ListVolumes]) so that consumers can declare the few they need in a
// small interface of their own.
//
// Errors the engine returns wrap the package's sentinels ([ErrNotFound],
// [ErrConflict], [ErrNotRunning], ...) and carry the engine's own message:
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
