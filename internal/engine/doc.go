// Package engine executes acr-task.yaml runs on a Docker Engine: it renders
// the task file, plans the step DAG and runs each build, cmd and push step
// as real engine operations, streaming the runner's familiar log lines.
//
//	e := engine.New(dockerClient, engine.WithGantryBinary(exe), engine.WithLogger(log))
//	res, err := e.Execute(ctx, job)   // errors.Is(err, engine.ErrStepFailed) ...
//	err = e.Cleanup(ctx, registryName, runID) // after a crash
//
// # What Execute does
//
//  1. Renders Job.File (taskfile.Render; Job.Docker: taskfile.RenderDockerfile)
//     with .Run from the job (OS linux, Architecture amd64, SharedVolume the
//     run's workspace volume), Job.Values as --set entries, Job.ResolveSecret
//     for the secrets, and the image aliases: taskfile.DefaultImageAliases,
//     where gantry names the gantry CLI image, plus WithImageAliases. Notices
//     are logged, then plan.New. A file that does not render or plan fails
//     with ErrInvalidTask and its file:line:column: field: message problems,
//     in the error and in the log; nothing is created on the engine.
//  2. Sets the run up: volumes for /workspace (filled from Job.Workspace),
//     for /acb/home (HOME of the steps, with .docker/config.json holding the
//     run's logins; the gantry and az alias steps get their own, so that a
//     control-API credential they save there reaches no other step) and for
//     each secret volume (the decoded files, mounted
//     read-only), filled through one archive copied into a setup container
//     that mounts them and is never started; every login is verified against
//     its registry as docker login does (refused: the run fails; registry
//     unreachable: a warning).
//  3. Runs the DAG with acb's semantics (no when: after the previous step;
//     ['-']: at once; when: [a, b]: after both succeeded; the first failure
//     stops every running step, removes their containers and skips the rest;
//     ignoreErrors goes on), in parallel where the DAG allows
//     (WithConcurrency bounds it). Per step: startDelay, then one timeout
//     covering prepare, retries (retryDelay, retryOnErrors) and repeats.
//  4. On success, logs each step's elapsed time and the dependencies.
//  5. Always, on a fresh bounded context: removes every container (running,
//     detached, kept) and volume of the run, and the image tags it created
//     (built, tagged, or pulled when absent before) that still point at what
//     it gave them. Nothing is written to Job.Log after Execute returns.
//
// Step kinds:
//
//   - build: a build on the engine, with BuildKit where the engine offers
//     it and the classic builder otherwise (the log says which, once per
//     step; DOCKER_BUILDKIT=0 in the step's env asks for the classic one;
//     cache: enabled is noted and ignored: the engine's own layer cache is
//     kept between runs), of a context under /workspace, as the earlier
//     steps left it (while no container has run, straight from
//     Job.Workspace), with build args, target, platform, labels,
//     --no-cache, --pull, --network none|host, --secret id=ID[,src=SECRET]
//     (the value of the task file's secret, through the build session
//     only; BuildKit needed) and the run's logins for the FROM images. The
//     Dockerfile is scanned first (internal/dockerfile, with the build args
//     and target); bases that live in a registry other than Docker Hub are
//     pulled first, so that a moved tag is never built from a stale local
//     copy, as on ACR's fresh machines. After the build the bases' digests
//     are read from the engine (RepoDigests) or, failing that, from the
//     registry (HEAD with the run's login): Result.Dependencies. Git and URL
//     contexts are rejected with an explanation.
//   - push: each image with up to 3 attempts, 1s and 2s apart (an image that
//     is not there, or refused credentials, fail at once); the digests are
//     Result.Images.
//   - cmd: a container of the first word's image (pulled with the run's
//     login when missing, and refreshed like build bases when it names a
//     registry and the run did not build it; a refused refresh fails the
//     step: the engine's copy is never used instead), run by the image ID
//     the run resolved, the other words as arguments, HOME=/acb/home then
//     the step's env (and Job.GantryEnv for the gantry CLI and az images
//     only), the step's working directory, user, entryPoint, privileged and
//     cpus, the workspace, home and secret volumes, on the host network,
//     confined (see Confinement).
//     > /dev/null is honoured. detach starts it in the background (its output
//     still goes to the log) and the step succeeds once it runs; keep leaves
//     the container until the end of the run.
//   - cmd: docker pull|tag|push|images|inspect|rmi|login|logout|build is
//     performed on the engine itself with the run's logins (docker login and
//     logout change them and config.json), printing roughly what the docker
//     CLI prints; a failure prints "Error response from daemon: ..." and
//     fails the step with exit status 1, as acb's docker image would.
//
// # Confinement
//
// Steps run content nobody here wrote (docs/security.md). Every step
// container keeps only the capabilities CHOWN, DAC_OVERRIDE, FOWNER, FSETID,
// KILL, SETGID, SETUID and SETPCAP (no NET_RAW: no packet sockets on the
// host network) and runs with no-new-privileges; the gantry and az alias
// images also with a read-only root and a private /tmp. privileged: true,
// network: host and a build's --network host are refused before anything
// runs unless Job.AllowPrivileged (ErrInvalidTask, naming the server
// setting). Images are scoped to the run: docker tag, inspect and push act
// only on images the run built, tagged or pulled with its own logins (and
// the Docker Hub names the engine holds, which no run may replace or
// remove); docker images lists only the run's; rmi removes only the run's
// tags; builds and tags may not name gantry's own repositories, a
// registry the run has no login for, or a shared Docker Hub name the run
// did not create. The gantry and az alias images are built by this process
// and run by ID (EnsureCLIImage, EnsureAzImage), so a replaced tag changes
// nothing.
//
// # The run log
//
// Runner lines carry acb's prefix, the UTC time as Go's log writes it
// ("2006/01/02 15:04:05 ", LogTimeLayout), and acb's wording:
//
//	2026/01/02 03:04:05 Setting up Docker configuration...
//	2026/01/02 03:04:05 Successfully set up Docker configuration
//	2026/01/02 03:04:05 Logging in to registry: 127.0.0.1:5002
//	2026/01/02 03:04:05 Successfully logged into 127.0.0.1:5002
//	2026/01/02 03:04:05 Executing step ID: validate-base-image. Timeout(sec): 600, Working directory: '/workspace', Network: 'host'
//	2026/01/02 03:04:05 Waiting 5 seconds before executing step ID: X
//	2026/01/02 03:04:05 Step specified pull. Performing an explicit pull...
//	2026/01/02 03:04:05 Scanning for dependencies...
//	2026/01/02 03:04:05 Successfully scanned dependencies
//	2026/01/02 03:04:05 Launching container with name: validate-base-image
//	2026/01/02 03:04:05 Successfully executed container: X
//	2026/01/02 03:04:05 Container failed during run: X, waiting 5 seconds before retrying...
//	2026/01/02 03:04:05 Container failed during run: validate-base-image. No retries remaining.
//	2026/01/02 03:04:05 failed to run step ID: validate-base-image: exit status 1
//	2026/01/02 03:04:05 Step ID: X encountered an error: exit status 1, but is set to ignore errors. Continuing...
//	2026/01/02 03:04:05 Pushing image: 127.0.0.1:5002/node:15-alpine, attempt 1
//	2026/01/02 03:04:05 Successfully pushed image: 127.0.0.1:5002/node:15-alpine
//	2026/01/02 03:04:05 Step ID: X marked as successful (elapsed time in seconds: 2.064353)
//	2026/01/02 03:04:05 Populating digests for step ID: X...
//	2026/01/02 03:04:05 Successfully populated digests for step ID: X
//	2026/01/02 03:04:05 The following dependencies were found:
//	- image: {registry, repository, tag, digest}      (YAML, unprefixed, as acb)
//	  runtime-dependency: {...}
//	  buildtime-dependency: [...]
//	  git: {git-head-revision: ...}
//
// The container name in "Launching container with name" is the step ID, as
// in acb; docker commands log the same lines. Every line of a step's output
// (its container, build, pulls, pushes, docker commands) is written as
// "<step ID> | <line>" (OutputSeparator), without a time, so parallel steps
// stay attributable:
//
//	validate-base-image | Validating Image
//	validate-base-image | ERROR: Invalid Color: Red
//
// Output lines are cleaned: terminal escapes (colors) are removed and a
// line rewritten with carriage returns keeps its last text. Lines are
// written whole (one writer per stream, so stdout and stderr never mix
// within a line; lines over 64 KiB are split). Every line, runner or
// output, is masked: the resolved secrets (and their base64), the
// credentials' passwords (and the base64 user:password of config.json),
// passwords of docker login steps, and the secret values of Job.GantryEnv
// become "***"; so are the messages of the errors Execute returns.
//
// # Engine objects
//
// Everything a run creates is named after it, the registry name and run ID
// sanitized into <run> = <registry>_<run ID>:
//
//	gantry_<run>_workspace        volume at /workspace (.Run.SharedVolume)
//	gantry_<run>_home             volume at /acb/home
//	gantry_<run>_clihome          volume at /acb/home of the alias steps
//	gantry_<run>_secret<i>_<name> secret volumes
//	gantry_<run>_setup            the setup container (never started); its own
//	                              file /gantry-images lists the image tags the
//	                              run created, for Cleanup
//	gantry_<run>_<step ID>        a step's container
//
// acb names containers after the step ID alone; the prefix keeps concurrent
// runs (of one task, too) apart. Containers and volumes carry the labels
// LabelRun=<registry name>/<run ID>, LabelRole and LabelStep. Images are not
// labelled (labels would be pushed with them and inherited by images built
// FROM them); their tags are tracked in memory and in the setup container.
//
// # Decisions where gantry differs from acb
//
//   - Networks: the engine runs with --bridge=none and no private address
//     ranges may be used, so every container uses the host network (a step's
//     network: none is honoured). Declared networks are not created; the log
//     says so once. Steps and detached services reach each other on
//     127.0.0.1, not by step name; ports and expose are accepted (ports are
//     noted as not published: a container's ports are the host's).
//   - The engine's socket is not mounted into steps; docker commands are
//     performed by the engine itself (see plan.DockerCommand).
//   - az names gantry's az image (EnsureAzImage: the gantry CLI image with
//     az, gantry's subset of the Azure CLI, as its entrypoint) instead of
//     MCR's azure-cli, which is out of reach; like the gantry alias it runs
//     with GANTRY_SERVER and GANTRY_TOKEN, so the tutorial's az login
//     --identity and az container create run unchanged. The gantry alias
//     runs the gantry CLI image (EnsureCLIImage). Neither image is ever
//     pulled; both run by image ID.
//   - A step timeout fails the step (ErrStepFailed, "context deadline
//     exceeded"); only Job.Timeout or ctx make Execute return
//     context.DeadlineExceeded.
//   - Kept containers are removed at the end of the run, which on ACR ends
//     with its machine.
//   - Pushes are not retried when the image is missing or the credentials
//     are refused.
//   - Base images and registry images of cmd steps are refreshed by a pull
//     with the run's login (ACR runs on a fresh machine each time), and a
//     refused pull fails the step; Docker Hub names are used from the
//     engine when present (there is no route to Docker Hub).
package engine
