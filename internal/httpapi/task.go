package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/engine"
	"github.com/gantryhq/gantry/internal/git"
	"github.com/gantryhq/gantry/internal/task"
)

func (s *Server) taskRoutes() {
	s.mux.HandleFunc("GET /v1/registries/{reg}/tasks", s.authed(s.listTasks))
	s.mux.HandleFunc("POST /v1/registries/{reg}/tasks", s.authed(s.createTask))
	s.mux.HandleFunc("GET /v1/registries/{reg}/tasks/{name}", s.authed(s.getTask))
	s.mux.HandleFunc("PATCH /v1/registries/{reg}/tasks/{name}", s.authed(s.updateTask))
	s.mux.HandleFunc("DELETE /v1/registries/{reg}/tasks/{name}", s.authed(s.deleteTask))
	s.mux.HandleFunc("POST /v1/registries/{reg}/tasks/{name}/runs", s.authed(s.runTask))
	s.mux.HandleFunc("POST /v1/registries/{reg}/tasks/{name}/credentials", s.authed(s.addTaskCredential))
	s.mux.HandleFunc("PUT /v1/registries/{reg}/tasks/{name}/credentials", s.authed(s.updateTaskCredential))
	s.mux.HandleFunc("DELETE /v1/registries/{reg}/tasks/{name}/credentials", s.authed(s.removeTaskCredential))
	s.mux.HandleFunc("POST /v1/registries/{reg}/tasks/{name}/timers", s.authed(s.addTimer))
	s.mux.HandleFunc("PATCH /v1/registries/{reg}/tasks/{name}/timers/{timer}", s.authed(s.updateTimer))
	s.mux.HandleFunc("DELETE /v1/registries/{reg}/tasks/{name}/timers/{timer}", s.authed(s.removeTimer))
	s.mux.HandleFunc("GET /v1/registries/{reg}/runs", s.authed(s.listRuns))
	s.mux.HandleFunc("POST /v1/registries/{reg}/runs", s.authed(s.quickRun))
	s.mux.HandleFunc("GET /v1/registries/{reg}/runs/{id}", s.authed(s.getRun))
	s.mux.HandleFunc("GET /v1/registries/{reg}/runs/{id}/logs", s.authed(s.runLogs))
	s.mux.HandleFunc("POST /v1/registries/{reg}/runs/{id}/cancel", s.authed(s.cancelRun))
}

func (s *Server) toAPITask(ctx context.Context, t *task.Task) (api.Task, error) {
	plat := api.Platform{OS: "linux", Architecture: "amd64"}
	if os, arch, ok := cutPlatform(t.Platform); ok {
		plat = api.Platform{OS: os, Architecture: arch}
	}
	out := api.Task{
		Name: t.Name, Registry: t.Registry, Status: t.Status, Platform: plat, Timeout: int(t.Timeout / time.Second),
		Step: api.TaskStep{
			ContextPath: t.Context, Values: t.Spec.Values, HasContextAccessToken: t.HasGitToken,
			BaseImageDependencies: []api.BaseImageDependency{},
		},
		Trigger:     api.Triggers{TimerTriggers: []api.TimerTrigger{}},
		Credentials: []api.TaskCredential{},
		CreatedAt:   t.CreatedAt, UpdatedAt: t.UpdatedAt,
	}
	if t.Kind == task.KindDocker {
		out.Step.Type = api.StepTypeDocker
		out.Step.DockerFilePath = t.File
		out.Step.ImageNames = t.Spec.Images
		out.Step.Arguments = t.Spec.Args
		out.Step.Target = t.Spec.Target
		out.Step.IsPushEnabled = !t.Spec.NoPush
	} else {
		out.Step.Type = api.StepTypeFile
		out.Step.TaskFilePath = t.File
		if t.File == "" && len(t.FileContent) > 0 {
			out.Step.TaskFilePath = "(uploaded)"
		}
	}
	if t.Identity != "" {
		out.Identity = &api.Identity{Type: "SystemAssigned", PrincipalID: t.Identity}
	}
	if t.Context != "" && git.IsGit(t.Context) {
		st := "Disabled"
		if t.CommitTrigger {
			st = "Enabled"
		}
		gc, _ := git.Parse(t.Context)
		out.Trigger.SourceTrigger = &api.SourceTrigger{Status: st, RepositoryURL: gc.URL, Branch: gc.Branch()}
	}
	bst := "Disabled"
	if t.BaseImageTrigger {
		bst = "Enabled"
	}
	out.Trigger.BaseImageTrigger = &api.BaseImageTrigger{Status: bst, Type: t.BaseImageTriggerType}
	for _, tm := range t.Timers {
		st := "Disabled"
		if tm.Enabled {
			st = "Enabled"
		}
		out.Trigger.TimerTriggers = append(out.Trigger.TimerTriggers, api.TimerTrigger{Name: tm.Name, Schedule: tm.Schedule, Status: st})
	}
	for _, c := range t.Credentials {
		out.Credentials = append(out.Credentials, api.TaskCredential{LoginServer: c.LoginServer, Username: c.Username,
			Password: c.Password, UseIdentity: c.UseIdentity})
	}
	bases, err := s.tasks.BaseImages(ctx, t.ID)
	if err != nil {
		return out, err
	}
	for _, b := range bases {
		typ := "BuildTime"
		if b.Runtime {
			typ = "RunTime"
		}
		out.Step.BaseImageDependencies = append(out.Step.BaseImageDependencies, api.BaseImageDependency{
			Type: typ, Image: b.Image, Registry: b.Registry, Repository: b.Repository, Tag: b.Tag, Digest: b.Digest,
			RunID: b.RunID, UpdatedAt: b.UpdatedAt,
		})
	}
	if len(bases) == 0 {
		out.Step.BaseImageDependenciesStatus = "none yet: base images are recorded by the first successful run that builds an image; until then no base-image update can trigger this task"
	}
	return out, s.addTriggerInfo(ctx, &out)
}

func cutPlatform(p string) (string, string, bool) {
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			return p[:i], p[i+1:], true
		}
	}
	return "", "", false
}

func taskScope(reg, name string) string { return registryObject(reg, "tasks", name) }

// taskOp reads a request's registry and task name and checks that the caller
// may perform op on the task.
func (s *Server) taskOp(r *http.Request, op auth.Operation) (reg, name string, err error) {
	reg, name = r.PathValue("reg"), r.PathValue("name")
	return reg, name, s.check(r, op, taskScope(reg, name))
}

// runOp reads a request's registry and run ID and checks that the caller
// may perform op on the run.
func (s *Server) runOp(r *http.Request, op auth.Operation) (reg, id string, err error) {
	reg, id = r.PathValue("reg"), r.PathValue("id")
	return reg, id, s.check(r, op, registryObject(reg, "runs", id))
}

func (s *Server) listTasks(w http.ResponseWriter, r *http.Request) error {
	reg := r.PathValue("reg")
	if err := s.check(r, auth.OpRead, taskScope(reg, "")); err != nil {
		return err
	}
	if _, err := s.store.GetRegistry(r.Context(), reg); err != nil {
		return err
	}
	ts, err := s.tasks.ListTasks(r.Context(), reg)
	if err != nil {
		return err
	}
	out := make([]api.Task, 0, len(ts))
	for _, t := range ts {
		at, err := s.toAPITask(r.Context(), t)
		if err != nil {
			return err
		}
		out = append(out, at)
	}
	return reply(w, http.StatusOK, out)
}

func (s *Server) createTask(w http.ResponseWriter, r *http.Request) error {
	reg := r.PathValue("reg")
	if err := s.check(r, auth.OpWrite, taskScope(reg, "")); err != nil {
		return err
	}
	var req api.CreateTaskRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if _, err := s.store.GetRegistry(r.Context(), reg); err != nil {
		return err
	}
	t, err := s.tasks.CreateTask(r.Context(), task.CreateRequest{
		Registry: reg, Name: req.Name, Context: req.Context, File: req.File, FileContent: req.FileContent,
		GitToken: req.GitAccessToken,
		Spec:     task.Spec{Images: req.Images, Args: req.Arguments, Target: req.Target, NoPush: req.NoPush, Values: req.Values},
		Status:   req.Status, Platform: req.Platform, Timeout: time.Duration(req.TimeoutSeconds) * time.Second,
		AssignIdentity: req.AssignIdentity, CommitTrigger: req.CommitTrigger, BaseImageTrigger: req.BaseImageTrigger,
		BaseImageTriggerType: req.BaseImageTriggerType, Schedules: req.Schedules,
		Admin: identity(r.Context()).Admin(),
	})
	return s.replyTask(w, r, http.StatusCreated, t, err)
}

func (s *Server) getTask(w http.ResponseWriter, r *http.Request) error {
	reg, name, err := s.taskOp(r, auth.OpRead)
	if err != nil {
		return err
	}
	t, err := s.tasks.GetTask(r.Context(), reg, name)
	return s.replyTask(w, r, http.StatusOK, t, err)
}

func (s *Server) updateTask(w http.ResponseWriter, r *http.Request) error {
	reg, name, err := s.taskOp(r, auth.OpWrite)
	if err != nil {
		return err
	}
	var req api.UpdateTaskRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	u := task.UpdateRequest{
		Context: req.Context, File: req.File, FileContent: req.FileContent, GitToken: req.GitAccessToken,
		Images: req.Images, Args: req.Arguments, Target: req.Target, NoPush: req.NoPush, Values: req.Values,
		Status: req.Status, Platform: req.Platform, AssignIdentity: req.AssignIdentity, CommitTrigger: req.CommitTrigger,
		BaseImageTrigger: req.BaseImageTrigger, BaseImageTriggerType: req.BaseImageTriggerType, Schedules: req.Schedules,
		Admin: identity(r.Context()).Admin(),
	}
	if req.TimeoutSeconds != nil {
		d := time.Duration(*req.TimeoutSeconds) * time.Second
		u.Timeout = &d
	}
	t, err := s.tasks.UpdateTask(r.Context(), reg, name, u)
	return s.replyTask(w, r, http.StatusOK, t, err)
}

func (s *Server) deleteTask(w http.ResponseWriter, r *http.Request) error {
	reg, name, err := s.taskOp(r, auth.OpWrite)
	if err != nil {
		return err
	}
	if err := s.tasks.DeleteTask(r.Context(), reg, name); err != nil {
		return err
	}
	return reply(w, http.StatusNoContent, nil)
}

// replyTask answers with a task (or the error that came instead of it).
func (s *Server) replyTask(w http.ResponseWriter, r *http.Request, status int, t *task.Task, err error) error {
	if err != nil {
		return err
	}
	out, err := s.toAPITask(r.Context(), t)
	if err != nil {
		return err
	}
	return reply(w, status, out)
}

func (s *Server) credentialRequest(r *http.Request) (task.CredentialRequest, error) {
	if _, _, err := s.taskOp(r, auth.OpWrite); err != nil {
		return task.CredentialRequest{}, err
	}
	var req api.CredentialRequest
	if err := decode(r, &req); err != nil {
		return task.CredentialRequest{}, err
	}
	return task.CredentialRequest{LoginServer: req.LoginServer, Username: req.Username, Password: req.Password, UseIdentity: req.UseIdentity}, nil
}

func (s *Server) addTaskCredential(w http.ResponseWriter, r *http.Request) error {
	c, err := s.credentialRequest(r)
	if err != nil {
		return err
	}
	t, err := s.tasks.AddCredential(r.Context(), r.PathValue("reg"), r.PathValue("name"), c)
	return s.replyTask(w, r, http.StatusOK, t, err)
}

func (s *Server) updateTaskCredential(w http.ResponseWriter, r *http.Request) error {
	c, err := s.credentialRequest(r)
	if err != nil {
		return err
	}
	t, err := s.tasks.UpdateCredential(r.Context(), r.PathValue("reg"), r.PathValue("name"), c)
	return s.replyTask(w, r, http.StatusOK, t, err)
}

func (s *Server) removeTaskCredential(w http.ResponseWriter, r *http.Request) error {
	reg, name, err := s.taskOp(r, auth.OpWrite)
	if err != nil {
		return err
	}
	server := r.URL.Query().Get("loginServer")
	if server == "" {
		return invalidField("loginServer", "must be set")
	}
	t, err := s.tasks.RemoveCredential(r.Context(), reg, name, server)
	return s.replyTask(w, r, http.StatusOK, t, err)
}

// timerRequest reads a timer add/update request on a task the caller may
// change.
func (s *Server) timerRequest(r *http.Request) (reg, name string, req api.TimerRequest, err error) {
	if reg, name, err = s.taskOp(r, auth.OpWrite); err != nil {
		return reg, name, req, err
	}
	return reg, name, req, decode(r, &req)
}

func (s *Server) addTimer(w http.ResponseWriter, r *http.Request) error {
	reg, name, req, err := s.timerRequest(r)
	if err != nil {
		return err
	}
	if req.Schedule == nil {
		return invalidField("schedule", "must be set")
	}
	tm := task.Timer{Name: req.Name, Schedule: *req.Schedule, Enabled: req.Enabled == nil || *req.Enabled}
	t, err := s.tasks.AddTimer(r.Context(), reg, name, tm)
	return s.replyTask(w, r, http.StatusOK, t, err)
}

func (s *Server) updateTimer(w http.ResponseWriter, r *http.Request) error {
	reg, name, req, err := s.timerRequest(r)
	if err != nil {
		return err
	}
	t, err := s.tasks.UpdateTimer(r.Context(), reg, name, r.PathValue("timer"), req.Schedule, req.Enabled)
	return s.replyTask(w, r, http.StatusOK, t, err)
}

func (s *Server) removeTimer(w http.ResponseWriter, r *http.Request) error {
	reg, name, err := s.taskOp(r, auth.OpWrite)
	if err != nil {
		return err
	}
	t, err := s.tasks.RemoveTimer(r.Context(), reg, name, r.PathValue("timer"))
	return s.replyTask(w, r, http.StatusOK, t, err)
}

func (s *Server) runTask(w http.ResponseWriter, r *http.Request) error {
	reg, name, err := s.taskOp(r, auth.OpWrite)
	if err != nil {
		return err
	}
	var req api.RunTaskRequest
	if r.ContentLength != 0 {
		if err := decode(r, &req); err != nil {
			return err
		}
	}
	run, err := s.tasks.QueueRun(r.Context(), task.QueueRequest{Registry: reg, Task: name, Trigger: task.TriggerManual, Values: req.Values})
	if err != nil {
		return err
	}
	return reply(w, http.StatusAccepted, toAPIRun(run, time.Now()))
}

// maxQuickRunRequest bounds the JSON part of a quick run.
const maxQuickRunRequest = 4 << 20

func (s *Server) quickRun(w http.ResponseWriter, r *http.Request) error {
	reg := r.PathValue("reg")
	if err := s.check(r, auth.OpWrite, registryObject(reg, "runs", "")); err != nil {
		return err
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		return invalid("a quick run is multipart/form-data with a \"request\" part and an optional \"context\" part")
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	var req api.QuickRunRequest
	gotRequest := false
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return invalid("reading the multipart body: %v", err)
		}
		switch part.FormName() {
		case "request":
			dec := json.NewDecoder(io.LimitReader(part, maxQuickRunRequest))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&req); err != nil {
				return invalid("request part: %v", err)
			}
			gotRequest = true
		case "context":
			if !gotRequest {
				return invalid("the request part must come before the context part")
			}
			run, err := s.tasks.QueueQuickRun(r.Context(), quickRunRequest(reg, req, part))
			if err != nil {
				return err
			}
			return reply(w, http.StatusAccepted, toAPIRun(run, time.Now()))
		default:
			return invalid("unexpected part %q", part.FormName())
		}
	}
	if !gotRequest {
		return invalid("missing the request part")
	}
	run, err := s.tasks.QueueQuickRun(r.Context(), quickRunRequest(reg, req, nil))
	if err != nil {
		return err
	}
	return reply(w, http.StatusAccepted, toAPIRun(run, time.Now()))
}

func quickRunRequest(reg string, req api.QuickRunRequest, archive io.Reader) task.QuickRunRequest {
	return task.QuickRunRequest{
		Registry: reg, Build: req.Build, Archive: archive,
		Request: task.Request{
			Values: req.Values, File: req.File, FileContent: req.FileContent, Images: req.Images, Args: req.Arguments,
			Target: req.Target, NoPush: req.NoPush, TimeoutSeconds: req.TimeoutSeconds,
		},
	}
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) error {
	reg := r.PathValue("reg")
	if err := s.check(r, auth.OpRead, registryObject(reg, "runs", "")); err != nil {
		return err
	}
	q := r.URL.Query()
	f := task.RunFilter{Registry: reg, Task: q.Get("task"), Status: q.Get("status")}
	if top := q.Get("top"); top != "" {
		n, err := strconv.Atoi(top)
		if err != nil {
			return invalidField("top", "%q is not a number", top)
		}
		f.Top = n
	}
	if _, err := s.store.GetRegistry(r.Context(), reg); err != nil {
		return err
	}
	runs, err := s.tasks.ListRuns(r.Context(), f)
	if err != nil {
		return err
	}
	now := time.Now()
	out := make([]api.Run, 0, len(runs))
	for _, run := range runs {
		out = append(out, toAPIRun(run, now))
	}
	return reply(w, http.StatusOK, out)
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request) error {
	reg, id, err := s.runOp(r, auth.OpRead)
	if err != nil {
		return err
	}
	run, err := s.tasks.GetRun(r.Context(), reg, id)
	if err != nil {
		return err
	}
	out := toAPIRun(run, time.Now())
	if out.Chain, err = s.chainLinks(r.Context(), reg, id); err != nil {
		return err
	}
	return reply(w, http.StatusOK, out)
}

func (s *Server) cancelRun(w http.ResponseWriter, r *http.Request) error {
	reg, id, err := s.runOp(r, auth.OpWrite)
	if err != nil {
		return err
	}
	run, err := s.tasks.CancelRun(r.Context(), reg, id)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, toAPIRun(run, time.Now()))
}

// flushWriter flushes after every write so logs stream to the client.
type flushWriter struct {
	w http.ResponseWriter
	f http.Flusher
}

func (fw flushWriter) Write(p []byte) (int, error) {
	n, err := fw.w.Write(p)
	if fw.f != nil {
		fw.f.Flush()
	}
	return n, err
}

func (s *Server) runLogs(w http.ResponseWriter, r *http.Request) error {
	reg, id, err := s.runOp(r, auth.OpRead)
	if err != nil {
		return err
	}
	if _, err := s.tasks.GetRun(r.Context(), reg, id); err != nil {
		return err
	}
	follow := r.URL.Query().Get("follow") == "true"
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	f, _ := w.(http.Flusher)
	if err := s.tasks.Logs(r.Context(), reg, id, follow, flushWriter{w: w, f: f}); err != nil && r.Context().Err() == nil {
		// The status line is already sent: report in the stream.
		fmt.Fprintf(w, "\nERROR: reading the run log: %v\n", err)
	}
	return nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// FormatDuration formats d as HH:MM:SS, as az's list-runs does.
func FormatDuration(d time.Duration) string {
	d = d.Round(time.Second)
	h := d / time.Hour
	m := (d % time.Hour) / time.Minute
	sec := (d % time.Minute) / time.Second
	return fmt.Sprintf("%02d:%02d:%02d", h, m, sec)
}

func toAPIImage(i engine.Image) api.RunImage {
	return api.RunImage{Registry: i.Registry, Repository: i.Repository, Tag: i.Tag, Digest: i.Digest}
}

func toAPIRun(r *task.Run, now time.Time) api.Run {
	out := api.Run{
		RunID: r.ID, Registry: r.Registry, Task: r.TaskName, RunType: r.RunType, Status: r.Status, Trigger: r.Trigger,
		Platform: r.Platform, Commit: r.Commit, Branch: r.Branch, CreateTime: r.CreatedAt,
		StartTime: timePtr(r.StartedAt), FinishTime: timePtr(r.FinishedAt), Duration: FormatDuration(r.Duration(now)),
		Error: r.Error, OutputImages: []api.RunImage{}, BaseImages: []api.RunImage{}, Steps: []api.RunStep{},
	}
	if c := r.Cause.Commit; c != nil {
		out.Cause.Commit = &api.CommitCause{Repository: c.Repository, Branch: c.Branch, Commit: c.Commit, Previous: c.Previous, Source: c.Source}
	}
	if c := r.Cause.ImageUpdate; c != nil {
		out.Cause.ImageUpdate = &api.ImageCause{Image: c.Image, OldDigest: c.OldDigest, NewDigest: c.NewDigest, Registry: c.Registry,
			RunID: c.RunID, PushedBy: c.PushedBy}
	}
	if c := r.Cause.Timer; c != nil {
		out.Cause.Timer = &api.TimerCause{Name: c.Name, Schedule: c.Schedule, Time: c.Time}
	}
	out.Cause.Note = r.Cause.Note
	for _, i := range r.OutputImages {
		out.OutputImages = append(out.OutputImages, toAPIImage(i))
	}
	for _, b := range r.BaseImages {
		ai := toAPIImage(b.Image)
		ai.Type, ai.Step = "BuildTime", b.Step
		if b.Runtime {
			ai.Type = "RunTime"
		}
		out.BaseImages = append(out.BaseImages, ai)
	}
	for _, st := range r.Steps {
		out.Steps = append(out.Steps, api.RunStep{ID: st.ID, Status: st.Status, StartTime: timePtr(st.StartedAt),
			FinishTime: timePtr(st.FinishedAt), ExitCode: st.ExitCode, Error: st.Error})
	}
	return out
}
