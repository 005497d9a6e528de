package docker

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
)

// Network is a network of the engine.
//
// On gantry's engine (dockerd with --bridge=none --iptables=false) the
// predefined networks are "host" and "none" only; there is no default
// "bridge" network. User-defined bridge networks can be created: containers
// on one reach each other by name through the engine's DNS, but nothing is
// routed beyond the bridge (no NAT without iptables).
type Network struct {
	ID       string `json:"Id"`
	Name     string
	Driver   string
	Scope    string
	Internal bool
	Labels   map[string]string
}

// CreateNetwork creates a network with the given driver ("" means bridge)
// and returns its ID. A name that is taken fails with ErrConflict.
func (c *Client) CreateNetwork(ctx context.Context, name, driver string, labels map[string]string) (string, error) {
	if driver == "" {
		driver = "bridge"
	}
	body := struct {
		Name           string
		Driver         string
		Labels         map[string]string `json:",omitempty"`
		CheckDuplicate bool
	}{Name: name, Driver: driver, Labels: labels, CheckDuplicate: true}
	var resp struct {
		ID      string `json:"Id"`
		Warning string
	}
	if err := c.sendJSON(ctx, http.MethodPost, "/networks/create", nil, body, &resp); err != nil {
		return "", fmt.Errorf("creating network %q (driver %s): %w", name, driver, err)
	}
	if resp.Warning != "" {
		c.log.WarnContext(ctx, "engine warning", logKeyObject, name, logKeyWarning, resp.Warning)
	}
	return resp.ID, nil
}

// InspectNetwork returns the network with the given name or ID.
func (c *Client) InspectNetwork(ctx context.Context, name string) (Network, error) {
	var n Network
	if err := c.getJSON(ctx, "/networks/"+name, nil, &n); err != nil {
		return Network{}, fmt.Errorf("inspecting network %q: %w", name, err)
	}
	return n, nil
}

// RemoveNetwork removes a network. One that still has containers ("has
// active endpoints") or a predefined one fails with ErrConflict, a missing
// one with ErrNotFound.
func (c *Client) RemoveNetwork(ctx context.Context, name string) error {
	if err := c.sendJSON(ctx, http.MethodDelete, "/networks/"+name, nil, nil, nil); err != nil {
		return fmt.Errorf("removing network %q: %w", name, err)
	}
	return nil
}

// ListNetworks lists networks carrying all of the labels ("key" or
// "key=value"); with none, all networks.
func (c *Client) ListNetworks(ctx context.Context, labels ...string) ([]Network, error) {
	q := url.Values{}
	if s := filters(map[string][]string{"label": labels}); s != "" {
		q.Set("filters", s)
	}
	var list []Network
	if err := c.getJSON(ctx, "/networks", q, &list); err != nil {
		return nil, fmt.Errorf("listing networks: %w", err)
	}
	return list, nil
}
