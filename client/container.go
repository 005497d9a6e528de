package client

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gantryhq/gantry/api"
)

func containerPath(name string) string { return "/v1/containers/" + pathEscape(name) }

// CreateContainer creates the container instance name, or replaces its
// container without downtime when it exists (see api.CreateContainerRequest).
// The result's Operation says what happened. It returns once the new
// container answers on its ports.
func (c *Client) CreateContainer(ctx context.Context, name string, req api.CreateContainerRequest) (*api.Container, error) {
	return send[api.Container](ctx, c, http.MethodPut, containerPath(name), nil, req)
}

// GetContainer returns a container instance with its live state.
func (c *Client) GetContainer(ctx context.Context, name string) (*api.Container, error) {
	return send[api.Container](ctx, c, http.MethodGet, containerPath(name), nil, nil)
}

// ListContainers returns every container instance.
func (c *Client) ListContainers(ctx context.Context) ([]api.Container, error) {
	return list[api.Container](ctx, c, "/v1/containers", nil)
}

// DeleteContainer stops and removes a container instance.
func (c *Client) DeleteContainer(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, containerPath(name), nil, nil, nil)
}

// ContainerLogsOptions selects the output ContainerLogs returns.
type ContainerLogsOptions struct {
	Tail       int  // only the last Tail lines (0: all)
	Follow     bool // keep streaming until the container stops or ctx ends
	Timestamps bool // prefix lines with their time
}

// ContainerLogs returns the output (stdout and stderr) of the instance's
// current container as text; the caller closes it.
func (c *Client) ContainerLogs(ctx context.Context, name string, opts ContainerLogsOptions) (io.ReadCloser, error) {
	q := url.Values{}
	if opts.Tail > 0 {
		q.Set("tail", strconv.Itoa(opts.Tail))
	}
	if opts.Follow {
		q.Set("follow", "true")
	}
	if opts.Timestamps {
		q.Set("timestamps", "true")
	}
	return c.stream(ctx, http.MethodGet, containerPath(name)+"/logs", q, nil, "")
}
