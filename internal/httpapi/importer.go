package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/importer"
)

// Imports runs imports (importer.Service).
type Imports interface {
	Import(ctx context.Context, id auth.Identity, registry string, req importer.ImportRequest, progress func(importer.Progress)) (importer.ImportResult, error)
}

// CacheRules keeps cache rules (importer.Service).
type CacheRules interface {
	CreateCacheRule(ctx context.Context, r importer.CacheRule) (importer.CacheRule, error)
	GetCacheRule(ctx context.Context, registry, name string) (importer.CacheRule, error)
	ListCacheRules(ctx context.Context, registry string) ([]importer.CacheRule, error)
	UpdateCacheRule(ctx context.Context, registry, name string, u importer.CacheRuleUpdate) (importer.CacheRule, error)
	DeleteCacheRule(ctx context.Context, registry, name string) error
}

// CredentialSets keeps credential sets (importer.Service).
type CredentialSets interface {
	CreateCredentialSet(ctx context.Context, cs importer.CredentialSet) (importer.CredentialSet, error)
	GetCredentialSet(ctx context.Context, registry, name string) (importer.CredentialSet, error)
	ListCredentialSets(ctx context.Context, registry string) ([]importer.CredentialSet, error)
	UpdateCredentialSet(ctx context.Context, registry, name string, u importer.CredentialSetUpdate) (importer.CredentialSet, error)
	DeleteCredentialSet(ctx context.Context, registry, name string) error
}

// Importer is the import and artifact-cache service.
type Importer interface {
	Imports
	CacheRules
	CredentialSets
}

// WithImporter serves the import, cache-rule and credential-set endpoints:
//
//	POST   /v1/registries/{reg}/import
//	GET    /v1/registries/{reg}/cache-rules             POST (create)
//	GET    /v1/registries/{reg}/cache-rules/{name}      PATCH, DELETE
//	GET    /v1/registries/{reg}/credential-sets         POST (create)
//	GET    /v1/registries/{reg}/credential-sets/{name}  PATCH, DELETE
func WithImporter(im Importer) Option {
	return func(s *Server) { (&importerAPI{s: s, im: im}).routes() }
}

// importerAPI holds the handlers of WithImporter.
type importerAPI struct {
	s  *Server
	im Importer
}

func (a *importerAPI) routes() {
	s := a.s
	s.mux.HandleFunc("POST /v1/registries/{reg}/import", s.authed(a.importImage))
	s.mux.HandleFunc("GET /v1/registries/{reg}/cache-rules", s.authed(a.listCacheRules))
	s.mux.HandleFunc("POST /v1/registries/{reg}/cache-rules", s.authed(a.createCacheRule))
	s.mux.HandleFunc("GET /v1/registries/{reg}/cache-rules/{name}", s.authed(a.getCacheRule))
	s.mux.HandleFunc("PATCH /v1/registries/{reg}/cache-rules/{name}", s.authed(a.updateCacheRule))
	s.mux.HandleFunc("DELETE /v1/registries/{reg}/cache-rules/{name}", s.authed(a.deleteCacheRule))
	s.mux.HandleFunc("GET /v1/registries/{reg}/credential-sets", s.authed(a.listCredentialSets))
	s.mux.HandleFunc("POST /v1/registries/{reg}/credential-sets", s.authed(a.createCredentialSet))
	s.mux.HandleFunc("GET /v1/registries/{reg}/credential-sets/{name}", s.authed(a.getCredentialSet))
	s.mux.HandleFunc("PATCH /v1/registries/{reg}/credential-sets/{name}", s.authed(a.updateCredentialSet))
	s.mux.HandleFunc("DELETE /v1/registries/{reg}/credential-sets/{name}", s.authed(a.deleteCredentialSet))
}

// credentialSetsScope and cacheRulesScope are the control-plane scopes of
// the collections (their items are .../<name>).
func cacheRulesScope(reg string) string     { return auth.RegistryScope(reg) + "/cache-rules" }
func credentialSetsScope(reg string) string { return auth.RegistryScope(reg) + "/credential-sets" }

// importImage runs an import. With Accept: application/x-ndjson the answer
// streams progress lines and ends with a result or error line; errors found
// before the copy starts are answered with their status either way.
func (a *importerAPI) importImage(w http.ResponseWriter, r *http.Request) error {
	reg := r.PathValue("reg")
	var req api.ImportRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.Source) == "" {
		return invalidField("source", "must be set")
	}
	ctx := r.Context()
	in := importer.ImportRequest{Source: req.Source, Targets: req.TargetTags, Repositories: req.UntaggedTargetRepositories,
		Username: req.Username, Password: req.Password, Force: req.Force}
	stream := strings.Contains(r.Header.Get("Accept"), api.NDJSONContentType)
	if !stream {
		res, err := a.im.Import(ctx, identity(ctx), reg, in, nil)
		if err != nil {
			return err
		}
		return reply(w, http.StatusOK, toAPIImportResult(res))
	}
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	started := false
	emit := func(ev api.ImportEvent) {
		if !started {
			started = true
			w.Header().Set("Content-Type", api.NDJSONContentType)
			w.WriteHeader(http.StatusOK)
		}
		_ = enc.Encode(ev)
		_ = rc.Flush()
	}
	res, err := a.im.Import(ctx, identity(ctx), reg, in, func(p importer.Progress) {
		emit(api.ImportEvent{Progress: &api.ImportProgress{Action: p.Action, Kind: p.Kind, Repository: p.Repository,
			Digest: p.Digest.String(), MediaType: p.MediaType, Size: p.Size, ElapsedSeconds: p.Elapsed.Seconds(), Message: p.Message}})
	})
	if err != nil {
		if !started {
			return err
		}
		// The status line is sent: the error is the last line.
		e := toAPIError(err)
		a.s.log.InfoContext(ctx, "request failed", "method", r.Method, "path", r.URL.Path, "code", e.Code, "err", err)
		emit(api.ImportEvent{Error: e})
		return nil
	}
	out := toAPIImportResult(res)
	emit(api.ImportEvent{Result: &out})
	return nil
}

func toAPIImportResult(res importer.ImportResult) api.ImportResult {
	out := api.ImportResult{
		Source: res.Source, Digest: res.Digest.String(), MediaType: res.MediaType,
		TargetTags: nonNil(res.Targets), UntaggedTargetRepositories: nonNil(res.Untagged), SameServer: res.SameServer,
		Manifests: res.Manifests, Referrers: res.Referrers,
		BlobsCopied: res.BlobsCopied, BlobsLinked: res.BlobsLinked, BlobsSkipped: res.BlobsSkipped,
		BytesCopied: res.BytesCopied, DurationSeconds: res.Duration.Seconds(),
	}
	if res.RateLimitRemaining >= 0 {
		n := res.RateLimitRemaining
		out.RateLimitRemaining = &n
	}
	return out
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func toAPICacheRule(r importer.CacheRule) api.CacheRule {
	return api.CacheRule{Name: r.Name, Registry: r.Registry, SourceRepository: r.SourceRepository, TargetRepository: r.TargetRepository,
		CredentialSet: r.CredentialSet, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

func (a *importerAPI) listCacheRules(w http.ResponseWriter, r *http.Request) error {
	reg := r.PathValue("reg")
	if err := a.s.check(r, auth.OpRead, cacheRulesScope(reg)); err != nil {
		return err
	}
	rules, err := a.im.ListCacheRules(r.Context(), reg)
	if err != nil {
		return err
	}
	out := make([]api.CacheRule, 0, len(rules))
	for _, cr := range rules {
		out = append(out, toAPICacheRule(cr))
	}
	return reply(w, http.StatusOK, out)
}

func (a *importerAPI) createCacheRule(w http.ResponseWriter, r *http.Request) error {
	reg := r.PathValue("reg")
	var req api.CreateCacheRuleRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return invalidField("name", "must be set")
	}
	if err := a.s.check(r, auth.OpWrite, cacheRulesScope(reg)+"/"+req.Name); err != nil {
		return err
	}
	cr, err := a.im.CreateCacheRule(r.Context(), importer.CacheRule{Registry: reg, Name: req.Name,
		SourceRepository: req.SourceRepository, TargetRepository: req.TargetRepository, CredentialSet: req.CredentialSet})
	if err != nil {
		return err
	}
	return reply(w, http.StatusCreated, toAPICacheRule(cr))
}

func (a *importerAPI) getCacheRule(w http.ResponseWriter, r *http.Request) error {
	reg, name := r.PathValue("reg"), r.PathValue("name")
	if err := a.s.check(r, auth.OpRead, cacheRulesScope(reg)+"/"+name); err != nil {
		return err
	}
	cr, err := a.im.GetCacheRule(r.Context(), reg, name)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, toAPICacheRule(cr))
}

func (a *importerAPI) updateCacheRule(w http.ResponseWriter, r *http.Request) error {
	reg, name := r.PathValue("reg"), r.PathValue("name")
	var req api.UpdateCacheRuleRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := a.s.check(r, auth.OpWrite, cacheRulesScope(reg)+"/"+name); err != nil {
		return err
	}
	cr, err := a.im.UpdateCacheRule(r.Context(), reg, name, importer.CacheRuleUpdate{CredentialSet: req.CredentialSet})
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, toAPICacheRule(cr))
}

func (a *importerAPI) deleteCacheRule(w http.ResponseWriter, r *http.Request) error {
	reg, name := r.PathValue("reg"), r.PathValue("name")
	if err := a.s.check(r, auth.OpWrite, cacheRulesScope(reg)+"/"+name); err != nil {
		return err
	}
	if err := a.im.DeleteCacheRule(r.Context(), reg, name); err != nil {
		return err
	}
	return reply(w, http.StatusNoContent, nil)
}

func toAPICredentialSet(cs importer.CredentialSet) api.CredentialSet {
	return api.CredentialSet{
		Name: cs.Name, Registry: cs.Registry, LoginServer: cs.LoginServer,
		AuthCredentials: []api.AuthCredential{{
			Name: "Credential1", UsernameSecretIdentifier: cs.UsernameSecret, PasswordSecretIdentifier: cs.PasswordSecret,
			CredentialHealth: api.CredentialHealth{Status: cs.Health.Status, ErrorCode: cs.Health.ErrorCode, ErrorMessage: cs.Health.ErrorMessage},
		}},
		Identity:  api.CredentialSetIdentity{PrincipalID: cs.PrincipalID, Type: "SystemAssigned"},
		CreatedAt: cs.CreatedAt, UpdatedAt: cs.UpdatedAt,
	}
}

func (a *importerAPI) listCredentialSets(w http.ResponseWriter, r *http.Request) error {
	reg := r.PathValue("reg")
	if err := a.s.check(r, auth.OpRead, credentialSetsScope(reg)); err != nil {
		return err
	}
	sets, err := a.im.ListCredentialSets(r.Context(), reg)
	if err != nil {
		return err
	}
	out := make([]api.CredentialSet, 0, len(sets))
	for _, cs := range sets {
		out = append(out, toAPICredentialSet(cs))
	}
	return reply(w, http.StatusOK, out)
}

func (a *importerAPI) createCredentialSet(w http.ResponseWriter, r *http.Request) error {
	reg := r.PathValue("reg")
	var req api.CreateCredentialSetRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return invalidField("name", "must be set")
	}
	if req.LoginServer == "" {
		return invalidField("loginServer", "must be set")
	}
	if err := a.s.check(r, auth.OpWrite, credentialSetsScope(reg)+"/"+req.Name); err != nil {
		return err
	}
	cs, err := a.im.CreateCredentialSet(r.Context(), importer.CredentialSet{Registry: reg, Name: req.Name, LoginServer: req.LoginServer,
		UsernameSecret: req.UsernameSecretIdentifier, PasswordSecret: req.PasswordSecretIdentifier})
	if err != nil {
		return err
	}
	return reply(w, http.StatusCreated, toAPICredentialSet(cs))
}

func (a *importerAPI) getCredentialSet(w http.ResponseWriter, r *http.Request) error {
	reg, name := r.PathValue("reg"), r.PathValue("name")
	if err := a.s.check(r, auth.OpRead, credentialSetsScope(reg)+"/"+name); err != nil {
		return err
	}
	cs, err := a.im.GetCredentialSet(r.Context(), reg, name)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, toAPICredentialSet(cs))
}

func (a *importerAPI) updateCredentialSet(w http.ResponseWriter, r *http.Request) error {
	reg, name := r.PathValue("reg"), r.PathValue("name")
	var req api.UpdateCredentialSetRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := a.s.check(r, auth.OpWrite, credentialSetsScope(reg)+"/"+name); err != nil {
		return err
	}
	cs, err := a.im.UpdateCredentialSet(r.Context(), reg, name, importer.CredentialSetUpdate{
		UsernameSecret: req.UsernameSecretIdentifier, PasswordSecret: req.PasswordSecretIdentifier})
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, toAPICredentialSet(cs))
}

func (a *importerAPI) deleteCredentialSet(w http.ResponseWriter, r *http.Request) error {
	reg, name := r.PathValue("reg"), r.PathValue("name")
	if err := a.s.check(r, auth.OpWrite, credentialSetsScope(reg)+"/"+name); err != nil {
		return err
	}
	if err := a.im.DeleteCredentialSet(r.Context(), reg, name); err != nil {
		return err
	}
	return reply(w, http.StatusNoContent, nil)
}
