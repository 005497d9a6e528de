package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
)

var taskView = tableView{
	{"NAME", "name", nil},
	{"PLATFORM", "platform.os", nil},
	{"STATUS", "status", nil},
	{"SOURCE REPOSITORY", "step.contextPath", nil},
	{"TRIGGERS", "@", taskTriggers},
}

// taskTriggers lists a task's enabled trigger kinds, as az's TRIGGERS
// column does.
func taskTriggers(v any) string {
	m, _ := v.(map[string]any)
	tr, _ := m["trigger"].(map[string]any)
	var out []string
	if b, ok := tr["baseImageTrigger"].(map[string]any); ok && b["status"] == "Enabled" {
		out = append(out, "BASE_IMAGE")
	}
	if s, ok := tr["sourceTrigger"].(map[string]any); ok && s["status"] == "Enabled" {
		out = append(out, "SOURCE")
	}
	if ts, ok := tr["timerTriggers"].([]any); ok {
		for _, t := range ts {
			if tm, ok := t.(map[string]any); ok && tm["status"] == "Enabled" {
				out = append(out, "TIMER")
				break
			}
		}
	}
	return strings.Join(out, ", ")
}

// shortTime formats an RFC 3339 time as az's tables do (seconds, UTC).
func shortTime(v any) string {
	s, _ := v.(string)
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.UTC().Format("2006-01-02T15:04:05Z")
}

var runView = tableView{
	{"RUN ID", "runId", nil},
	{"TASK", "task", nil},
	{"PLATFORM", "platform", nil},
	{"STATUS", "status", nil},
	{"TRIGGER", "trigger", nil},
	{"STARTED", "startTime", shortTime},
	{"DURATION", "duration", nil},
}

// keyValues parses repeated K=V flags.
func keyValues(flag string, vals []string) (map[string]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range vals {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: want KEY=VALUE", flag, kv)
		}
		out[k] = v
	}
	return out, nil
}

// parseBool parses az-style true/false flag values.
func parseBool(flag, v string) (*bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return nil, fmt.Errorf("%s %q: want true or false", flag, v)
	}
	return &b, nil
}

// taskContext resolves -c: "" and /dev/null mean none; a local directory
// becomes an absolute path (the server reads it); anything else (a git
// URL) is passed as is.
func taskContext(c string) string {
	if c == "" || c == "/dev/null" {
		return c
	}
	base, frag, hasFrag := strings.Cut(c, "#")
	if strings.Contains(base, "://") || strings.HasPrefix(base, "git@") {
		return c
	}
	if abs, err := filepath.Abs(base); err == nil {
		if hasFrag {
			return abs + "#" + frag
		}
		return abs
	}
	return c
}

type taskFlags struct {
	registry, name, file, context, gitToken, target, status, platform string
	baseTrigger, baseTriggerType, commitTrigger                       string
	sets, images, args, schedules                                     []string
	noPush, assignIdentity                                            bool
	timeout                                                           int
}

func (f *taskFlags) bind(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVarP(&f.registry, "registry", "r", "", "registry name")
	fl.StringVarP(&f.name, "name", "n", "", "task name")
	fl.StringVarP(&f.file, "file", "f", "", "task file (acr-task.yaml) or Dockerfile, relative to the context; a local file when there is no context")
	fl.StringVarP(&f.context, "context", "c", "", "git context url#branch:folder, a folder on the server, or /dev/null")
	fl.StringVar(&f.gitToken, "git-access-token", "", "access token for the git context")
	fl.StringArrayVar(&f.sets, "set", nil, "a task file value KEY=VALUE (repeatable)")
	fl.StringArrayVarP(&f.images, "image", "t", nil, "image a Dockerfile task builds, e.g. hello:{{.Run.ID}} (repeatable)")
	fl.StringArrayVar(&f.args, "arg", nil, "build argument KEY=VALUE of a Dockerfile task (repeatable)")
	fl.StringVar(&f.target, "target", "", "Dockerfile stage to build")
	fl.BoolVar(&f.noPush, "no-push", false, "build without pushing (Dockerfile tasks)")
	fl.BoolVar(&f.assignIdentity, "assign-identity", false, "give the task a system-assigned identity")
	fl.StringArrayVar(&f.schedules, "schedule", nil, "timer: a cron expression in UTC, or NAME:CRON (repeatable)")
	fl.StringVar(&f.baseTrigger, "base-image-trigger-enabled", "", "true or false (default true)")
	fl.StringVar(&f.baseTriggerType, "base-image-trigger-type", "", "Runtime (default) or All")
	fl.StringVar(&f.commitTrigger, "commit-trigger-enabled", "", "true or false (default true)")
	fl.StringVar(&f.status, "status", "", "Enabled or Disabled")
	fl.StringVar(&f.platform, "platform", "", "os/architecture (default linux/amd64)")
	fl.IntVar(&f.timeout, "timeout", 0, "run timeout in seconds (default 3600)")
	_ = c.MarkFlagRequired("registry")
	_ = c.MarkFlagRequired("name")
}

// triggers parses --base-image-trigger-enabled and --commit-trigger-enabled;
// a flag not given is nil.
func (f *taskFlags) triggers() (base, commit *bool, err error) {
	if f.baseTrigger != "" {
		if base, err = parseBool("--base-image-trigger-enabled", f.baseTrigger); err != nil {
			return nil, nil, err
		}
	}
	if f.commitTrigger != "" {
		if commit, err = parseBool("--commit-trigger-enabled", f.commitTrigger); err != nil {
			return nil, nil, err
		}
	}
	return base, commit, nil
}

// fileContent reads -f locally when the task has no context.
func (f *taskFlags) fileContent() ([]byte, error) {
	if (f.context != "" && f.context != "/dev/null") || f.file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(f.file)
	if err != nil {
		return nil, fmt.Errorf("-f %s: %w (without a context, -f names a local file)", f.file, err)
	}
	return b, nil
}

func newTaskCmd(o *rootOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "task", Short: "Manage tasks and their runs"}
	cmd.AddCommand(newTaskCreateCmd(o), newTaskUpdateCmd(o), newTaskRunCmd(o), newTaskCredentialCmd(o), newTaskTimerCmd(o))
	cmd.AddCommand(newTaskSimpleCmds(o)...)
	cmd.AddCommand(newTaskWebhookCmd(o))
	return cmd
}

func newTaskCreateCmd(o *rootOpts) *cobra.Command {
	var f taskFlags
	c := &cobra.Command{
		Use:   "create",
		Short: "Create a task",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			values, err := keyValues("--set", f.sets)
			if err != nil {
				return err
			}
			args, err := keyValues("--arg", f.args)
			if err != nil {
				return err
			}
			content, err := f.fileContent()
			if err != nil {
				return err
			}
			req := api.CreateTaskRequest{
				Name: f.name, Context: taskContext(f.context), File: f.file, FileContent: content, GitAccessToken: f.gitToken,
				Images: f.images, Arguments: args, Values: values, Target: f.target, NoPush: f.noPush, Status: f.status,
				Platform: f.platform, TimeoutSeconds: f.timeout, AssignIdentity: f.assignIdentity,
				BaseImageTriggerType: f.baseTriggerType, Schedules: f.schedules,
			}
			if content != nil {
				req.File = filepath.Base(f.file)
			}
			if req.BaseImageTrigger, req.CommitTrigger, err = f.triggers(); err != nil {
				return err
			}
			return o.call(func(c *client.Client) (any, error) { return c.CreateTask(cmd.Context(), f.registry, req) }, taskView)
		},
	}
	f.bind(c)
	return c
}

func newTaskUpdateCmd(o *rootOpts) *cobra.Command {
	var f taskFlags
	c := &cobra.Command{
		Use:   "update",
		Short: "Change a task; --set and --arg merge into its values and arguments",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var req api.UpdateTaskRequest
			fl := cmd.Flags()
			str := func(name string, v string) *string {
				if fl.Changed(name) {
					return &v
				}
				return nil
			}
			req.Context = str("context", taskContext(f.context))
			req.File = str("file", f.file)
			req.GitAccessToken = str("git-access-token", f.gitToken)
			req.Target = str("target", f.target)
			req.Status = str("status", f.status)
			req.Platform = str("platform", f.platform)
			req.BaseImageTriggerType = str("base-image-trigger-type", f.baseTriggerType)
			if fl.Changed("image") {
				req.Images = &f.images
			}
			if fl.Changed("no-push") {
				req.NoPush = &f.noPush
			}
			if fl.Changed("timeout") {
				req.TimeoutSeconds = &f.timeout
			}
			if fl.Changed("set") {
				vals, err := keyValues("--set", f.sets)
				if err != nil {
					return err
				}
				req.Values = &vals
			}
			if fl.Changed("arg") {
				args, err := keyValues("--arg", f.args)
				if err != nil {
					return err
				}
				req.Arguments = &args
			}
			var err error
			if req.BaseImageTrigger, req.CommitTrigger, err = f.triggers(); err != nil {
				return err
			}
			req.AssignIdentity = f.assignIdentity
			req.Schedules = f.schedules
			if fl.Changed("file") {
				content, err := f.fileContent()
				if err != nil {
					return err
				}
				if content != nil {
					req.FileContent = content
					base := filepath.Base(f.file)
					req.File = &base
				}
			}
			return o.call(func(c *client.Client) (any, error) { return c.UpdateTask(cmd.Context(), f.registry, f.name, req) }, taskView)
		},
	}
	f.bind(c)
	return c
}

func newTaskSimpleCmds(o *rootOpts) []*cobra.Command {
	var registry, name, runID, status string
	var top int
	reg := func(c *cobra.Command) {
		c.Flags().StringVarP(&registry, "registry", "r", "", "registry name")
		_ = c.MarkFlagRequired("registry")
	}
	named := func(c *cobra.Command) {
		reg(c)
		c.Flags().StringVarP(&name, "name", "n", "", "task name")
		_ = c.MarkFlagRequired("name")
	}
	show := &cobra.Command{
		Use: "show", Short: "Show a task, its triggers and the base images it tracks", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.GetTask(cmd.Context(), registry, name) }, taskView)
		},
	}
	named(show)
	list := &cobra.Command{
		Use: "list", Short: "List tasks", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.ListTasks(cmd.Context(), registry) }, taskView)
		},
	}
	reg(list)
	del := &cobra.Command{
		Use: "delete", Short: "Delete a task (its runs stay)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return nil, c.DeleteTask(cmd.Context(), registry, name) }, nil)
		},
	}
	named(del)
	listRuns := &cobra.Command{
		Use: "list-runs", Short: "List runs, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) {
				return c.ListRuns(cmd.Context(), registry, client.RunFilter{Task: name, Status: status, Top: top})
			}, runView)
		},
	}
	reg(listRuns)
	listRuns.Flags().StringVarP(&name, "name", "n", "", "only this task's runs")
	listRuns.Flags().IntVar(&top, "top", 15, "at most this many runs")
	listRuns.Flags().StringVar(&status, "run-status", "", "only runs with this status")
	showRun := &cobra.Command{
		Use: "show-run", Short: "Show a run, what it pushed and the chain of runs that caused it", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			r, err := c.GetRun(cmd.Context(), registry, runID)
			if err != nil {
				return hint(err)
			}
			if o.output == "table" && o.query == "" {
				if err := o.print(r, runView); err != nil {
					return err
				}
				printChain(o.out, r)
				return nil
			}
			return o.print(r, runView)
		},
	}
	reg(showRun)
	showRun.Flags().StringVar(&runID, "run-id", "", "run ID")
	_ = showRun.MarkFlagRequired("run-id")
	cancel := &cobra.Command{
		Use: "cancel-run", Short: "Cancel a queued or running run", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.CancelRun(cmd.Context(), registry, runID) }, runView)
		},
	}
	reg(cancel)
	cancel.Flags().StringVar(&runID, "run-id", "", "run ID")
	_ = cancel.MarkFlagRequired("run-id")
	logs := &cobra.Command{
		Use: "logs", Short: "Print a run's log (the task's last run without --run-id); follows a running run", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			id := runID
			if id == "" {
				runs, err := c.ListRuns(cmd.Context(), registry, client.RunFilter{Task: name, Top: 1})
				if err != nil {
					return hint(err)
				}
				if len(runs) == 0 {
					return errors.New("no runs yet")
				}
				id = runs[0].RunID
				fmt.Fprintf(o.out, "Run ID: %s\n", id)
			}
			return streamLogs(cmd.Context(), c, o.out, registry, id)
		},
	}
	reg(logs)
	logs.Flags().StringVar(&runID, "run-id", "", "run ID")
	logs.Flags().StringVarP(&name, "name", "n", "", "task whose last run to show")
	return []*cobra.Command{show, list, del, listRuns, showRun, cancel, logs}
}

// printChain prints the chain of runs that led to a run, origin first.
func printChain(w io.Writer, r *api.Run) {
	if len(r.Chain) == 0 {
		return
	}
	fmt.Fprintln(w, "\nCaused by:")
	for i, l := range r.Chain {
		fmt.Fprintf(w, "%s%s/%s  %s  %s  %s: %s\n", strings.Repeat("  ", i), l.Registry, l.RunID, l.Task, l.Status, l.Trigger, l.Description)
	}
}

func streamLogs(ctx context.Context, c *client.Client, w io.Writer, registry, id string) error {
	body, err := c.RunLogs(ctx, registry, id, true)
	if err != nil {
		return hint(err)
	}
	defer body.Close()
	_, err = io.Copy(w, body)
	return err
}

func newTaskRunCmd(o *rootOpts) *cobra.Command {
	var registry, name string
	var sets []string
	var noLogs, noWait bool
	c := &cobra.Command{
		Use:   "run",
		Short: "Run a task now; streams its log and exits non-zero if the run does not succeed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			values, err := keyValues("--set", sets)
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			run, err := c.RunTask(cmd.Context(), registry, name, api.RunTaskRequest{Values: values})
			if err != nil {
				return hint(err)
			}
			return o.followRun(cmd, c, registry, run, noLogs, noWait)
		},
	}
	bindTask(c, &registry, &name)
	c.Flags().StringArrayVar(&sets, "set", nil, "override a value KEY=VALUE for this run (repeatable)")
	c.Flags().BoolVar(&noLogs, "no-logs", false, "do not stream the log; wait and print the run")
	c.Flags().BoolVar(&noWait, "no-wait", false, "return once the run is queued")
	return c
}

// followRun streams a queued run's log (unless noLogs), waits for its end
// and turns its status into the exit code.
func (o *rootOpts) followRun(cmd *cobra.Command, c *client.Client, registry string, run *api.Run, noLogs, noWait bool) error {
	ctx := cmd.Context()
	if noWait {
		return o.print(run, runView)
	}
	fmt.Fprintf(o.errOut, "Queued a run with ID: %s\n", run.RunID)
	if !noLogs {
		fmt.Fprintln(o.errOut, "Waiting for an agent...")
		if err := streamLogs(ctx, c, o.out, registry, run.RunID); err != nil {
			return err
		}
	}
	final, err := waitRun(ctx, c, registry, run.RunID)
	if err != nil {
		return err
	}
	if noLogs || cmd.Flags().Changed("output") || cmd.Flags().Changed("out") {
		if err := o.print(final, runView); err != nil {
			return err
		}
	}
	if final.Status != "Succeeded" {
		return exitCode{code: 1, msg: fmt.Sprintf("run %s %s: %s", final.RunID, strings.ToLower(final.Status), final.Error)}
	}
	return nil
}

func waitRun(ctx context.Context, c *client.Client, registry, id string) (*api.Run, error) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		r, err := c.GetRun(ctx, registry, id)
		if err != nil {
			return nil, hint(err)
		}
		switch r.Status {
		case "Queued", "Running":
		default:
			return r, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// taskList manages a list a task keeps, its logins or its timers: each of
// its subcommands sends a change (or a read) and prints the list.
type taskList struct {
	o              *rootOpts
	registry, name string
	view           tableView
	of             func(*api.Task) any
}

// cmd returns a subcommand that sends a request and prints the task's list;
// its flags are the caller's to add.
func (l *taskList) cmd(use, short string, send func(ctx context.Context, c *client.Client) (*api.Task, error)) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return l.o.call(func(c *client.Client) (any, error) {
				t, err := send(cmd.Context(), c)
				if err != nil {
					return nil, err
				}
				return l.of(t), nil
			}, l.view)
		},
	}
}

func newTaskCredentialCmd(o *rootOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "credential", Short: "Manage the registry logins a task's runs use"}
	l := &taskList{o: o, view: credView, of: func(t *api.Task) any { return t.Credentials }}
	var server, user, pass, useID string
	bind := func(c *cobra.Command, full bool) *cobra.Command {
		bindTask(c, &l.registry, &l.name)
		if full {
			c.Flags().StringVar(&server, "login-server", "", "registry login server host:port")
			_ = c.MarkFlagRequired("login-server")
		}
		return c
	}
	// login is what add and update send, from the flags withLogin adds.
	login := func() api.CredentialRequest {
		return api.CredentialRequest{LoginServer: server, Username: user, Password: pass, UseIdentity: useID}
	}
	withLogin := func(c *cobra.Command) *cobra.Command {
		bind(c, true)
		c.Flags().StringVarP(&user, "username", "u", "", "user name, or a vault secret URI")
		c.Flags().StringVarP(&pass, "password", "p", "", "password, or a vault secret URI")
		c.Flags().StringVar(&useID, "use-identity", "", "log in with the task's identity: [system]")
		c.Flags().Lookup("use-identity").NoOptDefVal = "[system]"
		return c
	}
	add := withLogin(l.cmd("add", "Add a login", func(ctx context.Context, c *client.Client) (*api.Task, error) {
		return c.AddTaskCredential(ctx, l.registry, l.name, login())
	}))
	update := withLogin(l.cmd("update", "Replace a login", func(ctx context.Context, c *client.Client) (*api.Task, error) {
		return c.UpdateTaskCredential(ctx, l.registry, l.name, login())
	}))
	remove := bind(l.cmd("remove", "Remove a login", func(ctx context.Context, c *client.Client) (*api.Task, error) {
		return c.RemoveTaskCredential(ctx, l.registry, l.name, server)
	}), true)
	list := bind(l.cmd("list", "List logins", func(ctx context.Context, c *client.Client) (*api.Task, error) {
		return c.GetTask(ctx, l.registry, l.name)
	}), false)
	cmd.AddCommand(add, update, remove, list)
	return cmd
}

var credView = tableView{{"LOGIN SERVER", "loginServer", nil}, {"USERNAME", "username", nil}, {"PASSWORD", "password", nil}, {"IDENTITY", "identity", nil}}

var timerView = tableView{{"NAME", "name", nil}, {"SCHEDULE", "schedule", nil}, {"STATUS", "status", nil}, {"NEXT RUN", "nextRunTime", shortTime}}

func newTaskTimerCmd(o *rootOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "timer", Short: "Manage a task's timer triggers (cron, UTC)"}
	l := &taskList{o: o, view: timerView, of: func(t *api.Task) any { return t.Trigger.TimerTriggers }}
	var timer, schedule, enabled string
	bind := func(c *cobra.Command, needTimer bool) *cobra.Command {
		bindTask(c, &l.registry, &l.name)
		if needTimer {
			c.Flags().StringVar(&timer, "timer-name", "", "timer name")
			_ = c.MarkFlagRequired("timer-name")
		}
		return c
	}
	// add and update send the same request, read from the flags before the
	// client is made; they differ in what --enabled defaults to.
	var req api.TimerRequest
	withSchedule := func(c *cobra.Command, enabledUsage string) *cobra.Command {
		bind(c, true)
		c.PreRunE = func(cmd *cobra.Command, _ []string) (err error) {
			req, err = timerRequest(cmd, timer, schedule, enabled)
			return err
		}
		c.Flags().StringVar(&schedule, "schedule", "", "cron expression, 5 fields, UTC")
		c.Flags().StringVar(&enabled, "enabled", "", enabledUsage)
		return c
	}
	add := withSchedule(l.cmd("add", "Add a timer", func(ctx context.Context, c *client.Client) (*api.Task, error) {
		return c.AddTimer(ctx, l.registry, l.name, req)
	}), "true (default) or false")
	_ = add.MarkFlagRequired("schedule")
	update := withSchedule(l.cmd("update", "Change a timer's schedule or enabled state", func(ctx context.Context, c *client.Client) (*api.Task, error) {
		return c.UpdateTimer(ctx, l.registry, l.name, req)
	}), "true or false")
	remove := bind(l.cmd("remove", "Remove a timer", func(ctx context.Context, c *client.Client) (*api.Task, error) {
		return c.RemoveTimer(ctx, l.registry, l.name, timer)
	}), true)
	list := bind(l.cmd("list", "List timers", func(ctx context.Context, c *client.Client) (*api.Task, error) {
		return c.GetTask(ctx, l.registry, l.name)
	}), false)
	cmd.AddCommand(add, update, remove, list)
	return cmd
}

func newTaskWebhookCmd(o *rootOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "webhook", Short: "Show or rotate the secret a git host signs push webhooks with"}
	var registry, name string
	bind := func(c *cobra.Command) { bindTask(c, &registry, &name) }
	show := &cobra.Command{
		Use: "show", Short: "Show the webhook path (on the control API) and its secret", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.TaskWebhook(cmd.Context(), registry, name) }, nil)
		},
	}
	bind(show)
	rotate := &cobra.Command{
		Use: "rotate", Short: "Replace the webhook secret", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.RotateTaskWebhook(cmd.Context(), registry, name) }, nil)
		},
	}
	bind(rotate)
	cmd.AddCommand(show, rotate)
	return cmd
}

// bindTask adds the required --registry and --name flags that name a task.
func bindTask(c *cobra.Command, registry, name *string) {
	c.Flags().StringVarP(registry, "registry", "r", "", "registry name")
	c.Flags().StringVarP(name, "name", "n", "", "task name")
	_ = c.MarkFlagRequired("registry")
	_ = c.MarkFlagRequired("name")
}

// timerRequest builds a timer add/update request from the flags that were
// given.
func timerRequest(cmd *cobra.Command, name, schedule, enabled string) (api.TimerRequest, error) {
	req := api.TimerRequest{Name: name}
	if cmd.Flags().Changed("schedule") {
		req.Schedule = &schedule
	}
	if enabled != "" {
		b, err := parseBool("--enabled", enabled)
		if err != nil {
			return req, err
		}
		req.Enabled = b
	}
	return req, nil
}
