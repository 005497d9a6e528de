package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/gantryhq/gantry/api"
)

// Scan scans an image and returns its report: an image of one of the
// server's registries (stored, and attached to it as referrers) or of
// another registry (with req.Credential when needed).
func (c *Client) Scan(ctx context.Context, req api.ScanRequest) (*api.ScanReport, error) {
	return send[api.ScanReport](ctx, c, http.MethodPost, "/v1/scans", nil, req)
}

// LatestScan returns the stored report of an image (tag or digest) of a
// registry; api.ErrNotFound when it was never scanned.
func (c *Client) LatestScan(ctx context.Context, registry, repository, reference string) (*api.ScanReport, error) {
	q := url.Values{"repository": {repository}, "reference": {reference}}
	return send[api.ScanReport](ctx, c, http.MethodGet, "/v1/registries/"+pathEscape(registry)+"/scans", q, nil)
}

// VulnDB describes the vulnerability database.
func (c *Client) VulnDB(ctx context.Context) (*api.VulnDB, error) {
	return send[api.VulnDB](ctx, c, http.MethodGet, "/v1/vulndb", nil, nil)
}

// ImportVulnDB imports a zip of OSV files (admin only); source names it in
// the database's record.
func (c *Client) ImportVulnDB(ctx context.Context, zip io.Reader, size int64, source string) (*api.VulnDBImport, error) {
	req, err := c.newRequest(ctx, http.MethodPost, "/v1/vulndb/import", url.Values{"source": {source}}, zip)
	if err != nil {
		return nil, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/zip")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST /v1/vulndb/import: %w", err)
	}
	defer resp.Body.Close()
	if err := checkResponse(resp); err != nil {
		return nil, err
	}
	var out api.VulnDBImport
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("decoding response of POST /v1/vulndb/import: %w", err)
	}
	return &out, nil
}

// UpdateVulnDB imports the database distributed as an OCI artifact.
func (c *Client) UpdateVulnDB(ctx context.Context, req api.VulnDBUpdateRequest) (*api.VulnDBImport, error) {
	return send[api.VulnDBImport](ctx, c, http.MethodPost, "/v1/vulndb/update", nil, req)
}

// Allowlist lists allowlisted advisories (registry "": all).
func (c *Client) Allowlist(ctx context.Context, registry string) ([]api.AllowlistEntry, error) {
	var q url.Values
	if registry != "" {
		q = url.Values{"registry": {registry}}
	}
	return list[api.AllowlistEntry](ctx, c, "/v1/scan-allowlist", q)
}

// Allow adds an advisory to an allowlist.
func (c *Client) Allow(ctx context.Context, e api.AllowlistEntry) (*api.AllowlistEntry, error) {
	return send[api.AllowlistEntry](ctx, c, http.MethodPost, "/v1/scan-allowlist", nil, e)
}

// Disallow removes an advisory from an allowlist.
func (c *Client) Disallow(ctx context.Context, registry, id string) error {
	var q url.Values
	if registry != "" {
		q = url.Values{"registry": {registry}}
	}
	return c.do(ctx, http.MethodDelete, "/v1/scan-allowlist/"+pathEscape(id), q, nil, nil)
}

// ScanImpact lists what an advisory affects (admin only).
func (c *Client) ScanImpact(ctx context.Context, id string) (*api.ScanImpact, error) {
	return send[api.ScanImpact](ctx, c, http.MethodGet, "/v1/scan-impact", url.Values{"id": {id}}, nil)
}

// ScanPolicy returns the scan policy that applies to a repository: its
// own, or (Inherited) its registry's.
func (c *Client) ScanPolicy(ctx context.Context, registry, repository string) (*api.ScanPolicy, error) {
	return send[api.ScanPolicy](ctx, c, http.MethodGet, "/v1/registries/"+pathEscape(registry)+"/scan-policy", url.Values{"repository": {repository}}, nil)
}

// SetScanPolicy sets a repository's own scan policy (admin only).
func (c *Client) SetScanPolicy(ctx context.Context, p api.ScanPolicy) (*api.ScanPolicy, error) {
	return send[api.ScanPolicy](ctx, c, http.MethodPut, "/v1/registries/"+pathEscape(p.Registry)+"/scan-policy", url.Values{"repository": {p.Repository}}, p)
}

// RemoveScanPolicy removes a repository's own scan policy: its registry's
// applies again (admin only).
func (c *Client) RemoveScanPolicy(ctx context.Context, registry, repository string) error {
	return c.do(ctx, http.MethodDelete, "/v1/registries/"+pathEscape(registry)+"/scan-policy", url.Values{"repository": {repository}}, nil, nil)
}
