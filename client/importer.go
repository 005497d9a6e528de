package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/gantryhq/gantry/api"
)

// Import copies an image, index or artifact (with its referrers) into a
// registry on the server's side. With progress non-nil the server streams
// each step, and progress is called for it as it arrives.
func (c *Client) Import(ctx context.Context, registry string, req api.ImportRequest, progress func(api.ImportProgress)) (*api.ImportResult, error) {
	path := regPath(registry, "/import")
	if progress == nil {
		return send[api.ImportResult](ctx, c, http.MethodPost, path, nil, req)
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encoding request: %w", err)
	}
	hreq, err := c.newRequest(ctx, http.MethodPost, path, nil, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", api.NDJSONContentType+", application/json")
	resp, err := c.http.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	if err := checkResponse(resp); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), api.NDJSONContentType) {
		// A server that does not stream answers the result at once.
		var out api.ImportResult
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return nil, fmt.Errorf("decoding response of POST %s: %w", path, err)
		}
		return &out, nil
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var ev api.ImportEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("decoding progress of POST %s: %w", path, err)
		}
		switch {
		case ev.Error != nil:
			return nil, ev.Error
		case ev.Result != nil:
			return ev.Result, nil
		case ev.Progress != nil:
			progress(*ev.Progress)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading progress of POST %s: %w", path, err)
	}
	return nil, fmt.Errorf("POST %s: the server ended the stream without a result", path)
}

// ListCacheRules returns a registry's cache rules.
func (c *Client) ListCacheRules(ctx context.Context, registry string) ([]api.CacheRule, error) {
	return list[api.CacheRule](ctx, c, regPath(registry, "/cache-rules"), nil)
}

// CreateCacheRule creates a cache rule.
func (c *Client) CreateCacheRule(ctx context.Context, registry string, req api.CreateCacheRuleRequest) (*api.CacheRule, error) {
	return send[api.CacheRule](ctx, c, http.MethodPost, regPath(registry, "/cache-rules"), nil, req)
}

// GetCacheRule returns a cache rule.
func (c *Client) GetCacheRule(ctx context.Context, registry, name string) (*api.CacheRule, error) {
	return send[api.CacheRule](ctx, c, http.MethodGet, regPath(registry, "/cache-rules/"+pathEscape(name)), nil, nil)
}

// UpdateCacheRule changes a cache rule's credential set.
func (c *Client) UpdateCacheRule(ctx context.Context, registry, name string, req api.UpdateCacheRuleRequest) (*api.CacheRule, error) {
	return send[api.CacheRule](ctx, c, http.MethodPatch, regPath(registry, "/cache-rules/"+pathEscape(name)), nil, req)
}

// DeleteCacheRule deletes a cache rule; what it cached stays.
func (c *Client) DeleteCacheRule(ctx context.Context, registry, name string) error {
	return c.do(ctx, http.MethodDelete, regPath(registry, "/cache-rules/"+pathEscape(name)), nil, nil, nil)
}

// ListCredentialSets returns a registry's credential sets with their health.
func (c *Client) ListCredentialSets(ctx context.Context, registry string) ([]api.CredentialSet, error) {
	return list[api.CredentialSet](ctx, c, regPath(registry, "/credential-sets"), nil)
}

// CreateCredentialSet creates a credential set; grant the returned
// identity get on the vault holding its secrets.
func (c *Client) CreateCredentialSet(ctx context.Context, registry string, req api.CreateCredentialSetRequest) (*api.CredentialSet, error) {
	return send[api.CredentialSet](ctx, c, http.MethodPost, regPath(registry, "/credential-sets"), nil, req)
}

// GetCredentialSet returns a credential set with its health.
func (c *Client) GetCredentialSet(ctx context.Context, registry, name string) (*api.CredentialSet, error) {
	return send[api.CredentialSet](ctx, c, http.MethodGet, regPath(registry, "/credential-sets/"+pathEscape(name)), nil, nil)
}

// UpdateCredentialSet replaces a credential set's secret URIs.
func (c *Client) UpdateCredentialSet(ctx context.Context, registry, name string, req api.UpdateCredentialSetRequest) (*api.CredentialSet, error) {
	return send[api.CredentialSet](ctx, c, http.MethodPatch, regPath(registry, "/credential-sets/"+pathEscape(name)), nil, req)
}

// DeleteCredentialSet deletes a credential set no cache rule uses.
func (c *Client) DeleteCredentialSet(ctx context.Context, registry, name string) error {
	return c.do(ctx, http.MethodDelete, regPath(registry, "/credential-sets/"+pathEscape(name)), nil, nil, nil)
}
