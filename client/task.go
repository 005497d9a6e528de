package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"

	"github.com/gantryhq/gantry/api"
)

func taskPath(registry, name, rest string) string {
	return regPath(registry, "/tasks/"+pathEscape(name)+rest)
}

// CreateTask creates a task.
func (c *Client) CreateTask(ctx context.Context, registry string, req api.CreateTaskRequest) (*api.Task, error) {
	return send[api.Task](ctx, c, http.MethodPost, regPath(registry, "/tasks"), nil, req)
}

// UpdateTask changes a task.
func (c *Client) UpdateTask(ctx context.Context, registry, name string, req api.UpdateTaskRequest) (*api.Task, error) {
	return send[api.Task](ctx, c, http.MethodPatch, taskPath(registry, name, ""), nil, req)
}

// GetTask returns a task.
func (c *Client) GetTask(ctx context.Context, registry, name string) (*api.Task, error) {
	return send[api.Task](ctx, c, http.MethodGet, taskPath(registry, name, ""), nil, nil)
}

// ListTasks returns a registry's tasks.
func (c *Client) ListTasks(ctx context.Context, registry string) ([]api.Task, error) {
	return list[api.Task](ctx, c, regPath(registry, "/tasks"), nil)
}

// DeleteTask deletes a task (its runs stay).
func (c *Client) DeleteTask(ctx context.Context, registry, name string) error {
	return c.do(ctx, http.MethodDelete, taskPath(registry, name, ""), nil, nil, nil)
}

// RunTask queues a manual run of a task.
func (c *Client) RunTask(ctx context.Context, registry, name string, req api.RunTaskRequest) (*api.Run, error) {
	return send[api.Run](ctx, c, http.MethodPost, taskPath(registry, name, "/runs"), nil, req)
}

// AddTaskCredential adds a registry login to a task.
func (c *Client) AddTaskCredential(ctx context.Context, registry, name string, req api.CredentialRequest) (*api.Task, error) {
	return send[api.Task](ctx, c, http.MethodPost, taskPath(registry, name, "/credentials"), nil, req)
}

// UpdateTaskCredential replaces a task's login for a server.
func (c *Client) UpdateTaskCredential(ctx context.Context, registry, name string, req api.CredentialRequest) (*api.Task, error) {
	return send[api.Task](ctx, c, http.MethodPut, taskPath(registry, name, "/credentials"), nil, req)
}

// RemoveTaskCredential removes a task's login for a server.
func (c *Client) RemoveTaskCredential(ctx context.Context, registry, name, loginServer string) (*api.Task, error) {
	q := url.Values{"loginServer": {loginServer}}
	return send[api.Task](ctx, c, http.MethodDelete, taskPath(registry, name, "/credentials"), q, nil)
}

// AddTimer adds a timer trigger.
func (c *Client) AddTimer(ctx context.Context, registry, name string, req api.TimerRequest) (*api.Task, error) {
	return send[api.Task](ctx, c, http.MethodPost, taskPath(registry, name, "/timers"), nil, req)
}

// UpdateTimer changes a timer's schedule or enabled state.
func (c *Client) UpdateTimer(ctx context.Context, registry, name string, req api.TimerRequest) (*api.Task, error) {
	return send[api.Task](ctx, c, http.MethodPatch, taskPath(registry, name, "/timers/"+pathEscape(req.Name)), nil, req)
}

// RemoveTimer removes a timer trigger.
func (c *Client) RemoveTimer(ctx context.Context, registry, name, timer string) (*api.Task, error) {
	return send[api.Task](ctx, c, http.MethodDelete, taskPath(registry, name, "/timers/"+pathEscape(timer)), nil, nil)
}

// RunFilter selects runs.
type RunFilter struct {
	Task   string
	Status string
	Top    int
}

// ListRuns returns a registry's runs, newest first.
func (c *Client) ListRuns(ctx context.Context, registry string, f RunFilter) ([]api.Run, error) {
	q := url.Values{}
	if f.Task != "" {
		q.Set("task", f.Task)
	}
	if f.Status != "" {
		q.Set("status", f.Status)
	}
	if f.Top != 0 {
		q.Set("top", strconv.Itoa(f.Top))
	}
	return list[api.Run](ctx, c, regPath(registry, "/runs"), q)
}

// GetRun returns a run, with the chain of runs that caused it.
func (c *Client) GetRun(ctx context.Context, registry, id string) (*api.Run, error) {
	return send[api.Run](ctx, c, http.MethodGet, regPath(registry, "/runs/"+pathEscape(id)), nil, nil)
}

// CancelRun cancels a queued or running run and returns it once it ended.
func (c *Client) CancelRun(ctx context.Context, registry, id string) (*api.Run, error) {
	return send[api.Run](ctx, c, http.MethodPost, regPath(registry, "/runs/"+pathEscape(id)+"/cancel"), nil, nil)
}

// RunLogs returns a run's log; with follow, the stream stays open until the
// run ends. The caller closes it.
func (c *Client) RunLogs(ctx context.Context, registry, id string, follow bool) (io.ReadCloser, error) {
	q := url.Values{}
	if follow {
		q.Set("follow", "true")
	}
	return c.stream(ctx, http.MethodGet, regPath(registry, "/runs/"+pathEscape(id)+"/logs"), q, nil, "")
}

// QuickRun queues a one-off run or build. context, if not nil, is the
// build context as a gzipped tar; it is streamed, not buffered.
func (c *Client) QuickRun(ctx context.Context, registry string, req api.QuickRunRequest, context io.Reader) (*api.Run, error) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		err := func() error {
			h := textproto.MIMEHeader{}
			h.Set("Content-Disposition", `form-data; name="request"`)
			h.Set("Content-Type", "application/json")
			part, err := mw.CreatePart(h)
			if err != nil {
				return err
			}
			if err := json.NewEncoder(part).Encode(req); err != nil {
				return err
			}
			if context != nil {
				h := textproto.MIMEHeader{}
				h.Set("Content-Disposition", `form-data; name="context"; filename="context.tar.gz"`)
				h.Set("Content-Type", "application/gzip")
				part, err := mw.CreatePart(h)
				if err != nil {
					return err
				}
				if _, err := io.Copy(part, context); err != nil {
					return fmt.Errorf("sending the context: %w", err)
				}
			}
			return mw.Close()
		}()
		pw.CloseWithError(err)
	}()
	body, err := c.stream(ctx, http.MethodPost, regPath(registry, "/runs"), nil, pr, mw.FormDataContentType())
	if err != nil {
		pr.Close()
		return nil, err
	}
	defer body.Close()
	var out api.Run
	if err := json.NewDecoder(body).Decode(&out); err != nil {
		return nil, fmt.Errorf("decoding the queued run: %w", err)
	}
	return &out, nil
}

// TaskWebhook returns a task's webhook path and HMAC secret (created on
// first use).
func (c *Client) TaskWebhook(ctx context.Context, registry, name string) (*api.Webhook, error) {
	return send[api.Webhook](ctx, c, http.MethodGet, taskPath(registry, name, "/webhook"), nil, nil)
}

// RotateTaskWebhook replaces a task's webhook secret.
func (c *Client) RotateTaskWebhook(ctx context.Context, registry, name string) (*api.Webhook, error) {
	return send[api.Webhook](ctx, c, http.MethodPost, taskPath(registry, name, "/webhook/rotate"), nil, nil)
}
