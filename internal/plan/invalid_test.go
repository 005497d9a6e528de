package plan_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/plan"
	"github.com/gantryhq/gantry/internal/taskfile"
)

// TestInvalidFiles pins the exact message for each kind of bad task file: taskfile
// validation problems and plan problems alike are located by file, line, column and
// field, and wrap taskfile.ErrInvalid.
func TestInvalidFiles(t *testing.T) {
	t.Parallel()
	for _, tt := range invalidFiles {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := build(tt.src, tt.set...)
			if err == nil {
				t.Fatalf("no error; want\n%s", tt.want)
			}
			if !errors.Is(err, taskfile.ErrInvalid) {
				t.Errorf("error does not wrap taskfile.ErrInvalid: %v", err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func build(src string, set ...string) error {
	r, err := taskfile.Render(context.Background(), []byte(src), taskfile.Options{
		Run: taskfile.Run{ID: "ca1", Registry: "127.0.0.1:5001", RegistryName: "contoso", Date: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		Set: set,
		ResolveSecret: func(_ context.Context, id, uri string) (string, error) {
			return "value-of-" + id, nil
		},
	})
	if err != nil {
		return err
	}
	_, err = plan.New(r)
	return err
}

func lines(s ...string) string { return strings.Join(s, "\n") + "\n" }

// invalidFile is a bad task file, the --set values it is rendered with and the
// exact error it must produce.
type invalidFile struct {
	name string
	src  string
	set  []string
	want string
}

// oneStep is the case of a task file whose only step is "kind: value" and whose
// problem, msg, is located at the start of value.
func oneStep(name, kind, value, msg string) invalidFile {
	step := "  - " + kind + ": "
	return invalidFile{
		name: name,
		src:  lines("steps:", step+value),
		want: fmt.Sprintf("acr-task.yaml:2:%d: steps[0].%s: %s", len(step)+1, kind, msg),
	}
}

// The explanations that end several messages.
const (
	noShell    = "(ACR runs cmd through the runner's sh -c; gantry starts the container directly)"
	quoteIt    = "quote it, or run the command line inside the container with bash -c '...' or sh -c '...'"
	dockerCmds = "(supported subcommands: build, images, inspect, login, logout, pull, push, rmi, tag)"
	pushKeys   = "(push steps accept only id, push, when, env, ignoreErrors, startDelay, timeout)"
)

// unquoted is the message for the shell operator op left unquoted in a cmd string.
func unquoted(op string) string {
	return "unquoted shell operator " + strconv.Quote(op) + " is not supported " + noShell + ": " + quoteIt
}

var invalidFiles = []invalidFile{
	// YAML and file structure.
	{name: "yaml syntax", src: lines("version: v1.1.0", "steps:", "  - cmd alpine", "    id: x"), want: "acr-task.yaml:4: YAML syntax error: mapping values are not allowed in this context"},
	{name: "tab indentation", src: lines("version: v1.1.0", "steps:", "\t- cmd: alpine"), want: "acr-task.yaml:3: YAML syntax error: found character that cannot start any token"},
	{name: "duplicate key", src: lines("version: v1.1.0", "steps:", "  - cmd: alpine", "    cmd: busybox"), want: "acr-task.yaml:4:5: steps[0]: key \"cmd\" is already defined at line 3"},
	{name: "two documents", src: lines("steps: [{cmd: alpine}]", "---", "steps: []"), want: "acr-task.yaml:2:1: only one YAML document is allowed (remove the '---' separator)"},
	{name: "not a mapping", src: lines("- cmd: alpine"), want: "acr-task.yaml:1:1: the file must be a YAML mapping with keys such as version and steps, not a list"},
	{name: "empty file", src: "", want: "acr-task.yaml: steps: is required: list at least one step (cmd, build or push)"},
	{name: "empty steps", src: lines("version: v1.1.0", "steps: []"), want: "acr-task.yaml:2:8: steps: list at least one step (cmd, build or push)"},
	{name: "steps not a list", src: lines("steps:", "  cmd: alpine"), want: "acr-task.yaml:2:3: steps: must be a list, not a mapping"},
	{name: "step not a mapping", src: lines("steps:", "  - alpine echo"), want: "acr-task.yaml:2:5: steps[0]: must be a mapping (a step with cmd, build or push), not a string"},
	// Unknown keys.
	{name: "top-level typo", src: lines("version: v1.1.0", "stepTimout: 10", "steps: [{cmd: alpine}]"), want: "acr-task.yaml:2:1: unknown key \"stepTimout\" (did you mean \"stepTimeout\"?)"},
	{name: "volumeMount typo", src: lines("version: v1.1.0", "volumes:", "  - name: v", "    secret: {a: YQ==}", "steps:", "  - cmd: alpine", "    volumeMount:", "      - {name: v, mountPath: /v}"), want: "acr-task.yaml:7:5: steps[0]: unknown key \"volumeMount\" (did you mean \"volumeMounts\"?)"},
	{name: "case typo", src: lines("steps:", "  - cmd: alpine", "    entrypoint: sh"), want: "acr-task.yaml:3:5: steps[0]: unknown key \"entrypoint\" (did you mean \"entryPoint\"?)"},
	{name: "step key at top level", src: lines("cmd: alpine"), want: "acr-task.yaml: 2 problems:\n  acr-task.yaml: steps: is required: list at least one step (cmd, build or push)\n  acr-task.yaml:1:1: unknown key \"cmd\" (cmd is a step property: put it in an entry of steps)"},
	{name: "task key in a step", src: lines("steps:", "  - cmd: alpine", "    stepTimeout: 5"), want: "acr-task.yaml:3:5: steps[0]: unknown key \"stepTimeout\" (stepTimeout is a task-level property: put it at the top of the file)"},
	{name: "unknown key without suggestion", src: lines("steps:", "  - cmd: alpine", "    secret: x"), want: "acr-task.yaml:3:5: steps[0]: unknown key \"secret\" (valid keys: id, cmd, build, push, when, env, entryPoint, workingDirectory, disableWorkingDirectoryOverride, timeout, startDelay, retries, retryDelay, retryOnErrors, repeat, detach, keep, ports, expose, privileged, user, network, isolation, cpus, ignoreErrors, pull, downloadRetries, cmdDownloadRetries, downloadRetryDelay, cmdDownloadRetryDelay, volumeMounts, cache, exitedWith, exitedWithout)"},
	{name: "unknown secret key", src: lines("secrets:", "  - id: a", "    keyVault: https://v/secrets/a", "steps: [{cmd: alpine}]"), want: "acr-task.yaml:3:5: secrets[0]: unknown key \"keyVault\" (did you mean \"keyvault\"?)"},
	// Version.
	{name: "bad version", src: lines("version: v2.0.0", "steps: [{cmd: alpine}]"), want: "acr-task.yaml:1:10: version: \"v2.0.0\" is not a valid version (valid: 1.0-preview-1, v1.0.0, v1.1.0; the default is v1.0.0)"},
	{name: "alias needs v1.1.0", src: lines("version: v1.0.0", "alias:", "  values: {a: b}", "steps: [{cmd: alpine}]"), want: "acr-task.yaml:2:1: alias requires version: v1.1.0 (aliases are ignored by earlier versions)"},
	// Step types.
	{name: "two step types", src: lines("steps:", "  - cmd: alpine", "    build: ."), want: "acr-task.yaml:2:5: steps[0]: a step must have only one of cmd, build or push (found cmd and build)"},
	{name: "no step type", src: lines("steps:", "  - id: nothing"), want: "acr-task.yaml:2:5: steps[0]: a step needs one of cmd, build or push"},
	oneStep("empty cmd", "cmd", "\"\"", "is empty"),
	oneStep("push scalar", "push", "127.0.0.1:5001/app:1", "must be a list, e.g. push: [\"127.0.0.1:5001/app:1\"]"),
	{name: "push-only properties", src: lines("steps:", "  - push: [127.0.0.1:5001/app:1]", "    retries: 2", "    network: host"), want: "acr-task.yaml: 2 problems:\n  acr-task.yaml:3:5: steps[0]: retries is not allowed on a push step " + pushKeys + "\n  acr-task.yaml:4:5: steps[0]: network is not allowed on a push step " + pushKeys},
	// when.
	{name: "when unknown", src: lines("version: v1.1.0", "steps:", "  - id: build-ap", "    build: -t app .", "  - id: test", "    cmd: alpine", "  - id: deploy", "    when: [build-app]", "    cmd: alpine"), want: "acr-task.yaml:8:12: steps[2].when: \"build-app\" is not defined before this step (when may only name earlier steps); did you mean \"build-ap\"?"},
	{name: "when later", src: lines("steps:", "  - id: a", "    when: [b]", "    cmd: alpine", "  - id: b", "    cmd: alpine"), want: "acr-task.yaml:3:12: steps[0].when: \"b\" is defined after this step, by steps[1] at line 5 (when may only name earlier steps)"},
	{name: "when self", src: lines("steps:", "  - id: a", "    when: [a]", "    cmd: alpine"), want: "acr-task.yaml:3:12: steps[0].when: step \"a\" cannot depend on itself"},
	{name: "when dash combined", src: lines("steps:", "  - id: a", "    cmd: alpine", "  - id: b", "    when: ['-', a]", "    cmd: alpine"), want: "acr-task.yaml:5:11: steps[1].when: '-' (start immediately) cannot be combined with step ids"},
	{name: "when scalar", src: lines("steps:", "  - id: a", "    cmd: alpine", "  - id: b", "    when: a", "    cmd: alpine"), want: "acr-task.yaml:5:11: steps[1].when: must be a list, e.g. when: [\"a\"]"},
	{name: "when default id", src: lines("steps:", "  - cmd: alpine", "  - when: [acb_step_1]", "    cmd: alpine"), want: "acr-task.yaml:3:12: steps[1].when: step \"acb_step_1\" cannot depend on itself"},
	// ids.
	{name: "duplicate id", src: lines("steps:", "  - id: a", "    cmd: alpine", "  - id: a", "    cmd: alpine"), want: "acr-task.yaml:4:9: steps[1].id: duplicate step id \"a\" (also used by steps[0] at line 2)"},
	{name: "default id collision", src: lines("steps:", "  - id: acb_step_1", "    cmd: alpine", "  - cmd: alpine"), want: "acr-task.yaml:4:5: steps[1]: this step has no id and its default id \"acb_step_1\" is already used by steps[0] at line 2"},
	{name: "id with space", src: lines("steps:", "  - id: my step", "    cmd: alpine"), want: "acr-task.yaml:2:9: steps[0].id: \"my step\" must not contain spaces"},
	{name: "reserved id", src: lines("steps:", "  - id: acb_root", "    cmd: alpine"), want: "acr-task.yaml:2:9: steps[0].id: \"acb_root\" is reserved"},
	{name: "id charset", src: lines("steps:", "  - id: build/app", "    cmd: alpine"), want: "acr-task.yaml:2:9: steps[0].id: \"build/app\" may only contain letters, digits, '_', '.' and '-', and must start with a letter or digit (the id names the step's container)"},
	// Scalars.
	{name: "timeout not a number", src: lines("steps:", "  - cmd: alpine", "    timeout: ten"), want: "acr-task.yaml:3:14: steps[0].timeout: must be a number, not \"ten\""},
	{name: "timeout float", src: lines("steps:", "  - cmd: alpine", "    timeout: 1.5"), want: "acr-task.yaml:3:14: steps[0].timeout: must be a whole number, not 1.5"},
	{name: "negative retries and repeat", src: lines("steps:", "  - cmd: alpine", "    retries: -1", "    repeat: -2", "    startDelay: -3"), want: "acr-task.yaml: 3 problems:\n  acr-task.yaml:3:14: steps[0].retries: must be >= 0, not -1\n  acr-task.yaml:4:13: steps[0].repeat: must be >= 0, not -2\n  acr-task.yaml:5:17: steps[0].startDelay: must be >= 0, not -3"},
	{name: "bad boolean", src: lines("steps:", "  - cmd: alpine", "    detach: sometimes"), want: "acr-task.yaml:3:13: steps[0].detach: must be true or false, not \"sometimes\""},
	oneStep("list for a string", "cmd", "[alpine, echo]", "must be a string, not a list"),
	{name: "cache value", src: lines("steps:", "  - build: -t a .", "    cache: always"), want: "acr-task.yaml:3:12: steps[0].cache: \"always\" is not valid (use enabled or disabled)"},
	{name: "both download retry spellings", src: lines("steps:", "  - cmd: alpine", "    downloadRetries: 1", "    cmdDownloadRetries: 2"), want: "acr-task.yaml:4:5: steps[0]: use only one of downloadRetries and cmdDownloadRetries"},
	// env.
	{name: "step env without =", src: lines("steps:", "  - cmd: alpine", "    env: [FOO, BAR=1, =x]"), want: "acr-task.yaml: 2 problems:\n  acr-task.yaml:3:11: steps[0].env[0]: must be KEY=VALUE\n  acr-task.yaml:3:23: steps[0].env[2]: must be KEY=VALUE"},
	{name: "task env comma split", src: lines("env: ['A=1,2']", "steps: [{cmd: alpine}]"), want: "acr-task.yaml:1:7: env[0]: every entry must be KEY=VALUE; task-level entries are split at ',' (as in ACR), so their values cannot contain ','"},
	// Secrets.
	{name: "secret problems", src: lines("secrets:", "  - keyvault: https://v/secrets/a", "  - id: b c", "    keyvault: https://v/secrets/b", "  - id: d", "  - id: e", "    keyvault: https://v/secrets/e", "    clientID: not-a-guid", "  - id: e", "    keyvault: https://v/secrets/e2", "steps: [{cmd: alpine}]"), want: "acr-task.yaml: 5 problems:\n  acr-task.yaml:2:5: secrets[0].id: is required (the name used in {{.Secrets.<id>}})\n  acr-task.yaml:3:9: secrets[1].id: \"b c\" must not contain spaces\n  acr-task.yaml:5:5: secrets[2].keyvault: is required (the secret URI, e.g. https://myvault.vault.azure.net/secrets/name)\n  acr-task.yaml:8:15: secrets[3].clientID: \"not-a-guid\" is not a GUID (the client ID of a user-assigned identity)\n  acr-task.yaml:9:9: secrets[4].id: duplicate secret id \"e\" (also used by secrets[3] at line 6)"},
	// Volumes and mounts.
	{name: "volume problems", src: lines("volumes:", "  - name: bad name", "    secret: {ok: YQ==}", "  - name: v", "    secret:", "      bad/name: YQ==", "      plain: not base64!", "  - name: v", "    secret: {a: YQ==}", "  - name: nosecret", "steps: [{cmd: alpine}]"), want: "acr-task.yaml: 5 problems:\n  acr-task.yaml:2:11: volumes[0].name: \"bad name\" may only contain letters, digits, '-' and '_'\n  acr-task.yaml:6:7: volumes[1].secret: file name \"bad/name\" may only contain letters, digits, '-', '_' and '.'\n  acr-task.yaml:7:14: volumes[1].secret.plain: value is not valid base64 (encode it, e.g. {{.Secrets.mysecret | b64enc}})\n  acr-task.yaml:8:11: volumes[2].name: duplicate volume name \"v\" (also used by volumes[1] at line 4)\n  acr-task.yaml:10:5: volumes[3].secret: is required (only secret volumes are supported): a mapping of file names to base64 values"},
	{name: "mount problems", src: lines("volumes:", "  - name: vol", "    secret: {a: YQ==}", "steps:", "  - cmd: alpine", "    volumeMounts:", "      - name: voll", "        mountPath: /a", "      - name: vol", "        mountPath: relative", "      - name: vol", "        mountPath: /a/", "      - mountPath: /b"), want: "acr-task.yaml: 4 problems:\n  acr-task.yaml:7:9: steps[0].volumeMounts[0].name: \"voll\" is not a volume declared in volumes; did you mean \"vol\"?\n  acr-task.yaml:10:20: steps[0].volumeMounts[1].mountPath: \"relative\" must be an absolute path in the container\n  acr-task.yaml:12:20: steps[0].volumeMounts[2].mountPath: \"/a/\" is already mounted by steps[0].volumeMounts[0]\n  acr-task.yaml:13:9: steps[0].volumeMounts[3].name: is required (the name of a volume in volumes)"},
	{name: "mount on a build step", src: lines("volumes:", "  - name: vol", "    secret: {a: YQ==}", "steps:", "  - build: -t a .", "    volumeMounts: [{name: vol, mountPath: /a}]"), want: "acr-task.yaml:6:19: steps[0].volumeMounts: volume mounts are only supported on cmd steps"},
	// Networks.
	{name: "network problems", src: lines("networks:", "  - driver: bridge", "  - name: n", "  - name: n", "    isdefault: true", "steps: [{cmd: alpine}]"), want: "acr-task.yaml: 3 problems:\n  acr-task.yaml:2:5: networks[0].name: is required\n  acr-task.yaml:4:11: networks[2].name: duplicate network name \"n\" (also used by networks[1] at line 3)\n  acr-task.yaml:5:5: networks[2]: unknown key \"isdefault\" (did you mean \"isDefault\"?)"},
	// Aliases.
	{name: "alias problems", src: lines("version: v1.1.0", "alias:", "  values:", "    bad-key: x", "  directive: '%%'", "  source: [x]", "steps: [{cmd: alpine}]"), want: "acr-task.yaml: 3 problems:\n  acr-task.yaml:4:5: alias.values: alias name \"bad-key\" may only contain letters and digits\n  acr-task.yaml:5:14: alias.directive: \"%%\" must be a single character\n  acr-task.yaml:6:3: alias: unknown key \"source\" (valid keys: values, src, directive)"},
	{name: "alias directive alphanumeric", src: lines("version: v1.1.0", "alias:", "  directive: a", "steps: [{cmd: alpine}]"), want: "acr-task.yaml:3:14: alias.directive: \"a\" must not be a letter or digit"},
	// Templates.
	{name: "template syntax", src: lines("steps:", "  - id: a", "    cmd: alpine echo {{ .Values.x"), want: "acr-task.yaml:4: template: unclosed action started at line 3"},
	{name: "template execution", src: lines("steps:", "  - id: a", "    cmd: alpine echo {{ index .Values.missing \"key\" }}"), want: "acr-task.yaml:3:24: template: at <index .Values.missing \"key\">: error calling index: index of untyped nil"},
	{name: "env function disabled", src: lines("steps:", "  - cmd: alpine echo {{ env \"HOME\" }}"), want: "acr-task.yaml:2:24: template: at <env \"HOME\">: error calling env: env is disabled: task templates cannot read the server's environment (use --set values or secrets)"},
	{name: "template in a comment is ignored but not elsewhere", src: lines("# {{ broken", "steps:", "  - cmd: alpine echo {{ .Run.ID }", ""), want: "acr-task.yaml:3: template: unexpected \"}\" in operand"},
	// Several problems at once.
	{name: "several problems", src: lines("version: v1.1.0", "steps:", "  - id: a", "    cmd: alpine", "    retries: -1", "  - id: a", "    when: [c]", "    push: [x]", "    retries: 1"), want: "acr-task.yaml: 4 problems:\n  acr-task.yaml:5:14: steps[0].retries: must be >= 0, not -1\n  acr-task.yaml:6:9: steps[1].id: duplicate step id \"a\" (also used by steps[0] at line 3)\n  acr-task.yaml:7:12: steps[1].when: \"c\" is not defined before this step (when may only name earlier steps); did you mean \"a\"?\n  acr-task.yaml:9:5: steps[1]: retries is not allowed on a push step " + pushKeys},
	// Plan: cmd strings.
	oneStep("pipe", "cmd", "alpine echo hi | grep h", unquoted("|")),
	oneStep("and-and", "cmd", "alpine true && alpine false", unquoted("&&")),
	oneStep("semicolon", "cmd", "alpine true; echo", unquoted(";")),
	{name: "newline in a literal block", src: lines("steps:", "  - cmd: |", "      alpine echo one", "      alpine echo two"), want: "acr-task.yaml:2:10: steps[0].cmd: " + unquoted("newline")},
	oneStep("redirect to a file", "cmd", "alpine cat /etc/os-release > /workspace/os", "redirection to a file \"> /workspace/os\" is not supported "+noShell+": write the file inside the container with bash -c '... > /workspace/file' (only > /dev/null is honoured)"),
	oneStep("command substitution", "cmd", "alpine echo $(date)", "command substitution $(...) is not supported "+noShell+": single-quote it, or run it inside the container with bash -c '...'"),
	oneStep("backquotes", "cmd", "alpine echo `date`", "command substitution `...` is not supported "+noShell+": single-quote it, or run it inside the container with bash -c '...'"),
	oneStep("variable", "cmd", "alpine echo \"$HOME\"", "variable expansion \"$HOME\" is not supported "+noShell+": single-quote it to pass it literally, or use bash -c '...' to expand it inside the container"),
	oneStep("unterminated quote", "cmd", "alpine echo 'oops", "has an unterminated single quote"),
	oneStep("background", "cmd", "alpine sleep 10 &", unquoted("&")),
	{name: "pipe with a secret", src: lines("version: v1.1.0", "secrets:", "  - id: password", "    keyvault: https://v/secrets/p", "steps:", "  - cmd: bash echo '{{.Secrets.password}}' | docker login --username u --password-stdin $Registry"), want: "acr-task.yaml:6:10: steps[0].cmd: unquoted shell operator is not supported " + noShell + ": " + quoteIt},
	oneStep("invalid image", "cmd", "MyImage:latest run", "the first word must be the image to run: invalid image reference: \"MyImage:latest\": repository name must be lowercase"),
	oneStep("docker run", "cmd", "docker run --rm alpine", "docker run is not supported as an engine command: run the image directly with cmd: <image> [args] "+dockerCmds),
	oneStep("docker unknown subcommand", "cmd", "docker system prune -f", "docker system is not supported "+dockerCmds),
	oneStep("docker global option", "cmd", "docker --config /x pull alpine", "docker global options such as \"--config\" are not supported "+dockerCmds),
	oneStep("docker pull without image", "cmd", "docker pull", "docker pull takes IMAGE, got 0 argument(s)"),
	oneStep("docker tag one operand", "cmd", "docker tag a", "docker tag takes SOURCE TARGET, got 1 argument(s)"),
	oneStep("docker unknown flag", "cmd", "docker push --force a", "unknown flag \"--force\" for docker push"),
	oneStep("docker bad reference", "cmd", "docker pull Alpine", "docker pull: invalid image reference: \"Alpine\": repository name must be lowercase"),
	oneStep("docker login stdin", "cmd", "docker login -u x --password-stdin r.io", "docker login --password-stdin is not supported (a cmd step has no stdin): use -p, or register the registry's credentials with gantry task credential add"),
	{name: "docker with entryPoint", src: lines("steps:", "  - cmd: docker images", "    entryPoint: sh"), want: "acr-task.yaml:3:17: steps[0].entryPoint: cannot be used with docker images, which the engine performs itself"},
	// Plan: build strings.
	oneStep("build without context", "build", "-t app -f Dockerfile", "docker build needs a build context, e.g. '.'"),
	oneStep("build with two contexts", "build", "-t app . other", "docker build takes one build context, found 2: [\".\" \"other\"]"),
	oneStep("build flag without value", "build", ". -t", "flag -t of docker build needs a value"),
	// Build secrets (--secret): fed only from the task file's secrets.
	oneStep("build secret without secrets list", "build", "-t a --secret id=npmrc .", "--secret id=npmrc: the task file declares no secrets; add one with id: npmrc and its keyvault URI under secrets:"),
	{name: "build secret not declared", src: lines("secrets:", "  - id: token", "    keyvault: https://v.vault.azure.net/secrets/t", "steps:", "  - build: -t a --secret id=npmrc,src=nope ."), want: "acr-task.yaml:5:12: steps[0].build: --secret id=npmrc: no secret \"nope\" in the task file's secrets (declared: token)"},
	oneStep("build secret malformed", "build", "-t a --secret npmrc .", "--secret \"npmrc\": \"npmrc\" is not key=value; want id=ID[,src=SECRET_ID]"),
	oneStep("build secret without id", "build", "-t a --secret src=token .", "--secret \"src=token\": missing id=ID"),
	oneStep("build secret from env", "build", "-t a --secret id=x,env=TOKEN .", "--secret \"id=x,env=TOKEN\": build secrets come from the task file's secrets, not the environment; want id=ID[,src=SECRET_ID]"),
	oneStep("build secret unknown key", "build", "-t a --secret id=x,required=true .", "--secret \"id=x,required=true\": unknown key \"required\"; want id=ID[,src=SECRET_ID]"),
	{name: "build secret twice", src: lines("secrets:", "  - id: x", "    keyvault: https://v.vault.azure.net/secrets/t", "steps:", "  - build: -t a --secret id=x --secret id=x ."), want: "acr-task.yaml:5:12: steps[0].build: --secret id=x is given twice"},
	oneStep("docker build secret not declared", "cmd", "docker build -t a --secret id=npmrc .", "--secret id=npmrc: the task file declares no secrets; add one with id: npmrc and its keyvault URI under secrets:"),
	oneStep("build unknown flag", "build", "--frobnicate -t app .", "unknown flag \"--frobnicate\" for docker build"),
	oneStep("build rejected flag", "build", "--iidfile /tmp/id -t app .", "docker build flag --iidfile is not supported: it writes a file on the runner"),
	oneStep("build bad tag", "build", "-t App:1 .", "tag: invalid image reference: \"App:1\": repository name must be lowercase"),
	oneStep("build from stdin", "build", "-t app -", "a build context from stdin (-) is not supported"),
	oneStep("build with a pipe", "build", "-t app . | tee log", unquoted("|")),
	oneStep("build arg without name", "build", "--build-arg =1 -t app .", "--build-arg \"=1\" needs a name (NAME=value or NAME)"),
	// Plan: push.
	{name: "push bad reference", src: lines("steps:", "  - push: [127.0.0.1:5001/App:1, 'a b']"), want: "acr-task.yaml: 2 problems:\n  acr-task.yaml:2:12: steps[0].push[0]: invalid image reference: \"127.0.0.1:5001/App:1\": repository name must be lowercase\n  acr-task.yaml:2:34: steps[0].push[1]: invalid image reference: \"a b\": invalid repository name component \"a b\""},
}
