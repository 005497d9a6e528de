package client

import (
	"context"
	"net/http"

	"github.com/gantryhq/gantry/api"
)

func vaultPath(vault, rest string) string { return "/v1/keyvaults/" + pathEscape(vault) + rest }

// ListKeyVaults returns the vaults.
func (c *Client) ListKeyVaults(ctx context.Context) ([]api.KeyVault, error) {
	var out []api.KeyVault
	return out, c.do(ctx, http.MethodGet, "/v1/keyvaults", nil, nil, &out)
}

// CreateKeyVault creates a vault.
func (c *Client) CreateKeyVault(ctx context.Context, name string) (*api.KeyVault, error) {
	var out api.KeyVault
	return &out, c.do(ctx, http.MethodPost, "/v1/keyvaults", nil, api.CreateKeyVaultRequest{Name: name}, &out)
}

// GetKeyVault returns a vault.
func (c *Client) GetKeyVault(ctx context.Context, name string) (*api.KeyVault, error) {
	var out api.KeyVault
	return &out, c.do(ctx, http.MethodGet, vaultPath(name, ""), nil, nil, &out)
}

// DeleteKeyVault deletes a vault and its secrets.
func (c *Client) DeleteKeyVault(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, vaultPath(name, ""), nil, nil, nil)
}

// SetSecret stores a new version of a secret.
func (c *Client) SetSecret(ctx context.Context, vault, name, value string) (*api.Secret, error) {
	var out api.Secret
	return &out, c.do(ctx, http.MethodPut, vaultPath(vault, "/secrets/"+pathEscape(name)), nil, api.SetSecretRequest{Value: value}, &out)
}

// GetSecret returns a secret with its value.
func (c *Client) GetSecret(ctx context.Context, vault, name string) (*api.Secret, error) {
	var out api.Secret
	return &out, c.do(ctx, http.MethodGet, vaultPath(vault, "/secrets/"+pathEscape(name)), nil, nil, &out)
}

// ListSecrets returns a vault's secrets without their values.
func (c *Client) ListSecrets(ctx context.Context, vault string) ([]api.Secret, error) {
	var out []api.Secret
	return out, c.do(ctx, http.MethodGet, vaultPath(vault, "/secrets"), nil, nil, &out)
}

// DeleteSecret deletes a secret.
func (c *Client) DeleteSecret(ctx context.Context, vault, name string) error {
	return c.do(ctx, http.MethodDelete, vaultPath(vault, "/secrets/"+pathEscape(name)), nil, nil, nil)
}

// SetPolicy sets a principal's secret permissions on a vault.
func (c *Client) SetPolicy(ctx context.Context, vault string, p api.VaultPolicy) (*api.VaultPolicy, error) {
	var out api.VaultPolicy
	return &out, c.do(ctx, http.MethodPut, vaultPath(vault, "/policies"), nil, p, &out)
}

// ListPolicies returns a vault's policies.
func (c *Client) ListPolicies(ctx context.Context, vault string) ([]api.VaultPolicy, error) {
	var out []api.VaultPolicy
	return out, c.do(ctx, http.MethodGet, vaultPath(vault, "/policies"), nil, nil, &out)
}

// DeletePolicy removes a principal's policy from a vault.
func (c *Client) DeletePolicy(ctx context.Context, vault, objectID string) error {
	return c.do(ctx, http.MethodDelete, vaultPath(vault, "/policies/"+pathEscape(objectID)), nil, nil, nil)
}
