package httpapi

import (
	"net/http"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/vault"
)

// Vault operations are authorized by package vault itself (admin, or a
// principal's get/list policy); the handlers only authenticate.
func (s *Server) vaultRoutes() {
	s.mux.HandleFunc("GET /v1/keyvaults", s.authed(s.listVaults))
	s.mux.HandleFunc("POST /v1/keyvaults", s.authed(s.createVault))
	s.mux.HandleFunc("GET /v1/keyvaults/{vault}", s.authed(s.getVault))
	s.mux.HandleFunc("DELETE /v1/keyvaults/{vault}", s.authed(s.deleteVault))
	s.mux.HandleFunc("GET /v1/keyvaults/{vault}/secrets", s.authed(s.listSecrets))
	s.mux.HandleFunc("GET /v1/keyvaults/{vault}/secrets/{name}", s.authed(s.getSecret))
	s.mux.HandleFunc("PUT /v1/keyvaults/{vault}/secrets/{name}", s.authed(s.setSecret))
	s.mux.HandleFunc("DELETE /v1/keyvaults/{vault}/secrets/{name}", s.authed(s.deleteSecret))
	s.mux.HandleFunc("GET /v1/keyvaults/{vault}/policies", s.authed(s.listPolicies))
	s.mux.HandleFunc("PUT /v1/keyvaults/{vault}/policies", s.authed(s.setPolicy))
	s.mux.HandleFunc("DELETE /v1/keyvaults/{vault}/policies/{object}", s.authed(s.deletePolicy))
}

func toAPIVault(v vault.Vault) api.KeyVault {
	return api.KeyVault{Name: v.Name, URI: "vault://" + v.Name, CreatedAt: v.CreatedAt}
}

func toAPISecret(i vault.SecretInfo) api.Secret {
	return api.Secret{Vault: i.Vault, Name: i.Name, ID: i.ID, Version: i.Version, CreatedAt: i.CreatedAt, UpdatedAt: i.UpdatedAt}
}

func (s *Server) listVaults(w http.ResponseWriter, r *http.Request) error {
	vs, err := s.vault.ListVaults(r.Context(), identity(r.Context()))
	if err != nil {
		return err
	}
	out := make([]api.KeyVault, 0, len(vs))
	for _, v := range vs {
		out = append(out, toAPIVault(v))
	}
	return reply(w, http.StatusOK, out)
}

func (s *Server) createVault(w http.ResponseWriter, r *http.Request) error {
	var req api.CreateKeyVaultRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	v, err := s.vault.CreateVault(r.Context(), identity(r.Context()), req.Name)
	if err != nil {
		return err
	}
	return reply(w, http.StatusCreated, toAPIVault(v))
}

func (s *Server) getVault(w http.ResponseWriter, r *http.Request) error {
	v, err := s.vault.GetVault(r.Context(), identity(r.Context()), r.PathValue("vault"))
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, toAPIVault(v))
}

func (s *Server) deleteVault(w http.ResponseWriter, r *http.Request) error {
	if err := s.vault.DeleteVault(r.Context(), identity(r.Context()), r.PathValue("vault")); err != nil {
		return err
	}
	return reply(w, http.StatusNoContent, nil)
}

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request) error {
	is, err := s.vault.ListSecrets(r.Context(), identity(r.Context()), r.PathValue("vault"))
	if err != nil {
		return err
	}
	out := make([]api.Secret, 0, len(is))
	for _, i := range is {
		out = append(out, toAPISecret(i))
	}
	return reply(w, http.StatusOK, out)
}

func (s *Server) getSecret(w http.ResponseWriter, r *http.Request) error {
	sec, err := s.vault.GetSecret(r.Context(), identity(r.Context()), r.PathValue("vault"), r.PathValue("name"), r.URL.Query().Get("version"))
	if err != nil {
		return err
	}
	out := toAPISecret(sec.SecretInfo)
	out.Value = sec.Value
	return reply(w, http.StatusOK, out)
}

func (s *Server) setSecret(w http.ResponseWriter, r *http.Request) error {
	var req api.SetSecretRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	info, err := s.vault.SetSecret(r.Context(), identity(r.Context()), r.PathValue("vault"), r.PathValue("name"), req.Value)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, toAPISecret(info))
}

func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request) error {
	if err := s.vault.DeleteSecret(r.Context(), identity(r.Context()), r.PathValue("vault"), r.PathValue("name")); err != nil {
		return err
	}
	return reply(w, http.StatusNoContent, nil)
}

func toAPIPolicy(p vault.Policy) api.VaultPolicy {
	out := api.VaultPolicy{ObjectID: p.ObjectID, SecretPermissions: []string{}}
	for _, perm := range p.Permissions {
		out.SecretPermissions = append(out.SecretPermissions, string(perm))
	}
	return out
}

func (s *Server) listPolicies(w http.ResponseWriter, r *http.Request) error {
	ps, err := s.vault.ListPolicies(r.Context(), identity(r.Context()), r.PathValue("vault"))
	if err != nil {
		return err
	}
	out := make([]api.VaultPolicy, 0, len(ps))
	for _, p := range ps {
		out = append(out, toAPIPolicy(p))
	}
	return reply(w, http.StatusOK, out)
}

func (s *Server) setPolicy(w http.ResponseWriter, r *http.Request) error {
	var req api.VaultPolicy
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.ObjectID == "" {
		return invalidField("objectId", "must be set")
	}
	perms := make([]vault.Permission, 0, len(req.SecretPermissions))
	for _, p := range req.SecretPermissions {
		perm, err := vault.ParsePermission(p)
		if err != nil {
			return err
		}
		perms = append(perms, perm)
	}
	p, err := s.vault.SetPolicy(r.Context(), identity(r.Context()), r.PathValue("vault"), req.ObjectID, perms)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, toAPIPolicy(p))
}

func (s *Server) deletePolicy(w http.ResponseWriter, r *http.Request) error {
	if err := s.vault.DeletePolicy(r.Context(), identity(r.Context()), r.PathValue("vault"), r.PathValue("object")); err != nil {
		return err
	}
	return reply(w, http.StatusNoContent, nil)
}
