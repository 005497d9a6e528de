package vault

import (
	"fmt"
	"net/url"
	"strings"
)

// azureSuffix is the DNS suffix of the tutorial's Azure Key Vault URIs.
const azureSuffix = ".vault.azure.net"

// URI names a secret, optionally one version of it.
type URI struct {
	Vault   string
	Name    string
	Version string // empty: the newest
}

// String returns the canonical form vault://<vault>/secrets/<name>[/<version>].
func (u URI) String() string {
	s := "vault://" + u.Vault + "/secrets/" + u.Name
	if u.Version != "" {
		s += "/" + u.Version
	}
	return s
}

// IsURI reports whether s looks like a secret URI rather than a literal
// value: it starts with vault:// or is an https URL on *.vault.azure.net.
// Callers use it to tell vault references from plain credentials.
func IsURI(s string) bool {
	if strings.HasPrefix(s, "vault://") {
		return true
	}
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "https" && strings.HasSuffix(strings.ToLower(u.Hostname()), azureSuffix)
}

const uriForms = "want vault://<vault>/secrets/<name> or https://<vault>.vault.azure.net/secrets/<name>"

// ParseURI parses vault://<vault>/secrets/<name>[/<version>] or its alias
// https://<vault>.vault.azure.net/secrets/<name>[/<version>]. Vault names
// are case-insensitive and returned lowercase.
func ParseURI(s string) (URI, error) {
	// The input is only echoed in errors when it has a URI's shape, so a
	// literal secret passed by mistake is not repeated.
	shown := "secret URI"
	u, err := url.Parse(s)
	if err == nil && (u.Scheme == "vault" || u.Scheme == "https") && u.User == nil && u.RawQuery == "" && u.Fragment == "" &&
		!strings.ContainsAny(s, " \t\r\n") {
		shown = fmt.Sprintf("secret URI %q", s)
	}
	bad := func(why string) (URI, error) {
		return URI{}, fmt.Errorf("malformed %s: %s: %w", shown, why, ErrInvalid)
	}
	if err != nil || u.Opaque != "" {
		return bad(uriForms)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" {
		return bad("user info, port, query and fragment are not allowed")
	}
	var vault string
	switch u.Scheme {
	case "vault":
		vault = u.Host
	case "https":
		host := strings.ToLower(u.Host)
		if !strings.HasSuffix(host, azureSuffix) {
			return bad("an https secret URI must be on <vault>" + azureSuffix)
		}
		vault = strings.TrimSuffix(host, azureSuffix)
	default:
		return bad(uriForms)
	}
	v, err := normalizeVault(vault)
	if err != nil {
		return bad("invalid vault name")
	}
	parts := strings.Split(strings.TrimPrefix(strings.TrimSuffix(u.Path, "/"), "/"), "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] != "secrets" {
		return bad(uriForms)
	}
	out := URI{Vault: v, Name: parts[1]}
	if err := validateSecretName(out.Name); err != nil {
		return bad("invalid secret name")
	}
	if len(parts) == 3 {
		if parts[2] == "" || !secretName.MatchString(parts[2]) {
			return bad("invalid version")
		}
		out.Version = parts[2]
	}
	return out, nil
}
