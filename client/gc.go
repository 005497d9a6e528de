package client

import (
	"context"
	"net/http"

	"github.com/gantryhq/gantry/api"
)

// RunGC runs a garbage collection pass on the server and returns what it
// removed (or, with DryRun, would remove) once it is over. A pass waits for
// one already running (a scheduled pass) to end first. Admin only: other
// callers get api.ErrDenied; an unknown Registry, api.ErrNotFound.
func (c *Client) RunGC(ctx context.Context, req api.GCRequest) (*api.GCResult, error) {
	return send[api.GCResult](ctx, c, http.MethodPost, "/v1/gc", nil, req)
}
