package api

import "time"

// NDJSONContentType is the media type of streamed answers: one JSON object
// per line. POST .../import answers with it when the request accepts it.
const NDJSONContentType = "application/x-ndjson"

// ImportRequest is the body of POST /v1/registries/{reg}/import: a
// server-side copy of an image, index or artifact with its referrers.
type ImportRequest struct {
	// Source is host[:port]/repository[:tag][@digest] of any registry
	// (https; plain http for loopback hosts), a Docker Hub short name
	// (node:15), or a registry of this server: its login server, or
	// gantry://<registry>/<repository>[:tag][@digest].
	Source string `json:"source"`
	// TargetTags are repository[:tag] to create; a missing tag is the
	// source's. With neither TargetTags nor UntaggedTargetRepositories the
	// target is the source's repository and tag.
	TargetTags []string `json:"targetTags,omitempty"`
	// UntaggedTargetRepositories receive the content by digest only.
	UntaggedTargetRepositories []string `json:"untaggedTargetRepositories,omitempty"`
	// Username and Password log in to the source: values or key vault
	// secret URIs (resolved with the caller's vault permissions).
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// Force overwrites target tags that exist (ACR's mode Force); without
	// it the import fails with CONFLICT before copying anything.
	Force bool `json:"force,omitempty"`
}

// ImportResult summarises a finished import.
type ImportResult struct {
	Source                     string   `json:"source"`
	Digest                     string   `json:"digest"`
	MediaType                  string   `json:"mediaType"`
	TargetTags                 []string `json:"targetTags"`
	UntaggedTargetRepositories []string `json:"untaggedTargetRepositories"`
	// SameServer is true when the source is a registry of this server (no
	// blob bytes are moved).
	SameServer bool `json:"sameServer"`
	// Manifests counts the manifests stored (per target repository):
	// index, platform manifests and referrers.
	Manifests int `json:"manifests"`
	Referrers int `json:"referrers"`
	// Blob counts over every target repository.
	BlobsCopied     int     `json:"blobsCopied"`
	BlobsLinked     int     `json:"blobsLinked"`
	BlobsSkipped    int     `json:"blobsSkipped"`
	BytesCopied     int64   `json:"bytesCopied"`
	DurationSeconds float64 `json:"durationSeconds"`
	// RateLimitRemaining is the source's last RateLimit-Remaining header.
	RateLimitRemaining *int `json:"rateLimitRemaining,omitempty"`
}

// ImportProgress is one step of an import.
type ImportProgress struct {
	// Action is started, copying, copied, linked, skipped or stored.
	Action string `json:"action"`
	// Kind is image, blob or manifest.
	Kind           string  `json:"kind"`
	Repository     string  `json:"repository,omitempty"`
	Digest         string  `json:"digest,omitempty"`
	MediaType      string  `json:"mediaType,omitempty"`
	Size           int64   `json:"size,omitempty"`
	ElapsedSeconds float64 `json:"elapsedSeconds,omitempty"`
	Message        string  `json:"message,omitempty"`
}

// ImportEvent is one line of a streamed import answer: progress lines,
// then exactly one result or error line.
type ImportEvent struct {
	Progress *ImportProgress `json:"progress,omitempty"`
	Result   *ImportResult   `json:"result,omitempty"`
	Error    *Error          `json:"error,omitempty"`
}

// CacheRule maps a target repository of a registry (a name, prefix/* or *)
// to an upstream source repository: pulls that miss are fetched from there,
// stored and served, and the target refuses pushes and imports.
type CacheRule struct {
	Name             string    `json:"name"`
	Registry         string    `json:"registry"`
	SourceRepository string    `json:"sourceRepository"`
	TargetRepository string    `json:"targetRepository"`
	CredentialSet    string    `json:"credentialSetName,omitempty"`
	CreatedAt        time.Time `json:"creationDate"`
	UpdatedAt        time.Time `json:"lastUpdatedDate"`
}

// CreateCacheRuleRequest is the body of POST .../cache-rules.
type CreateCacheRuleRequest struct {
	Name             string `json:"name"`
	SourceRepository string `json:"sourceRepository"`
	TargetRepository string `json:"targetRepository"`
	CredentialSet    string `json:"credentialSetName,omitempty"`
}

// UpdateCacheRuleRequest is the body of PATCH .../cache-rules/{name}: a
// credential set to use, or "" to remove it.
type UpdateCacheRuleRequest struct {
	CredentialSet *string `json:"credentialSetName,omitempty"`
}

// CredentialSet holds vault secret URIs of the credentials for one upstream
// login server. The server reads them as the credential set's own identity,
// which needs the get secret permission on the vault.
type CredentialSet struct {
	Name            string                `json:"name"`
	Registry        string                `json:"registry"`
	LoginServer     string                `json:"loginServer"`
	AuthCredentials []AuthCredential      `json:"authCredentials"`
	Identity        CredentialSetIdentity `json:"identity"`
	CreatedAt       time.Time             `json:"creationDate"`
	UpdatedAt       time.Time             `json:"lastUpdatedDate"`
}

// AuthCredential is the user name and password secret URIs of a credential
// set and whether they can be read now.
type AuthCredential struct {
	Name                     string           `json:"name"`
	UsernameSecretIdentifier string           `json:"usernameSecretIdentifier"`
	PasswordSecretIdentifier string           `json:"passwordSecretIdentifier"`
	CredentialHealth         CredentialHealth `json:"credentialHealth"`
}

// CredentialHealth is Healthy, or Unhealthy with an error code
// (SecretNotFound, AccessDenied, ResolveFailed) and message.
type CredentialHealth struct {
	Status       string `json:"status"`
	ErrorCode    string `json:"errorCode,omitempty"`
	ErrorMessage string `json:"errorMessage,omitempty"`
}

// CredentialSetIdentity is the principal the server resolves the secrets as.
type CredentialSetIdentity struct {
	PrincipalID string `json:"principalId"`
	Type        string `json:"type"`
}

// CreateCredentialSetRequest is the body of POST .../credential-sets.
type CreateCredentialSetRequest struct {
	Name                     string `json:"name"`
	LoginServer              string `json:"loginServer"`
	UsernameSecretIdentifier string `json:"usernameSecretIdentifier"`
	PasswordSecretIdentifier string `json:"passwordSecretIdentifier"`
}

// UpdateCredentialSetRequest is the body of PATCH .../credential-sets/{name}.
type UpdateCredentialSetRequest struct {
	UsernameSecretIdentifier *string `json:"usernameSecretIdentifier,omitempty"`
	PasswordSecretIdentifier *string `json:"passwordSecretIdentifier,omitempty"`
}
