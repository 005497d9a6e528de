// Package instance runs container instances: named, long-running containers
// started from a registry image, each reachable at a stable address. It is
// gantry's equivalent of Azure Container Instances, the deployment target of
// the tutorial's hello-world task (`gantry container create ...`).
//
// # Addresses
//
// The engine runs containers with the host network (it has no bridge), so
// two containers cannot both listen on port 80, and a replacement cannot
// listen where its predecessor still does. Instead:
//
//   - Each declared port (ACI's --ports, default 80) gets a front address,
//     127.0.0.1:<frontPort>, served by a TCP proxy inside the gantry server.
//     The front port is chosen once, when the instance is first created
//     (a free port, or the one asked for), stored, and kept across
//     replacements and server restarts. It is the analogue of ACI's public
//     IP address: `gantry container show -n NAME --query ipAddress.url`.
//   - Each container gets, per declared port, a listen port: a free
//     loopback port allocated for that container. The container must listen
//     there. Its environment says where: PORT is the listen port of the
//     first declared port, and PORT_<declared> (e.g. PORT_80) the listen
//     port of each declared port. An app written for ${PORT:-80} works
//     unchanged. PORT and PORT_<n> are therefore reserved names.
//   - The front proxies forward every new connection to the current
//     container's listen port. Connections already open stay with the
//     container they were opened to.
//
// With the host network the container's listen port is also reachable
// directly (on whatever interface the app binds); the front address is the
// one to use, since only it survives a replacement.
//
// # Create and replace
//
// [Manager.Apply] creates an instance or replaces its container, without
// downtime:
//
//  1. The image is pulled (always, with the credentials chosen as "Pull
//     credentials" says), so that a moved tag is picked up.
//  2. If the image ID, command, environment, ports and resources are those
//     of the running container, nothing happens ([Unchanged]). A container
//     that is not running is replaced even when nothing changed.
//  3. A new container starts beside the old one, with new listen ports. Apply
//     waits until it accepts TCP connections on every listen port (bounded
//     by the startup timeout). If it exits or never answers, it is removed,
//     the old container keeps serving, and Apply returns an error wrapping
//     [ErrNotReady] with the new container's last log lines.
//  4. The record is saved and the front proxies switch to the new
//     container; Apply returns. In the background, connections still open
//     to the old container get a drain period (then they are closed: HTTP
//     clients re-open idle keep-alive connections to the new one), and the
//     old container is stopped and removed.
//
// Calls for the same name are serialized; calls for different names run
// concurrently.
//
// # Pull credentials
//
// Every Apply records the principal of its caller ([Spec].Principal).
// Registry credentials given with an Apply ([Spec].Registry: the CLI's
// --registry-username and --registry-password) are stored sealed, together
// with the principal that gave them, so that the image can be pulled again
// after a restart. Which credentials an Apply pulls with and stores:
//
//   - credentials given with it: pulled with, and stored in place of the
//     old ones;
//   - else the stored ones, but only when the principal that gave them
//     applies the same image and command again (a restart, or an update of
//     the environment, ports or resources): they are kept. For anything
//     else (another caller, or another image or command, which could read
//     what the image holds) they are not used, and they are dropped from
//     the instance when the Apply succeeds;
//   - the caller's own credentials ([Spec].CallerCredentials), which the
//     control API passes when the caller itself may pull the image's
//     repository on a registry of this server, are then preferred for the
//     pull (its grants were checked just now), and never stored;
//   - with none of these the pull is anonymous, which serves public images.
//
// When stored credentials were withheld and the registry refuses the
// anonymous pull, Apply fails with [ErrCredentialsRequired], naming the
// flags to give, and the instance keeps running unchanged. Instances
// stored before principals were recorded hold credentials of no principal,
// which only callers without a principal (in-process ones) reuse. Restores
// after a restart and the resync re-create the instance as it was set, with
// its stored credentials.
//
// # Persistence and restarts
//
// Instances are stored in the database (migration 060_instance.sql; the
// principals that set them are kept in the JSON of its spec column). Every
// container carries labels naming its instance and the database's owner ID,
// so that several gantry servers can share an engine. [Manager.Start]
// reconciles: it binds every front port again, adopts containers that kept
// running while gantry was down, and replaces missing containers, and
// stopped ones whose restart policy wants them running, with new ones of
// the recorded image (pulled again with the stored credentials if the
// engine no longer has it). It then removes containers of its own that no
// instance claims (left by a crash or a shutdown mid-replacement). A
// background resync repeats the repair (not the removal of unclaimed
// containers) every resync interval; the engine itself restarts crashed
// containers as their restart policy says. [Manager.Stop] closes the front
// proxies but leaves the containers running: the next Start adopts them.
//
// # Secrets
//
// Registry passwords and secure environment variables are stored sealed
// (see [Sealer]), bound to the instance's ID. They never appear in an
// [Instance], a log line or an error: errors from a pull are scrubbed of the
// password. Plain environment variables are shown as given, as ACI does;
// secure ones are listed by name only. (The log lines an ErrNotReady error
// carries are the app's own output.)
package instance
