package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/store"
)

// registryLoginTTL is the lifetime of the refresh tokens POST
// /v1/registries/{reg}/token hands out, as ACR's (az acr login): long
// enough for a session of pushes and pulls, short enough that a copy left
// behind soon stops working. Clients ask for a new one (the credential
// helper does on every use).
const registryLoginTTL = 3 * time.Hour

func (s *Server) loginRoutes() {
	// Authenticated by registryToken itself, once it knows the registry's
	// name (a token may log in by its bare name there).
	s.mux.HandleFunc("POST /v1/registries/{reg}/token", s.public(s.registryToken))
	s.mux.HandleFunc("GET /v1/registries/{reg}/usage", s.authed(s.registryUsage))
}

// registryToken issues the caller a refresh token of the registry {reg},
// its name or its login server (host:port: names have neither dots nor
// colons). Any pull right on the registry is enough; the access tokens the
// refresh token is exchanged for carry only what the caller holds.
func (s *Server) registryToken(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name := r.PathValue("reg")
	if strings.ContainsAny(name, ".:") {
		reg, ok, err := s.store.LocalRegistry(ctx, name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("login server %q: %w", name, store.ErrRegistryUnknown)
		}
		name = reg.Name
	}
	id, err := s.auth.Authenticate(r, name)
	if err != nil {
		return err
	}
	tok, exp, err := s.auth.IssueRefreshToken(ctx, id, name, registryLoginTTL)
	if err != nil {
		return err
	}
	reg, err := s.store.GetRegistry(ctx, name)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, api.RegistryToken{LoginServer: reg.Listen, RefreshToken: tok, ExpiresOn: exp.UTC()})
}

// registryUsage answers what a registry holds, for readers of the registry
// (as GET /v1/registries/{reg}); with ?repositories=true, also what each
// repository holds.
func (s *Server) registryUsage(w http.ResponseWriter, r *http.Request) error {
	reg, err := s.readRegistry(r)
	if err != nil {
		return err
	}
	name := r.PathValue("reg")
	u, err := s.store.RegistryUsage(r.Context(), name)
	if err != nil {
		return err
	}
	var limit *int64
	if reg.Quota > 0 {
		limit = &reg.Quota
	}
	out := api.RegistryUsage{Value: []api.Usage{
		{Name: "Size", CurrentValue: u.Size, Limit: limit, Unit: "Bytes"},
		{Name: "Repositories", CurrentValue: u.Repositories, Unit: "Count"},
		{Name: "Manifests", CurrentValue: u.Manifests, Unit: "Count"},
	}}
	if r.URL.Query().Get("repositories") == "true" {
		repos, err := s.store.RepositoriesUsage(r.Context(), name)
		if err != nil {
			return err
		}
		out.Repositories = make([]api.RepositoryUsage, 0, len(repos))
		for _, ru := range repos {
			out.Repositories = append(out.Repositories, api.RepositoryUsage{Name: ru.Name, Size: ru.Size, Manifests: ru.Manifests})
		}
	}
	return reply(w, http.StatusOK, out)
}
