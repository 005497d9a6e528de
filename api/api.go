// Package api is the wire contract of gantry's control API: the JSON request
// and response types, the error codes and their HTTP statuses. The server
// (internal/httpapi) and the Go client (package client) both use it, so the
// two cannot drift apart.
//
// All paths are under /v1. Requests authenticate with HTTP Basic (the admin
// user, a registry token, or a run credential) or a Bearer run credential.
// Times are RFC 3339 in UTC.
package api

import "time"

// Registry is one registry: its own login server and repositories.
type Registry struct {
	// ID is the registry's scope, "/registries/NAME": what role
	// assignments on the whole registry name (as az acr show's id).
	ID   string `json:"id"`
	Name string `json:"name"`
	// LoginServer is the host:port clients push to and pull from.
	LoginServer   string    `json:"loginServer"`
	AnonymousPull bool      `json:"anonymousPullEnabled"`
	CreatedAt     time.Time `json:"creationDate"`
	// Running reports whether the registry's listener is serving.
	Running bool `json:"running"`
	// QuotaBytes is the most the registry may store (the Size of its
	// usage); omitted when it has no quota.
	QuotaBytes int64 `json:"quotaBytes,omitempty"`
	// ScanOnPush and QuarantineSeverity are the registry's scan policy.
	ScanOnPush         bool   `json:"scanOnPush,omitempty"`
	QuarantineSeverity string `json:"quarantineSeverity,omitempty"`
}

// CreateRegistryRequest is the body of POST /v1/registries.
type CreateRegistryRequest struct {
	Name string `json:"name"`
	// Listen is the host:port the registry serves on, e.g. 127.0.0.1:5001.
	Listen        string `json:"listen"`
	AnonymousPull bool   `json:"anonymousPullEnabled"`
	// QuotaBytes limits what the registry may store; 0 means no quota.
	QuotaBytes int64 `json:"quotaBytes,omitempty"`
}

// UpdateRegistryRequest is the body of PATCH /v1/registries/{reg}: the
// settings to change (nil leaves one as it is).
type UpdateRegistryRequest struct {
	AnonymousPull *bool `json:"anonymousPullEnabled,omitempty"`
	// QuotaBytes sets the quota in bytes; 0 removes it. A quota below what
	// the registry holds is accepted and refuses further pushes.
	QuotaBytes *int64 `json:"quotaBytes,omitempty"`
	// ScanOnPush scans every pushed image in the background.
	ScanOnPush *bool `json:"scanOnPush,omitempty"`
	// QuarantineSeverity (critical, high, medium, low) refuses pulls of
	// images with a finding at or above it, or not scanned; "none"
	// removes the quarantine.
	QuarantineSeverity *string `json:"quarantineSeverity,omitempty"`
}

// Repository is one repository of a registry.
type Repository struct {
	Registry      string    `json:"registry"`
	Name          string    `json:"name"`
	TagCount      int       `json:"tagCount"`
	ManifestCount int       `json:"manifestCount"`
	CreatedAt     time.Time `json:"createdTime"`
	UpdatedAt     time.Time `json:"lastUpdateTime"`
}

// Tag is a tag of a repository and the manifest it points to.
type Tag struct {
	Name      string    `json:"name"`
	Digest    string    `json:"digest"`
	CreatedAt time.Time `json:"createdTime"`
	UpdatedAt time.Time `json:"lastUpdateTime"`
}

// Manifest is a manifest stored in a repository.
type Manifest struct {
	Digest       string    `json:"digest"`
	MediaType    string    `json:"mediaType"`
	ArtifactType string    `json:"artifactType,omitempty"`
	Size         int64     `json:"imageSize"`
	Tags         []string  `json:"tags"`
	Subject      string    `json:"subject,omitempty"`
	CreatedAt    time.Time `json:"createdTime"`
}

// TagEvent is one entry of a tag's history: the tag moved from Old to New.
type TagEvent struct {
	Registry   string `json:"registry"`
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	Old        string `json:"previousDigest,omitempty"`
	New        string `json:"digest"`
	PushedBy   string `json:"pushedBy,omitempty"`
	// PushedByName is the principal's name: admin, a token, task:<reg>/<task>.
	PushedByName string    `json:"pushedByName,omitempty"`
	RunID        string    `json:"runId,omitempty"`
	Time         time.Time `json:"time"`
}

// Whoami describes the caller, as answered by GET /v1/whoami.
type Whoami struct {
	Principal string `json:"principalId"`
	Name      string `json:"name"`
	RunID     string `json:"runId,omitempty"`
}

// Version is the server's version, answered by GET /v1/version without
// authentication.
type Version struct {
	Version string `json:"version"`
}

// Readiness is the answer of GET /readyz?format=json (unauthenticated):
// "ready", "degraded" (an optional part such as the engine, the disk or a
// certificate's expiry needs attention) or "not ready" (503).
type Readiness struct {
	Status string           `json:"status"`
	Checks []ReadinessCheck `json:"checks"`
}

// ReadinessCheck is one part of Readiness: ok, degraded or failed.
type ReadinessCheck struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// RegistryToken is the answer of POST /v1/registries/{reg}/token: a
// refresh token of the registry for the caller, which Docker clients
// present as an identity token (docker-credential-gantry answers it with
// the user name "<token>") and exchange at the registry's token endpoint
// (grant_type=refresh_token) for access tokens carrying the caller's
// current rights.
type RegistryToken struct {
	// LoginServer is the registry's host:port.
	LoginServer  string `json:"loginServer"`
	RefreshToken string `json:"refreshToken"`
	// ExpiresOn is when the refresh token stops working (3 hours at most,
	// earlier when the credential it was issued for expires).
	ExpiresOn time.Time `json:"expiresOn"`
}

// RegistryUsage is the answer of GET /v1/registries/{reg}/usage, in the
// shape of az acr show-usage.
type RegistryUsage struct {
	Value []Usage `json:"value"`
	// Repositories is the usage of each repository, by name, when asked
	// for (?repositories=true); omitted otherwise.
	Repositories []RepositoryUsage `json:"repositories,omitempty"`
}

// RepositoryUsage is what one repository holds: Size in bytes of the
// distinct manifests and blobs its manifests make up (a blob shared by
// several repositories counts in each), and its manifest count.
type RepositoryUsage struct {
	Name      string `json:"name"`
	Size      int64  `json:"size"`
	Manifests int64  `json:"manifests"`
}

// Usage is one quantity of RegistryUsage: "Size" (bytes of the distinct
// manifests and blobs the registry's manifests make up), "Repositories"
// and "Manifests" (counts).
type Usage struct {
	Name         string `json:"name"`
	CurrentValue int64  `json:"currentValue"`
	// Limit is the registry's quota, on "Size" only; omitted without one.
	Limit *int64 `json:"limit,omitempty"`
	// Unit is "Bytes" or "Count".
	Unit string `json:"unit"`
}

// FsckRequest is the body of POST /v1/fsck: verify the blobs of one
// registry, or of all ("").
type FsckRequest struct {
	Registry string `json:"registry,omitempty"`
}

// FsckReport is the answer of POST /v1/fsck.
type FsckReport struct {
	// Checked and Bytes are the blobs and manifest bodies read and verified.
	Checked         int          `json:"checked"`
	Bytes           int64        `json:"bytes"`
	DurationSeconds float64      `json:"durationSeconds"`
	Damaged         []FsckDamage `json:"damaged"`
}

// FsckDamage is one blob or manifest whose stored bytes are not its
// digest's.
type FsckDamage struct {
	Digest  string `json:"digest"`
	Problem string `json:"problem"`
	// Quarantined is where the damaged file was moved (DATA/quarantine).
	Quarantined string `json:"quarantined,omitempty"`
	// Manifests reference the blob: registry/repository@digest.
	Manifests []string `json:"manifests,omitempty"`
}
