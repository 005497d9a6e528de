package httpapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/auth"
)

func (s *Server) accessRoutes() {
	s.mux.HandleFunc("GET /v1/registries/{reg}/scope-maps", s.authed(s.listScopeMaps))
	s.mux.HandleFunc("POST /v1/registries/{reg}/scope-maps", s.authed(s.createScopeMap))
	s.mux.HandleFunc("GET /v1/registries/{reg}/scope-maps/{name}", s.authed(s.getScopeMap))
	s.mux.HandleFunc("PATCH /v1/registries/{reg}/scope-maps/{name}", s.authed(s.updateScopeMap))
	s.mux.HandleFunc("DELETE /v1/registries/{reg}/scope-maps/{name}", s.authed(s.deleteScopeMap))
	s.mux.HandleFunc("GET /v1/registries/{reg}/tokens", s.authed(s.listTokens))
	s.mux.HandleFunc("POST /v1/registries/{reg}/tokens", s.authed(s.createToken))
	s.mux.HandleFunc("GET /v1/registries/{reg}/tokens/{name}", s.authed(s.getToken))
	s.mux.HandleFunc("PATCH /v1/registries/{reg}/tokens/{name}", s.authed(s.updateToken))
	s.mux.HandleFunc("DELETE /v1/registries/{reg}/tokens/{name}", s.authed(s.deleteToken))
	s.mux.HandleFunc("POST /v1/registries/{reg}/tokens/{name}/credentials", s.authed(s.generateCredential))
	s.mux.HandleFunc("GET /v1/role-assignments", s.authed(s.listRoleAssignments))
	s.mux.HandleFunc("POST /v1/role-assignments", s.authed(s.createRoleAssignment))
	s.mux.HandleFunc("DELETE /v1/role-assignments", s.authed(s.deleteRoleAssignments))
}

func toAPIScopeMap(m auth.ScopeMap) api.ScopeMap {
	out := api.ScopeMap{Name: m.Name, Registry: m.Registry, Type: api.ScopeMapUser, Description: m.Description, Actions: []string{}}
	if m.System {
		out.Type = api.ScopeMapSystem
	} else {
		c := m.CreatedAt
		out.CreatedAt = &c
	}
	for _, r := range m.Rules {
		for _, a := range r.Actions {
			out.Actions = append(out.Actions, "repositories/"+r.Repository+"/"+a)
		}
	}
	return out
}

func toRules(rs []api.RepositoryActions) []auth.RepositoryRule {
	out := make([]auth.RepositoryRule, 0, len(rs))
	for _, r := range rs {
		out = append(out, auth.RepositoryRule{Repository: r.Repository, Actions: r.Actions})
	}
	return out
}

// registryObject is the scope path of an object of a registry, for
// OpRead/OpWrite checks.
func registryObject(reg, kind, name string) string {
	p := auth.RegistryScope(reg) + "/" + kind
	if name != "" {
		p += "/" + name
	}
	return p
}

func (s *Server) listScopeMaps(w http.ResponseWriter, r *http.Request) error {
	reg := r.PathValue("reg")
	if err := s.check(r, auth.OpRead, registryObject(reg, "scope-maps", "")); err != nil {
		return err
	}
	ms, err := s.auth.ListScopeMaps(r.Context(), reg)
	if err != nil {
		return err
	}
	out := make([]api.ScopeMap, 0, len(ms))
	for _, m := range ms {
		out = append(out, toAPIScopeMap(m))
	}
	return reply(w, http.StatusOK, out)
}

func (s *Server) createScopeMap(w http.ResponseWriter, r *http.Request) error {
	reg := r.PathValue("reg")
	// Check the collection first, so a refused caller learns nothing from
	// how its body is parsed.
	if err := s.check(r, auth.OpWrite, registryObject(reg, "scope-maps", "")); err != nil {
		return err
	}
	var req api.CreateScopeMapRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	m, err := s.auth.CreateScopeMap(r.Context(), reg, req.Name, req.Description, toRules(req.Repositories))
	if err != nil {
		return err
	}
	return reply(w, http.StatusCreated, toAPIScopeMap(m))
}

func (s *Server) getScopeMap(w http.ResponseWriter, r *http.Request) error {
	reg, name := r.PathValue("reg"), r.PathValue("name")
	if err := s.check(r, auth.OpRead, registryObject(reg, "scope-maps", name)); err != nil {
		return err
	}
	m, err := s.auth.GetScopeMap(r.Context(), reg, name)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, toAPIScopeMap(m))
}

func (s *Server) updateScopeMap(w http.ResponseWriter, r *http.Request) error {
	reg, name := r.PathValue("reg"), r.PathValue("name")
	if err := s.check(r, auth.OpWrite, registryObject(reg, "scope-maps", name)); err != nil {
		return err
	}
	var req api.UpdateScopeMapRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	m, err := s.auth.UpdateScopeMap(r.Context(), reg, name, auth.ScopeMapUpdate{
		Description: req.Description, Add: toRules(req.Add), Remove: toRules(req.Remove),
	})
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, toAPIScopeMap(m))
}

func (s *Server) deleteScopeMap(w http.ResponseWriter, r *http.Request) error {
	reg, name := r.PathValue("reg"), r.PathValue("name")
	if err := s.check(r, auth.OpWrite, registryObject(reg, "scope-maps", name)); err != nil {
		return err
	}
	if err := s.auth.DeleteScopeMap(r.Context(), reg, name); err != nil {
		return err
	}
	return reply(w, http.StatusNoContent, nil)
}

func toAPIToken(t auth.Token) api.Token {
	out := api.Token{
		Name: t.Name, Registry: t.Registry, PrincipalID: t.ID, ScopeMap: t.ScopeMap, Status: string(t.Status),
		CreatedAt:   t.CreatedAt,
		Credentials: api.TokenCredentials{Username: t.Name, Passwords: []api.TokenPassword{}},
	}
	for _, p := range t.Passwords {
		tp := api.TokenPassword{Name: string(p.Name), Value: p.Value, CreatedAt: p.CreatedAt}
		if !p.Expiry.IsZero() {
			e := p.Expiry
			tp.Expiry = &e
		}
		out.Credentials.Passwords = append(out.Credentials.Passwords, tp)
	}
	return out
}

func expiryIn(days int) (time.Time, error) {
	switch {
	case days < 0:
		return time.Time{}, invalidField("expirationInDays", "must not be negative")
	case days == 0:
		return time.Time{}, nil
	default:
		return time.Now().UTC().AddDate(0, 0, days), nil
	}
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	reg := r.PathValue("reg")
	if err := s.check(r, auth.OpRead, registryObject(reg, "tokens", "")); err != nil {
		return err
	}
	ts, err := s.auth.ListTokens(r.Context(), reg)
	if err != nil {
		return err
	}
	out := make([]api.Token, 0, len(ts))
	for _, t := range ts {
		out = append(out, toAPIToken(t))
	}
	return reply(w, http.StatusOK, out)
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	reg := r.PathValue("reg")
	if err := s.check(r, auth.OpWrite, registryObject(reg, "tokens", "")); err != nil {
		return err
	}
	var req api.CreateTokenRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	expiry, err := expiryIn(req.ExpirationInDays)
	if err != nil {
		return err
	}
	spec := auth.TokenSpec{Registry: reg, Name: req.Name, ScopeMap: req.ScopeMap, Repositories: toRules(req.Repositories),
		NoPasswords: req.NoPasswords, Expiry: expiry}
	if req.Status != "" {
		if spec.Status, err = auth.ParseTokenStatus(req.Status); err != nil {
			return err
		}
	}
	t, err := s.auth.CreateToken(r.Context(), spec)
	if err != nil {
		return err
	}
	return reply(w, http.StatusCreated, toAPIToken(t))
}

func (s *Server) getToken(w http.ResponseWriter, r *http.Request) error {
	reg, name := r.PathValue("reg"), r.PathValue("name")
	if err := s.check(r, auth.OpRead, registryObject(reg, "tokens", name)); err != nil {
		return err
	}
	t, err := s.auth.GetToken(r.Context(), reg, name)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, toAPIToken(t))
}

func (s *Server) updateToken(w http.ResponseWriter, r *http.Request) error {
	reg, name := r.PathValue("reg"), r.PathValue("name")
	if err := s.check(r, auth.OpWrite, registryObject(reg, "tokens", name)); err != nil {
		return err
	}
	var req api.UpdateTokenRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	var u auth.TokenUpdate
	if req.Status != nil {
		st, err := auth.ParseTokenStatus(*req.Status)
		if err != nil {
			return err
		}
		u.Status = &st
	}
	u.ScopeMap = req.ScopeMap
	t, err := s.auth.UpdateToken(r.Context(), reg, name, u)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, toAPIToken(t))
}

func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request) error {
	reg, name := r.PathValue("reg"), r.PathValue("name")
	if err := s.check(r, auth.OpWrite, registryObject(reg, "tokens", name)); err != nil {
		return err
	}
	if err := s.auth.DeleteToken(r.Context(), reg, name); err != nil {
		return err
	}
	return reply(w, http.StatusNoContent, nil)
}

func (s *Server) generateCredential(w http.ResponseWriter, r *http.Request) error {
	reg, name := r.PathValue("reg"), r.PathValue("name")
	if err := s.check(r, auth.OpWrite, registryObject(reg, "tokens", name)); err != nil {
		return err
	}
	var req api.GenerateCredentialRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	expiry, err := expiryIn(req.ExpirationInDays)
	if err != nil {
		return err
	}
	slots := []auth.PasswordSlot{}
	if req.Password1 || !req.Password2 {
		slots = append(slots, auth.Password1)
	}
	if req.Password2 || !req.Password1 {
		slots = append(slots, auth.Password2)
	}
	ctx := r.Context()
	fresh := map[auth.PasswordSlot]auth.TokenPassword{}
	for _, slot := range slots {
		p, err := s.auth.GeneratePassword(ctx, reg, name, slot, expiry)
		if err != nil {
			return err
		}
		fresh[slot] = p
	}
	t, err := s.auth.GetToken(ctx, reg, name)
	if err != nil {
		return err
	}
	for i, p := range t.Passwords {
		if f, ok := fresh[p.Name]; ok {
			t.Passwords[i] = f
		}
	}
	return reply(w, http.StatusOK, toAPIToken(t))
}

func toAPIRole(a auth.RoleAssignment) api.RoleAssignment {
	return api.RoleAssignment{ID: a.ID, PrincipalID: a.Principal, Role: string(a.Role), Scope: a.Scope, CreatedAt: a.CreatedAt}
}

// roleFilter reads ?assignee=&role=&scope=&id= into a filter.
func roleFilter(r *http.Request) (auth.RoleFilter, error) {
	q := r.URL.Query()
	f := auth.RoleFilter{ID: q.Get("id"), Principal: q.Get("assignee"), Scope: strings.TrimRight(q.Get("scope"), "/")}
	if role := q.Get("role"); role != "" {
		rl, err := auth.ParseRole(role)
		if err != nil {
			return f, err
		}
		f.Role = rl
	}
	return f, nil
}

func (s *Server) listRoleAssignments(w http.ResponseWriter, r *http.Request) error {
	f, err := roleFilter(r)
	if err != nil {
		return err
	}
	scope := f.Scope
	if scope == "" {
		scope = "/"
	}
	if err := s.check(r, auth.OpRead, scope); err != nil {
		return err
	}
	as, err := s.auth.ListRoleAssignments(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]api.RoleAssignment, 0, len(as))
	for _, a := range as {
		out = append(out, toAPIRole(a))
	}
	return reply(w, http.StatusOK, out)
}

func (s *Server) createRoleAssignment(w http.ResponseWriter, r *http.Request) error {
	var req api.CreateRoleAssignmentRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	switch {
	case req.Assignee == "":
		return invalidField("assignee", "must be set")
	case req.Scope == "":
		return invalidField("scope", "must be set")
	}
	role, err := auth.ParseRole(req.Role)
	if err != nil {
		return err
	}
	scope := strings.TrimRight(req.Scope, "/")
	if err := s.check(r, auth.OpWrite, scope); err != nil {
		return err
	}
	a, err := s.auth.CreateRoleAssignment(r.Context(), req.Assignee, role, scope)
	if err != nil {
		return err
	}
	return reply(w, http.StatusCreated, toAPIRole(a))
}

func (s *Server) deleteRoleAssignments(w http.ResponseWriter, r *http.Request) error {
	f, err := roleFilter(r)
	if err != nil {
		return err
	}
	if f.ID == "" && f.Principal == "" && f.Scope == "" {
		return invalid("give --ids, --assignee or --scope; refusing to delete every role assignment")
	}
	scope := f.Scope
	if scope == "" {
		scope = "/"
	}
	if err := s.check(r, auth.OpWrite, scope); err != nil {
		return err
	}
	n, err := s.auth.DeleteRoleAssignments(r.Context(), f)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, map[string]int{"deleted": n})
}
