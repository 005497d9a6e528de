package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/gantryhq/gantry/api"
)

func regPath(registry, rest string) string { return "/v1/registries/" + pathEscape(registry) + rest }

// ListScopeMaps returns a registry's scope maps, the system maps included.
func (c *Client) ListScopeMaps(ctx context.Context, registry string) ([]api.ScopeMap, error) {
	return list[api.ScopeMap](ctx, c, regPath(registry, "/scope-maps"), nil)
}

// CreateScopeMap creates a scope map.
func (c *Client) CreateScopeMap(ctx context.Context, registry string, req api.CreateScopeMapRequest) (*api.ScopeMap, error) {
	return send[api.ScopeMap](ctx, c, http.MethodPost, regPath(registry, "/scope-maps"), nil, req)
}

// GetScopeMap returns a scope map.
func (c *Client) GetScopeMap(ctx context.Context, registry, name string) (*api.ScopeMap, error) {
	return send[api.ScopeMap](ctx, c, http.MethodGet, regPath(registry, "/scope-maps/"+pathEscape(name)), nil, nil)
}

// UpdateScopeMap adds and removes repository actions of a scope map.
func (c *Client) UpdateScopeMap(ctx context.Context, registry, name string, req api.UpdateScopeMapRequest) (*api.ScopeMap, error) {
	return send[api.ScopeMap](ctx, c, http.MethodPatch, regPath(registry, "/scope-maps/"+pathEscape(name)), nil, req)
}

// DeleteScopeMap deletes a scope map no token uses.
func (c *Client) DeleteScopeMap(ctx context.Context, registry, name string) error {
	return c.do(ctx, http.MethodDelete, regPath(registry, "/scope-maps/"+pathEscape(name)), nil, nil, nil)
}

// ListTokens returns a registry's tokens (without password values).
func (c *Client) ListTokens(ctx context.Context, registry string) ([]api.Token, error) {
	return list[api.Token](ctx, c, regPath(registry, "/tokens"), nil)
}

// CreateToken creates a token; the answer holds its passwords, shown once.
func (c *Client) CreateToken(ctx context.Context, registry string, req api.CreateTokenRequest) (*api.Token, error) {
	return send[api.Token](ctx, c, http.MethodPost, regPath(registry, "/tokens"), nil, req)
}

// GetToken returns a token (without password values).
func (c *Client) GetToken(ctx context.Context, registry, name string) (*api.Token, error) {
	return send[api.Token](ctx, c, http.MethodGet, regPath(registry, "/tokens/"+pathEscape(name)), nil, nil)
}

// UpdateToken changes a token's status or scope map.
func (c *Client) UpdateToken(ctx context.Context, registry, name string, req api.UpdateTokenRequest) (*api.Token, error) {
	return send[api.Token](ctx, c, http.MethodPatch, regPath(registry, "/tokens/"+pathEscape(name)), nil, req)
}

// DeleteToken deletes a token.
func (c *Client) DeleteToken(ctx context.Context, registry, name string) error {
	return c.do(ctx, http.MethodDelete, regPath(registry, "/tokens/"+pathEscape(name)), nil, nil, nil)
}

// GenerateCredential regenerates token passwords; the answer holds the new
// values, shown once.
func (c *Client) GenerateCredential(ctx context.Context, registry, name string, req api.GenerateCredentialRequest) (*api.Token, error) {
	return send[api.Token](ctx, c, http.MethodPost, regPath(registry, "/tokens/"+pathEscape(name)+"/credentials"), nil, req)
}

// RoleFilter selects role assignments.
type RoleFilter struct {
	ID, Assignee, Role, Scope string
}

func (f RoleFilter) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"id": f.ID, "assignee": f.Assignee, "role": f.Role, "scope": f.Scope} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

// ListRoleAssignments returns role assignments matching f.
func (c *Client) ListRoleAssignments(ctx context.Context, f RoleFilter) ([]api.RoleAssignment, error) {
	return list[api.RoleAssignment](ctx, c, "/v1/role-assignments", f.query())
}

// CreateRoleAssignment grants a role.
func (c *Client) CreateRoleAssignment(ctx context.Context, req api.CreateRoleAssignmentRequest) (*api.RoleAssignment, error) {
	return send[api.RoleAssignment](ctx, c, http.MethodPost, "/v1/role-assignments", nil, req)
}

// DeleteRoleAssignments deletes the role assignments matching f and
// returns how many there were.
func (c *Client) DeleteRoleAssignments(ctx context.Context, f RoleFilter) (int, error) {
	var out struct {
		Deleted int `json:"deleted"`
	}
	return out.Deleted, c.do(ctx, http.MethodDelete, "/v1/role-assignments", f.query(), nil, &out)
}
