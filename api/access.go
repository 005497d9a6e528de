package api

import "time"

// Scope-map types, as az shows them.
const (
	ScopeMapSystem = "SystemDefined"
	ScopeMapUser   = "UserDefined"
)

// ScopeMap is a named set of repository permissions of a registry.
type ScopeMap struct {
	Name        string `json:"name"`
	Registry    string `json:"registry"`
	Type        string `json:"type"`
	Description string `json:"description"`
	// Actions are in ACR's form: repositories/<pattern>/<action>.
	Actions   []string   `json:"actions"`
	CreatedAt *time.Time `json:"creationDate,omitempty"`
}

// RepositoryActions grants actions (content/read, content/write,
// content/delete, metadata/read, metadata/write) on a repository pattern
// (a name, name/* or *).
type RepositoryActions struct {
	Repository string   `json:"repository"`
	Actions    []string `json:"actions"`
}

// CreateScopeMapRequest is the body of POST .../scope-maps.
type CreateScopeMapRequest struct {
	Name         string              `json:"name"`
	Description  string              `json:"description,omitempty"`
	Repositories []RepositoryActions `json:"repositories"`
}

// UpdateScopeMapRequest is the body of PATCH .../scope-maps/{name}.
type UpdateScopeMapRequest struct {
	Description *string             `json:"description,omitempty"`
	Add         []RepositoryActions `json:"add,omitempty"`
	Remove      []RepositoryActions `json:"remove,omitempty"`
}

// Token is a repository-scoped credential of a registry.
type Token struct {
	Name        string           `json:"name"`
	Registry    string           `json:"registry"`
	PrincipalID string           `json:"principalId"`
	ScopeMap    string           `json:"scopeMapId"`
	Status      string           `json:"status"`
	CreatedAt   time.Time        `json:"creationDate"`
	Credentials TokenCredentials `json:"credentials"`
}

// TokenCredentials are a token's user name and passwords. Password values
// are only present in the answers of create and credential generate.
type TokenCredentials struct {
	Username  string          `json:"username"`
	Passwords []TokenPassword `json:"passwords"`
}

// TokenPassword is password1 or password2 of a token.
type TokenPassword struct {
	Name      string     `json:"name"`
	Value     string     `json:"value,omitempty"`
	CreatedAt time.Time  `json:"creationTime"`
	Expiry    *time.Time `json:"expiry,omitempty"`
}

// CreateTokenRequest is the body of POST .../tokens. Give ScopeMap or
// Repositories (which creates "<name>-scope-map").
type CreateTokenRequest struct {
	Name             string              `json:"name"`
	ScopeMap         string              `json:"scopeMap,omitempty"`
	Repositories     []RepositoryActions `json:"repositories,omitempty"`
	Status           string              `json:"status,omitempty"`
	ExpirationInDays int                 `json:"expirationInDays,omitempty"`
	NoPasswords      bool                `json:"noPasswords,omitempty"`
}

// UpdateTokenRequest is the body of PATCH .../tokens/{name}.
type UpdateTokenRequest struct {
	Status   *string `json:"status,omitempty"`
	ScopeMap *string `json:"scopeMap,omitempty"`
}

// GenerateCredentialRequest regenerates password1 and/or password2 (both
// when neither is chosen).
type GenerateCredentialRequest struct {
	Password1        bool `json:"password1,omitempty"`
	Password2        bool `json:"password2,omitempty"`
	ExpirationInDays int  `json:"expirationInDays,omitempty"`
}

// RoleAssignment grants a role to a principal at a scope.
type RoleAssignment struct {
	ID          string    `json:"id"`
	PrincipalID string    `json:"principalId"`
	Role        string    `json:"roleDefinitionName"`
	Scope       string    `json:"scope"`
	CreatedAt   time.Time `json:"createdOn"`
}

// CreateRoleAssignmentRequest is the body of POST /v1/role-assignments.
type CreateRoleAssignmentRequest struct {
	Assignee string `json:"assignee"`
	Role     string `json:"role"`
	Scope    string `json:"scope"`
}

// KeyVault is a named set of secrets.
type KeyVault struct {
	Name      string    `json:"name"`
	URI       string    `json:"vaultUri"`
	CreatedAt time.Time `json:"createdOn"`
}

// CreateKeyVaultRequest is the body of POST /v1/keyvaults.
type CreateKeyVaultRequest struct {
	Name string `json:"name"`
}

// Secret is one secret of a vault. Value is only present in `secret show`.
type Secret struct {
	Vault     string    `json:"vault"`
	Name      string    `json:"name"`
	ID        string    `json:"id"`
	Version   string    `json:"version"`
	Value     string    `json:"value,omitempty"`
	CreatedAt time.Time `json:"created"`
	UpdatedAt time.Time `json:"updated"`
}

// SetSecretRequest is the body of PUT .../secrets/{name}.
type SetSecretRequest struct {
	Value string `json:"value"`
}

// VaultPolicy gives a principal permissions on a vault's secrets.
type VaultPolicy struct {
	ObjectID          string   `json:"objectId"`
	SecretPermissions []string `json:"secretPermissions"`
}
