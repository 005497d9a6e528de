// Package taskfile reads Azure Container Registry Tasks files (acr-task.yaml, versions
// 1.0-preview-1, v1.0.0 and v1.1.0): it renders them exactly as ACR's runner (acb)
// does and validates the result, so that a bad file is rejected as a whole, with every
// problem located by file, line, column and field, before any step runs.
//
// Render is the entry point; it performs no I/O of its own: secrets are resolved
// through Options.ResolveSecret and alias src files read through
// Options.ReadAliasSource. Its result feeds plan.New.
//
//	r, err := taskfile.Render(ctx, src, taskfile.Options{
//		File:          "acr-task.yaml",
//		Run:           taskfile.Run{ID: "ca1", Registry: "127.0.0.1:5001", RegistryName: "contoso", Date: start},
//		Values:        valuesYAML,
//		Set:           []string{"REGISTRY_FROM_URL=127.0.0.1:5000/"},
//		ResolveSecret: vaultResolver,
//	})
//
// # Rendering (as acb)
//
// For v1.1.0 files: the alias block is split out (from "alias:" at the start of a line
// to the next top-level key), template-rendered, and merged with alias src files
// (later files win; inline values win over files), the predefined run aliases ($ID,
// $SharedVolume, $Registry, $RegistryName, $Date, $OS, $Architecture, $Commit,
// $Branch) and the image aliases (DefaultImageAliases or Options.ImageAliases). Every
// $name in the rest of the file is then replaced by its value ($$ gives $, unknown
// names stay as they are; alias.directive replaces $). After the template render,
// the first word of each cmd is replaced when it names an alias (bash → the MCR bash
// image), and Render returns AliasNotice in Rendered.Notices.
//
// Templates are Go text/template with Sprig, missingkey=zero, "<no value>" removed,
// and b64enc returning "" for nil. The data is .Run (ID, Registry, RegistryName,
// Date as 20060102-150405z in UTC, OS, OSVersion, Architecture, Commit, Branch,
// TaskName, SharedVolume, Repository, GitTag, TriggeredBy), .Build.ID, .Values (the
// values file overlaid with --set entries, split at the first '=', flat keys),
// .ValuesJSON and .RunJSON (shell-quoted JSON) and .Secrets. Use index for dashed
// keys: {{index .Secrets "registry-user"}}. Secrets take two passes, as in acb: the
// file is rendered without secrets to read the secrets list (whose keyvault URIs may
// use .Values and .Run), the secrets are resolved (5 at a time), and the file is
// rendered again with .Secrets.
//
// # Decisions where acb is silent or lax
//
//   - Unknown keys are rejected (acb ignores them), with the closest valid key
//     suggested ("volumeMount" → did you mean "volumeMounts"?) or a hint when the key
//     belongs to another level (stepTimeout in a step). Typos otherwise make a
//     setting silently vanish. Duplicate keys are rejected too.
//   - Full-line comments are blanked before rendering in every version, so template
//     actions in comments never run (acb drops them only for v1.1.0). Lines are
//     blanked rather than removed so that positions stay those of the file. When a
//     template changes the number of lines, positions refer to the rendered text and
//     the file is named "acr-task.yaml (rendered)" in problems.
//   - The version that enables aliases is read from the first top-level "version:"
//     line anywhere in the file, unquoted and compared case-insensitively (acb only
//     looks at the first line and compares strings, so "V1.1.0" or a quoted version
//     would silently disable aliases). An alias block in an earlier version is an
//     error instead of being ignored.
//   - Predefined run aliases are not image aliases: "cmd: ID" is not expanded to a
//     template string as in acb.
//   - Sprig's env, expandenv and getHostByName fail: templates are rendered on the
//     server and must not read its environment or the network.
//   - Rendering has a budget (template.go): each template pass has 5 s, no function
//     call may take or return more than 4 MiB or produce more than 100000 elements,
//     the calls of a pass produce at most 64 MiB together, and the output is at most
//     4 MiB (MaxRenderedSize). Functions that build a value from a count or multiply
//     their input (repeat, until, untilStep, seq, rand*, indent, wrap, replace, join,
//     regexReplaceAll, split, printf widths, uniq, ...) check the size before they
//     allocate; loops and template calls check the time. Over a budget the file is
//     rejected with a problem naming the position, the step and the expression.
//   - Step ids are also container names, so they may only contain letters, digits,
//     '_', '.' and '-' (acb only rejects spaces). startDelay must be >= 0.
//   - volumeMounts are accepted on cmd steps only, as in acb's code (the docs also
//     list build steps); mount paths must be absolute.
//   - Push steps accept only id, push, when, env, ignoreErrors, startDelay and timeout
//     (the documented set).
//   - Scalars are decoded like acb's yaml.v2: YAML 1.1 booleans (yes/no/on/off) are
//     accepted, and numbers may be quoted; fields that must be lists reject scalars
//     with an example of the list form.
//   - At least one step is required. An empty value of cmd, build or push is an error.
//   - Downloads retries are accepted under both names, downloadRetries/
//     downloadRetryDelay (docs) and cmdDownloadRetries/cmdDownloadRetryDelay (code).
//   - Secret hygiene: Rendered.SecretValues lists every resolved value and its base64
//     form; problem messages are masked with them, and Rendered.Text, which contains
//     them, must go through Rendered.Mask before it is shown.
//
// RenderDockerfile does the same for a task whose file is a Dockerfile: a build step
// "build" (8 h timeout) and a push step "push" (30 min) of its tags, with tags that
// name no registry put in the run's registry, as ACR's build tasks do.
//
// Errors: a file that cannot run is an *Error (wrapping ErrInvalid) listing all
// problems; ErrValues, ErrSecret and ErrAliasSource mark failures of the other inputs.
package taskfile
