package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/gantryhq/gantry/api"
)

// CreateRegistry creates a registry and starts its listener.
func (c *Client) CreateRegistry(ctx context.Context, req api.CreateRegistryRequest) (*api.Registry, error) {
	return send[api.Registry](ctx, c, http.MethodPost, "/v1/registries", nil, req)
}

// UpdateRegistry changes a registry's settings (its anonymous pull and
// quota); fields left nil stay as they are.
func (c *Client) UpdateRegistry(ctx context.Context, name string, req api.UpdateRegistryRequest) (*api.Registry, error) {
	return send[api.Registry](ctx, c, http.MethodPatch, regPath(name, ""), nil, req)
}

// GetRegistry returns one registry.
func (c *Client) GetRegistry(ctx context.Context, name string) (*api.Registry, error) {
	return send[api.Registry](ctx, c, http.MethodGet, regPath(name, ""), nil, nil)
}

// ListRegistries returns every registry.
func (c *Client) ListRegistries(ctx context.Context) ([]api.Registry, error) {
	return list[api.Registry](ctx, c, "/v1/registries", nil)
}

// DeleteRegistry stops a registry and deletes it with all its content
// records, tokens and tasks. Blobs no other registry uses are left to GC.
func (c *Client) DeleteRegistry(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, regPath(name, ""), nil, nil, nil)
}

// ListRepositories returns the repositories of a registry.
func (c *Client) ListRepositories(ctx context.Context, registry string) ([]api.Repository, error) {
	return list[api.Repository](ctx, c, regPath(registry, "/repositories"), nil)
}

// GetRepository returns one repository.
func (c *Client) GetRepository(ctx context.Context, registry, repo string) (*api.Repository, error) {
	q := url.Values{"repository": {repo}}
	return send[api.Repository](ctx, c, http.MethodGet, regPath(registry, "/repository"), q, nil)
}

// ListTags returns the tags of a repository.
func (c *Client) ListTags(ctx context.Context, registry, repo string) ([]api.Tag, error) {
	q := url.Values{"repository": {repo}}
	return list[api.Tag](ctx, c, regPath(registry, "/tags"), q)
}

// TagHistory returns every digest a tag has pointed to, newest first.
func (c *Client) TagHistory(ctx context.Context, registry, repo, tag string) ([]api.TagEvent, error) {
	q := url.Values{"repository": {repo}, "tag": {tag}}
	return list[api.TagEvent](ctx, c, regPath(registry, "/tag-history"), q)
}

// ListManifests returns the manifests of a repository.
func (c *Client) ListManifests(ctx context.Context, registry, repo string) ([]api.Manifest, error) {
	q := url.Values{"repository": {repo}}
	return list[api.Manifest](ctx, c, regPath(registry, "/manifests"), q)
}

// DeleteRepository deletes a repository with all its manifests and tags.
func (c *Client) DeleteRepository(ctx context.Context, registry, repo string) error {
	q := url.Values{"repository": {repo}}
	return c.do(ctx, http.MethodDelete, regPath(registry, "/repository"), q, nil, nil)
}

// DeleteManifest deletes a manifest (image = repo:tag or repo@digest) and
// every tag pointing to it.
func (c *Client) DeleteManifest(ctx context.Context, registry, image string) error {
	q := url.Values{"image": {image}}
	return c.do(ctx, http.MethodDelete, regPath(registry, "/manifest"), q, nil, nil)
}

// Untag removes a tag (image = repo:tag); the manifest stays.
func (c *Client) Untag(ctx context.Context, registry, image string) error {
	q := url.Values{"image": {image}}
	return c.do(ctx, http.MethodDelete, regPath(registry, "/tags"), q, nil, nil)
}

// RegistryToken returns a short-lived refresh token of a registry for the
// caller (what docker-credential-gantry hands to Docker clients). registry
// is the registry's name or its login server (host:port). A caller without
// any pull right on the registry gets api.ErrDenied; a login server that is
// not one of the server's registries, api.ErrNotFound.
func (c *Client) RegistryToken(ctx context.Context, registry string) (*api.RegistryToken, error) {
	return send[api.RegistryToken](ctx, c, http.MethodPost, regPath(registry, "/token"), nil, nil)
}

// RegistryUsage returns what a registry holds, as az acr show-usage shows
// it.
func (c *Client) RegistryUsage(ctx context.Context, registry string) (*api.RegistryUsage, error) {
	return send[api.RegistryUsage](ctx, c, http.MethodGet, regPath(registry, "/usage"), nil, nil)
}

// Fsck verifies every blob of registry ("" for all) against its digest;
// damaged files are quarantined and reported with their manifests.
func (c *Client) Fsck(ctx context.Context, registry string) (*api.FsckReport, error) {
	return send[api.FsckReport](ctx, c, http.MethodPost, "/v1/fsck", nil, api.FsckRequest{Registry: registry})
}

// RegistryUsageByRepository returns what a registry holds, as
// RegistryUsage, and what each of its repositories holds (Repositories).
func (c *Client) RegistryUsageByRepository(ctx context.Context, registry string) (*api.RegistryUsage, error) {
	return send[api.RegistryUsage](ctx, c, http.MethodGet, regPath(registry, "/usage"), url.Values{"repositories": {"true"}}, nil)
}
