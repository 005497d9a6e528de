package client

import (
	"context"
	"net/http"

	"github.com/gantryhq/gantry/api"
)

func vaultPath(vault, rest string) string { return "/v1/keyvaults/" + pathEscape(vault) + rest }

// ListKeyVaults returns the vaults.
func (c *Client) ListKeyVaults(ctx context.Context) ([]api.KeyVault, error) {
	return list[api.KeyVault](ctx, c, "/v1/keyvaults", nil)
}

// CreateKeyVault creates a vault.
func (c *Client) CreateKeyVault(ctx context.Context, name string) (*api.KeyVault, error) {
	return send[api.KeyVault](ctx, c, http.MethodPost, "/v1/keyvaults", nil, api.CreateKeyVaultRequest{Name: name})
}

// GetKeyVault returns a vault.
func (c *Client) GetKeyVault(ctx context.Context, name string) (*api.KeyVault, error) {
	return send[api.KeyVault](ctx, c, http.MethodGet, vaultPath(name, ""), nil, nil)
}

// DeleteKeyVault deletes a vault and its secrets.
func (c *Client) DeleteKeyVault(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, vaultPath(name, ""), nil, nil, nil)
}

// SetSecret stores a new version of a secret.
func (c *Client) SetSecret(ctx context.Context, vault, name, value string) (*api.Secret, error) {
	return send[api.Secret](ctx, c, http.MethodPut, vaultPath(vault, "/secrets/"+pathEscape(name)), nil, api.SetSecretRequest{Value: value})
}

// GetSecret returns a secret with its value.
func (c *Client) GetSecret(ctx context.Context, vault, name string) (*api.Secret, error) {
	return send[api.Secret](ctx, c, http.MethodGet, vaultPath(vault, "/secrets/"+pathEscape(name)), nil, nil)
}

// ListSecrets returns a vault's secrets without their values.
func (c *Client) ListSecrets(ctx context.Context, vault string) ([]api.Secret, error) {
	return list[api.Secret](ctx, c, vaultPath(vault, "/secrets"), nil)
}

// DeleteSecret deletes a secret.
func (c *Client) DeleteSecret(ctx context.Context, vault, name string) error {
	return c.do(ctx, http.MethodDelete, vaultPath(vault, "/secrets/"+pathEscape(name)), nil, nil, nil)
}

// SetPolicy sets a principal's secret permissions on a vault.
func (c *Client) SetPolicy(ctx context.Context, vault string, p api.VaultPolicy) (*api.VaultPolicy, error) {
	return send[api.VaultPolicy](ctx, c, http.MethodPut, vaultPath(vault, "/policies"), nil, p)
}

// ListPolicies returns a vault's policies.
func (c *Client) ListPolicies(ctx context.Context, vault string) ([]api.VaultPolicy, error) {
	return list[api.VaultPolicy](ctx, c, vaultPath(vault, "/policies"), nil)
}

// DeletePolicy removes a principal's policy from a vault.
func (c *Client) DeletePolicy(ctx context.Context, vault, objectID string) error {
	return c.do(ctx, http.MethodDelete, vaultPath(vault, "/policies/"+pathEscape(objectID)), nil, nil, nil)
}
