package docker

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
)

// Volume is a named volume of the engine.
type Volume struct {
	Name       string
	Driver     string
	Mountpoint string // path on the engine's host
	Labels     map[string]string
	CreatedAt  string // RFC 3339, as the engine reports it
}

// CreateVolume creates a local volume. Creating a volume that exists returns
// the existing one (the engine's behaviour).
func (c *Client) CreateVolume(ctx context.Context, name string, labels map[string]string) (Volume, error) {
	body := struct {
		Name   string
		Driver string
		Labels map[string]string `json:",omitempty"`
	}{Name: name, Driver: "local", Labels: labels}
	var v Volume
	if err := c.sendJSON(ctx, http.MethodPost, "/volumes/create", nil, body, &v); err != nil {
		return Volume{}, fmt.Errorf("creating volume %q: %w", name, err)
	}
	return v, nil
}

// InspectVolume returns the named volume.
func (c *Client) InspectVolume(ctx context.Context, name string) (Volume, error) {
	var v Volume
	if err := c.getJSON(ctx, "/volumes/"+name, nil, &v); err != nil {
		return Volume{}, fmt.Errorf("inspecting volume %q: %w", name, err)
	}
	return v, nil
}

// RemoveVolume removes a volume. A volume in use fails with ErrConflict (also
// with force, which only ignores driver errors); a missing one with
// ErrNotFound unless force.
func (c *Client) RemoveVolume(ctx context.Context, name string, force bool) error {
	q := url.Values{}
	if force {
		q.Set("force", "1")
	}
	if err := c.sendJSON(ctx, http.MethodDelete, "/volumes/"+name, q, nil, nil); err != nil {
		return fmt.Errorf("removing volume %q: %w", name, err)
	}
	return nil
}

// ListVolumes lists volumes carrying all of the labels ("key" or
// "key=value"); with none, all volumes.
func (c *Client) ListVolumes(ctx context.Context, labels ...string) ([]Volume, error) {
	q := url.Values{}
	if s := filters(map[string][]string{"label": labels}); s != "" {
		q.Set("filters", s)
	}
	var resp struct{ Volumes []Volume }
	if err := c.getJSON(ctx, "/volumes", q, &resp); err != nil {
		return nil, fmt.Errorf("listing volumes: %w", err)
	}
	return resp.Volumes, nil
}
