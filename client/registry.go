package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/gantryhq/gantry/api"
)

// CreateRegistry creates a registry and starts its listener.
func (c *Client) CreateRegistry(ctx context.Context, req api.CreateRegistryRequest) (*api.Registry, error) {
	var r api.Registry
	return &r, c.do(ctx, http.MethodPost, "/v1/registries", nil, req, &r)
}

// GetRegistry returns one registry.
func (c *Client) GetRegistry(ctx context.Context, name string) (*api.Registry, error) {
	var r api.Registry
	return &r, c.do(ctx, http.MethodGet, "/v1/registries/"+pathEscape(name), nil, nil, &r)
}

// ListRegistries returns every registry.
func (c *Client) ListRegistries(ctx context.Context) ([]api.Registry, error) {
	var rs []api.Registry
	return rs, c.do(ctx, http.MethodGet, "/v1/registries", nil, nil, &rs)
}

// DeleteRegistry stops a registry and deletes it with all its content
// records, tokens and tasks. Blobs no other registry uses are left to GC.
func (c *Client) DeleteRegistry(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/registries/"+pathEscape(name), nil, nil, nil)
}

// ListRepositories returns the repositories of a registry.
func (c *Client) ListRepositories(ctx context.Context, registry string) ([]api.Repository, error) {
	var rs []api.Repository
	return rs, c.do(ctx, http.MethodGet, "/v1/registries/"+pathEscape(registry)+"/repositories", nil, nil, &rs)
}

// GetRepository returns one repository.
func (c *Client) GetRepository(ctx context.Context, registry, repo string) (*api.Repository, error) {
	var r api.Repository
	q := url.Values{"repository": {repo}}
	return &r, c.do(ctx, http.MethodGet, "/v1/registries/"+pathEscape(registry)+"/repository", q, nil, &r)
}

// ListTags returns the tags of a repository.
func (c *Client) ListTags(ctx context.Context, registry, repo string) ([]api.Tag, error) {
	var ts []api.Tag
	q := url.Values{"repository": {repo}}
	return ts, c.do(ctx, http.MethodGet, "/v1/registries/"+pathEscape(registry)+"/tags", q, nil, &ts)
}

// TagHistory returns every digest a tag has pointed to, newest first.
func (c *Client) TagHistory(ctx context.Context, registry, repo, tag string) ([]api.TagEvent, error) {
	var es []api.TagEvent
	q := url.Values{"repository": {repo}, "tag": {tag}}
	return es, c.do(ctx, http.MethodGet, "/v1/registries/"+pathEscape(registry)+"/tag-history", q, nil, &es)
}

// ListManifests returns the manifests of a repository.
func (c *Client) ListManifests(ctx context.Context, registry, repo string) ([]api.Manifest, error) {
	var ms []api.Manifest
	q := url.Values{"repository": {repo}}
	return ms, c.do(ctx, http.MethodGet, "/v1/registries/"+pathEscape(registry)+"/manifests", q, nil, &ms)
}

// DeleteRepository deletes a repository with all its manifests and tags.
func (c *Client) DeleteRepository(ctx context.Context, registry, repo string) error {
	q := url.Values{"repository": {repo}}
	return c.do(ctx, http.MethodDelete, "/v1/registries/"+pathEscape(registry)+"/repository", q, nil, nil)
}

// DeleteManifest deletes a manifest (image = repo:tag or repo@digest) and
// every tag pointing to it.
func (c *Client) DeleteManifest(ctx context.Context, registry, image string) error {
	q := url.Values{"image": {image}}
	return c.do(ctx, http.MethodDelete, "/v1/registries/"+pathEscape(registry)+"/manifest", q, nil, nil)
}

// Untag removes a tag (image = repo:tag); the manifest stays.
func (c *Client) Untag(ctx context.Context, registry, image string) error {
	q := url.Values{"image": {image}}
	return c.do(ctx, http.MethodDelete, "/v1/registries/"+pathEscape(registry)+"/tags", q, nil, nil)
}
