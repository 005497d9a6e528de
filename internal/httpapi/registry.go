package httpapi

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/vulndb"
)

func (s *Server) registryRoutes() {
	s.mux.HandleFunc("GET /v1/registries", s.authed(s.listRegistries))
	s.mux.HandleFunc("POST /v1/registries", s.authed(s.createRegistry))
	s.mux.HandleFunc("GET /v1/registries/{reg}", s.authed(s.getRegistry))
	s.mux.HandleFunc("PATCH /v1/registries/{reg}", s.authed(s.updateRegistry))
	s.mux.HandleFunc("DELETE /v1/registries/{reg}", s.authed(s.deleteRegistry))
	s.mux.HandleFunc("GET /v1/registries/{reg}/repositories", s.authed(s.listRepositories))
	s.mux.HandleFunc("GET /v1/registries/{reg}/repository", s.authed(s.getRepository))
	s.mux.HandleFunc("DELETE /v1/registries/{reg}/repository", s.authed(s.deleteRepository))
	s.mux.HandleFunc("GET /v1/registries/{reg}/tags", s.authed(s.listTags))
	s.mux.HandleFunc("DELETE /v1/registries/{reg}/tags", s.authed(s.untag))
	s.mux.HandleFunc("GET /v1/registries/{reg}/tag-history", s.authed(s.tagHistory))
	s.mux.HandleFunc("GET /v1/registries/{reg}/manifests", s.authed(s.listManifests))
	s.mux.HandleFunc("DELETE /v1/registries/{reg}/manifest", s.authed(s.deleteManifest))
}

func (s *Server) toAPIRegistry(ctx context.Context, r store.Registry) api.Registry {
	out := api.Registry{
		ID:            auth.RegistryScope(r.Name),
		Name:          r.Name,
		LoginServer:   s.store.LoginServer(r),
		AnonymousPull: r.AnonymousPull,
		CreatedAt:     r.CreatedAt,
		Running:       s.regs.Running(r.Name),
		QuotaBytes:    r.Quota,
	}
	if s.scans != nil {
		if p, err := s.scans.Policy(ctx, r.Name); err == nil {
			out.ScanOnPush, out.QuarantineSeverity = p.ScanOnPush, string(p.Quarantine)
		}
	}
	return out
}

func (s *Server) listRegistries(w http.ResponseWriter, r *http.Request) error {
	if err := s.check(r, auth.OpRead, "/registries"); err != nil {
		return err
	}
	rs, err := s.store.ListRegistries(r.Context())
	if err != nil {
		return err
	}
	out := make([]api.Registry, 0, len(rs))
	for _, reg := range rs {
		out = append(out, s.toAPIRegistry(r.Context(), reg))
	}
	return reply(w, http.StatusOK, out)
}

func (s *Server) createRegistry(w http.ResponseWriter, r *http.Request) error {
	if err := s.check(r, auth.OpWrite, "/registries"); err != nil {
		return err
	}
	var req api.CreateRegistryRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return invalidField("name", "must be set")
	}
	if req.Listen != "" {
		if err := checkListen(req.Listen); err != nil {
			return err
		}
	}
	if req.QuotaBytes < 0 {
		return invalidField("quotaBytes", "must be 0 (no quota) or more")
	}
	ctx := r.Context()
	reg, err := s.store.CreateRegistry(ctx, store.Registry{Name: req.Name, Listen: req.Listen, AnonymousPull: req.AnonymousPull,
		Quota: req.QuotaBytes})
	if err != nil {
		return err
	}
	started, err := s.regs.Start(ctx, reg)
	if err != nil {
		// The registry is unusable without its listener: undo the create so
		// a retry with another address starts clean.
		if derr := s.store.DeleteRegistry(ctx, reg.Name); derr != nil {
			s.log.ErrorContext(ctx, "undoing registry create", "registry", reg.Name, "err", derr)
		}
		return err
	}
	if started.Listen != reg.Listen {
		reg.Listen = started.Listen
		if reg, err = s.store.UpdateRegistry(ctx, reg); err != nil {
			return err
		}
	}
	s.refreshTriggers(ctx)
	s.log.InfoContext(ctx, "registry created", "registry", reg.Name, "listen", reg.Listen, "by", identity(ctx).Name)
	return reply(w, http.StatusCreated, s.toAPIRegistry(ctx, reg))
}

func (s *Server) getRegistry(w http.ResponseWriter, r *http.Request) error {
	reg, err := s.readRegistry(r)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, s.toAPIRegistry(r.Context(), reg))
}

// readRegistry returns the registry the request's path names, once the
// caller may read it.
func (s *Server) readRegistry(r *http.Request) (store.Registry, error) {
	name := r.PathValue("reg")
	if err := s.check(r, auth.OpRead, auth.RegistryScope(name)); err != nil {
		return store.Registry{}, err
	}
	return s.store.GetRegistry(r.Context(), name)
}

// updateRegistry changes a registry's anonymous pull and quota: settings of
// the server's operator, so admin only (an owner must not raise its own
// quota).
func (s *Server) updateRegistry(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("reg")
	if err := s.check(r, auth.OpWrite, "/registries"); err != nil {
		return err
	}
	var req api.UpdateRegistryRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.QuotaBytes != nil && *req.QuotaBytes < 0 {
		return invalidField("quotaBytes", "must be 0 (no quota) or more")
	}
	var quarantine *vulndb.Severity
	if q := req.QuarantineSeverity; q != nil {
		sev, err := quarantineSeverity(*q)
		if err != nil {
			return err
		}
		quarantine = &sev
	}
	if (req.ScanOnPush != nil || quarantine != nil) && s.scans == nil {
		return invalidField("scanOnPush", "this server has no scanner")
	}
	ctx := r.Context()
	reg, err := s.store.GetRegistry(ctx, name)
	if err != nil {
		return err
	}
	if req.ScanOnPush != nil || quarantine != nil {
		p, err := s.scans.Policy(ctx, name)
		if err != nil {
			return err
		}
		if req.ScanOnPush != nil {
			p.ScanOnPush = *req.ScanOnPush
		}
		if quarantine != nil {
			p.Quarantine = *quarantine
		}
		if err := s.scans.SetPolicy(ctx, name, "", p); err != nil {
			return err
		}
		s.log.InfoContext(ctx, "registry scan policy set", "registry", name, "scanOnPush", p.ScanOnPush,
			"quarantine", p.Quarantine, "by", identity(ctx).Name)
	}
	if req.AnonymousPull != nil {
		reg.AnonymousPull = *req.AnonymousPull
	}
	if req.QuotaBytes != nil {
		reg.Quota = *req.QuotaBytes
	}
	if reg, err = s.store.UpdateRegistry(ctx, reg); err != nil {
		return err
	}
	if req.AnonymousPull != nil {
		s.auth.Invalidate()
	}
	s.log.InfoContext(ctx, "registry updated", "registry", name, "anonymousPull", reg.AnonymousPull, "quota", reg.Quota,
		"by", identity(ctx).Name)
	return reply(w, http.StatusOK, s.toAPIRegistry(ctx, reg))
}

func (s *Server) deleteRegistry(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("reg")
	if err := s.check(r, auth.OpWrite, "/registries"); err != nil {
		return err
	}
	ctx := r.Context()
	if _, err := s.store.GetRegistry(ctx, name); err != nil {
		return err
	}
	if err := s.regs.Stop(ctx, name); err != nil {
		return err
	}
	if err := s.store.DeleteRegistry(ctx, name); err != nil {
		return err
	}
	if s.scans != nil {
		s.scans.Forget(name)
	}
	s.auth.Invalidate()
	s.refreshTriggers(ctx)
	s.log.InfoContext(ctx, "registry deleted", "registry", name, "by", identity(ctx).Name)
	return reply(w, http.StatusNoContent, nil)
}

func toAPIRepository(r store.Repository) api.Repository {
	return api.Repository{
		Registry:      r.Registry,
		Name:          r.Name,
		TagCount:      r.TagCount,
		ManifestCount: r.ManifestCount,
		CreatedAt:     r.CreatedAt,
		UpdatedAt:     r.UpdatedAt,
	}
}

func (s *Server) listRepositories(w http.ResponseWriter, r *http.Request) error {
	reg := r.PathValue("reg")
	if err := s.check(r, auth.OpCatalog, auth.RegistryScope(reg)); err != nil {
		return err
	}
	rs, err := s.store.ListRepositories(r.Context(), reg, store.Page{})
	if err != nil {
		return err
	}
	out := make([]api.Repository, 0, len(rs))
	for _, repo := range rs {
		out = append(out, toAPIRepository(repo))
	}
	return reply(w, http.StatusOK, out)
}

// repoOp reads a request's registry and ?repository= and checks that the
// caller may perform op on that repository.
func (s *Server) repoOp(r *http.Request, op auth.Operation) (reg, repo string, err error) {
	reg = r.PathValue("reg")
	if repo, err = repoParam(r); err != nil {
		return "", "", err
	}
	return reg, repo, s.check(r, op, auth.RepositoryScope(reg, repo))
}

// repoParam reads the required ?repository= parameter.
func repoParam(r *http.Request) (string, error) {
	repo := r.URL.Query().Get("repository")
	if repo == "" {
		return "", invalidField("repository", "must be set")
	}
	return repo, nil
}

func (s *Server) getRepository(w http.ResponseWriter, r *http.Request) error {
	reg, repo, err := s.repoOp(r, auth.OpMetadataRead)
	if err != nil {
		return err
	}
	rp, err := s.store.GetRepository(r.Context(), reg, repo)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, toAPIRepository(rp))
}

func actor(r *http.Request) store.Actor {
	id := identity(r.Context())
	return store.Actor{Principal: id.Principal, RunID: id.RunID}
}

func (s *Server) deleteRepository(w http.ResponseWriter, r *http.Request) error {
	reg, repo, err := s.repoOp(r, auth.OpContentDelete)
	if err != nil {
		return err
	}
	if err := s.store.DeleteRepository(r.Context(), reg, repo, actor(r)); err != nil {
		return err
	}
	return reply(w, http.StatusNoContent, nil)
}

func (s *Server) listTags(w http.ResponseWriter, r *http.Request) error {
	reg, repo, err := s.repoOp(r, auth.OpMetadataRead)
	if err != nil {
		return err
	}
	ts, err := s.store.ListTags(r.Context(), reg, repo, store.Page{})
	if err != nil {
		return err
	}
	out := make([]api.Tag, 0, len(ts))
	for _, t := range ts {
		out = append(out, api.Tag{Name: t.Name, Digest: t.Digest.String(), UpdatedAt: t.UpdatedAt, CreatedAt: t.UpdatedAt})
	}
	return reply(w, http.StatusOK, out)
}

func (s *Server) tagHistory(w http.ResponseWriter, r *http.Request) error {
	reg, repo, err := s.repoOp(r, auth.OpMetadataRead)
	if err != nil {
		return err
	}
	tag := r.URL.Query().Get("tag")
	if tag == "" {
		return invalidField("tag", "must be set")
	}
	es, err := s.store.TagHistory(r.Context(), reg, repo, tag)
	if err != nil {
		return err
	}
	out := make([]api.TagEvent, 0, len(es))
	names := map[string]string{}
	for _, e := range es {
		ev := api.TagEvent{
			Registry: e.Registry, Repository: e.Repository, Tag: e.Tag,
			Old: e.Old.String(), New: e.New.String(), PushedBy: e.PushedBy, RunID: e.RunID, Time: e.Time,
		}
		if e.PushedBy != "" {
			name, ok := names[e.PushedBy]
			if !ok {
				// A deleted principal keeps its ID in the history.
				if p, err := s.auth.Principal(r.Context(), e.PushedBy); err == nil {
					name = p.Name
				}
				names[e.PushedBy] = name
			}
			ev.PushedByName = name
		}
		out = append(out, ev)
	}
	return reply(w, http.StatusOK, out)
}

func (s *Server) listManifests(w http.ResponseWriter, r *http.Request) error {
	reg, repo, err := s.repoOp(r, auth.OpMetadataRead)
	if err != nil {
		return err
	}
	ms, err := s.store.ListManifests(r.Context(), reg, repo, store.Page{})
	if err != nil {
		return err
	}
	out := make([]api.Manifest, 0, len(ms))
	for _, m := range ms {
		tags := m.Tags
		if tags == nil {
			tags = []string{}
		}
		out = append(out, api.Manifest{
			Digest: m.Digest.String(), MediaType: m.MediaType, ArtifactType: m.ArtifactType,
			Size: m.Size, Tags: tags, Subject: m.Subject.String(), CreatedAt: m.CreatedAt,
		})
	}
	return reply(w, http.StatusOK, out)
}

// imageParam splits ?image=repo:tag or repo@digest.
func imageParam(r *http.Request) (repo, tag string, dgst digest.Digest, err error) {
	image := r.URL.Query().Get("image")
	if image == "" {
		return "", "", "", invalidField("image", "must be set")
	}
	if repo, d, ok := strings.Cut(image, "@"); ok {
		dgst, err := digest.Parse(d)
		if err != nil {
			return "", "", "", invalidField("image", "%q: bad digest: %v", image, err)
		}
		return repo, "", dgst, nil
	}
	i := strings.LastIndex(image, ":")
	if i <= strings.LastIndex(image, "/") || i == len(image)-1 {
		return "", "", "", invalidField("image", "%q: want repository:tag or repository@digest", image)
	}
	return image[:i], image[i+1:], "", nil
}

func (s *Server) untag(w http.ResponseWriter, r *http.Request) error {
	reg := r.PathValue("reg")
	repo, tag, _, err := imageParam(r)
	if err != nil {
		return err
	}
	if tag == "" {
		return invalidField("image", "untag needs repository:tag, not a digest")
	}
	if err := s.check(r, auth.OpMetadataWrite, auth.RepositoryScope(reg, repo)); err != nil {
		return err
	}
	if err := s.store.Untag(r.Context(), reg, repo, tag, actor(r)); err != nil {
		return err
	}
	return reply(w, http.StatusNoContent, nil)
}

func (s *Server) deleteManifest(w http.ResponseWriter, r *http.Request) error {
	reg := r.PathValue("reg")
	repo, tag, dgst, err := imageParam(r)
	if err != nil {
		return err
	}
	if err := s.check(r, auth.OpContentDelete, auth.RepositoryScope(reg, repo)); err != nil {
		return err
	}
	ctx := r.Context()
	if tag != "" {
		if dgst, err = s.store.ResolveTag(ctx, reg, repo, tag); err != nil {
			return err
		}
	}
	if err := s.store.DeleteManifest(ctx, reg, repo, dgst, actor(r)); err != nil {
		return err
	}
	return reply(w, http.StatusNoContent, nil)
}

// checkListen validates a registry's listen address.
func checkListen(listen string) error {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return invalidField("listen", "%q is not host:port", listen)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return invalidField("listen", "%q: port must be 1-65535", listen)
	}
	if host == "" {
		return invalidField("listen", "%q: give a host, e.g. 127.0.0.1:%s", listen, port)
	}
	return nil
}

// refreshTriggers tells the triggers that registries changed, so a base
// image in a new registry is matched at once.
func (s *Server) refreshTriggers(ctx context.Context) {
	if s.triggers == nil {
		return
	}
	if err := s.triggers.RefreshRegistries(ctx); err != nil {
		s.log.WarnContext(ctx, "refreshing trigger registries", "err", err)
	}
}
