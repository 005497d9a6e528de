package httpapi

import (
	"cmp"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/egress"
	"github.com/gantryhq/gantry/internal/errdefs"
	"github.com/gantryhq/gantry/internal/oci"
	"github.com/gantryhq/gantry/internal/remote"
	"github.com/gantryhq/gantry/internal/scan"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/vulndb"
)

// WithScans serves the scan and vulnerability database endpoints.
func WithScans(sc *scan.Service) Option { return func(s *Server) { s.scans = sc } }

// vulndbImportPattern is the route whose body is a zip.
const vulndbImportPattern = "POST /v1/vulndb/import"

// maxVulnDBUpload bounds a database zip sent to the import route.
const maxVulnDBUpload = 2 << 30

func (s *Server) scanRoutes() {
	s.mux.HandleFunc("POST /v1/scans", s.authed(s.scanImage))
	s.mux.HandleFunc("GET /v1/registries/{reg}/scans", s.authed(s.latestScan))
	s.mux.HandleFunc("GET /v1/vulndb", s.authed(s.vulndbStats))
	s.mux.HandleFunc(vulndbImportPattern, s.authed(s.vulndbImport))
	s.mux.HandleFunc("POST /v1/vulndb/update", s.authed(s.vulndbUpdate))
	s.mux.HandleFunc("GET /v1/scan-allowlist", s.authed(s.listAllowlist))
	s.mux.HandleFunc("POST /v1/scan-allowlist", s.authed(s.addAllowlist))
	s.mux.HandleFunc("DELETE /v1/scan-allowlist/{id}", s.authed(s.removeAllowlist))
	s.mux.HandleFunc("GET /v1/scan-impact", s.authed(s.scanImpact))
	s.scanPolicyRoutes()
}

// maxImpactDepth bounds how many generations of images built on images
// the impact follows.
const maxImpactDepth = 5

// scanImpact answers which images an advisory affects and, through the
// base-image dependency graph the triggers use, which tasks built images
// on them (and on those, up to maxImpactDepth generations) and which
// container instances run one. Admin only: it spans every registry.
func (s *Server) scanImpact(w http.ResponseWriter, r *http.Request) error {
	if err := s.check(r, auth.OpWrite, "/registries"); err != nil {
		return err
	}
	id := r.URL.Query().Get("id")
	if id == "" {
		return invalidField("id", "must be set (an advisory ID or alias)")
	}
	ctx := r.Context()
	adv, imgs, err := s.scans.Impact(ctx, id)
	if err != nil {
		return err
	}
	out := api.ScanImpact{ID: adv.ID, Aliases: adv.Aliases, Summary: adv.Summary, Severity: string(adv.Severity),
		Images: []api.ImpactImage{}, Built: []api.ImpactBuild{}, Containers: []api.ImpactContainer{}}
	refs := map[string]bool{} // references of affected and built images
	var queue []string
	for _, im := range imgs {
		out.Images = append(out.Images, api.ImpactImage{Registry: im.Registry, Repository: im.Repository, Digest: im.Digest, Packages: im.Packages})
		refs[im.Digest] = true
		queue = append(queue, im.Digest)
	}
	seen := map[string]bool{}
	for depth := 0; len(queue) > 0 && depth < maxImpactDepth && s.tasks != nil; depth++ {
		var next []string
		for _, d := range queue {
			if seen[d] {
				continue
			}
			seen[d] = true
			builds, err := s.tasks.BuiltOnDigest(ctx, d)
			if err != nil {
				return err
			}
			for _, b := range builds {
				ib := api.ImpactBuild{Registry: b.Registry, Task: b.Task, Base: b.Base, Run: b.RunID, Images: []string{}}
				for _, img := range b.Images {
					ib.Images = append(ib.Images, img.Reference())
					refs[img.Reference()] = true
					if img.Digest != "" {
						refs[img.Digest] = true
						next = append(next, img.Digest)
					}
				}
				out.Built = append(out.Built, ib)
			}
		}
		queue = next
	}
	if s.containers != nil {
		insts, err := s.containers.List(ctx)
		if err != nil {
			return err
		}
		for _, in := range insts {
			_, dg, _ := strings.Cut(in.Image, "@")
			if refs[in.Image] || dg != "" && refs[dg] {
				out.Containers = append(out.Containers, api.ImpactContainer{Name: in.Name, Image: in.Image})
			}
		}
	}
	return reply(w, http.StatusOK, out)
}

// scanImage scans an image: of one of the server's registries (the caller
// must be able to pull it; the report is stored and attached), or of
// another registry with the caller's credential (reaching this machine
// only for the admin, as imports do).
func (s *Server) scanImage(w http.ResponseWriter, r *http.Request) error {
	var req api.ScanRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	ctx := r.Context()
	id := identity(ctx)
	t, name, ref, err := s.scanTarget(r, req.Image, req.Registry, req.Repository, req.Reference)
	if err != nil {
		return err
	}
	if t != nil {
		if err := s.check(r, auth.OpContentRead, auth.RepositoryScope(t.Registry, t.Repository)); err != nil {
			return err
		}
		rep, err := s.scans.Scan(ctx, *t, name, id.RunID)
		if err != nil {
			return err
		}
		return reply(w, http.StatusOK, rep)
	}
	rep, err := s.scans.ScanRemote(ctx, ref, remoteCredential(req.Credential), s.reach(r), id.RunID)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, rep)
}

// reach is how far a fetch the caller asks for may go: this machine only
// for the admin.
func (s *Server) reach(r *http.Request) egress.Reach {
	if s.check(r, auth.OpWrite, "/registries") == nil {
		return egress.Local
	}
	return egress.External
}

func remoteCredential(c *api.ScanCredential) remote.Credential {
	if c == nil {
		return remote.Credential{}
	}
	return remote.Credential{Username: c.Username, Password: c.Password, IdentityToken: c.IdentityToken}
}

// scanTarget resolves what a request names: an image of one of the
// server's registries (t set, with the name to print) or another
// registry's reference.
func (s *Server) scanTarget(r *http.Request, image, registry, repo, reference string) (t *scan.Target, name string, ref oci.Reference, err error) {
	ctx := r.Context()
	if registry != "" {
		if repo == "" || reference == "" {
			return nil, "", ref, invalidField("repository", "registry %s: give the repository and a tag or digest", registry)
		}
		reg, err := s.store.GetRegistry(ctx, registry)
		if err != nil {
			return nil, "", ref, err
		}
		t := &scan.Target{Registry: reg.Name, Repository: repo, Reference: reference}
		return t, s.imageName(reg, repo, reference), ref, nil
	}
	if image == "" {
		return nil, "", ref, invalidField("image", "must be set (or registry, repository and reference)")
	}
	return s.imageTarget(r, "image", image)
}

// imageTarget resolves an image reference, given in the request's field:
// an image of one of the server's registries (t set, with the name to
// print) or another registry's.
func (s *Server) imageTarget(r *http.Request, field, image string) (t *scan.Target, name string, ref oci.Reference, err error) {
	ref, err = oci.ParseReference(image)
	if err != nil {
		return nil, "", ref, invalidField(field, "%v", err)
	}
	if ref.Domain != "" {
		reg, ok, err := s.store.LocalRegistry(r.Context(), ref.Domain)
		if err != nil {
			return nil, "", ref, err
		}
		if ok {
			t := &scan.Target{Registry: reg.Name, Repository: ref.Path, Reference: ref.Ref()}
			return t, s.imageName(reg, ref.Path, ref.Ref()), ref, nil
		}
	}
	return nil, "", ref, nil
}

func (s *Server) imageName(reg store.Registry, repo, reference string) string {
	sep := ":"
	if store.IsDigest(reference) {
		sep = "@"
	}
	return s.store.LoginServer(reg) + "/" + repo + sep + reference
}

// latestScan answers the stored report of an image (gantry scan show).
func (s *Server) latestScan(w http.ResponseWriter, r *http.Request) error {
	reg, repo, err := s.repoOp(r, auth.OpContentRead)
	if err != nil {
		return err
	}
	ref := r.URL.Query().Get("reference")
	if ref == "" {
		return invalidField("reference", "must be set (a tag or digest)")
	}
	if _, err := s.store.GetRegistry(r.Context(), reg); err != nil {
		return err
	}
	rep, err := s.scans.Latest(r.Context(), scan.Target{Registry: reg, Repository: repo, Reference: ref})
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, rep)
}

// vulndbStats answers what the vulnerability database holds; any
// authenticated caller may read it.
func (s *Server) vulndbStats(w http.ResponseWriter, r *http.Request) error {
	st, err := s.scans.Database(r.Context())
	if err != nil {
		return err
	}
	out := api.VulnDB{Advisories: st.Advisories, LastUpdate: st.LastUpdate, Source: st.Source, Generation: st.Generation,
		Ecosystems: []api.VulnDBEcosystem{}}
	for _, e := range st.Ecosystems {
		out.Ecosystems = append(out.Ecosystems, api.VulnDBEcosystem{Ecosystem: e.Ecosystem, Advisories: e.Advisories})
	}
	return reply(w, http.StatusOK, out)
}

// vulndbImport imports the zip of OSV files in the body. Admin only: the
// database decides what every registry's gate lets through.
func (s *Server) vulndbImport(w http.ResponseWriter, r *http.Request) error {
	if err := s.check(r, auth.OpWrite, "/registries"); err != nil {
		return err
	}
	if r.ContentLength > maxVulnDBUpload {
		return fmt.Errorf("the database zip is %d bytes, over the %d limit: %w", r.ContentLength, int64(maxVulnDBUpload), errdefs.ErrTooLarge)
	}
	f, err := os.CreateTemp("", "gantry-vulndb-*.zip")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	n, err := io.Copy(f, io.LimitReader(r.Body, maxVulnDBUpload+1))
	if err != nil {
		return invalid("reading the database zip: %v", err)
	}
	if n > maxVulnDBUpload {
		return fmt.Errorf("the database zip is over the %d-byte limit: %w", int64(maxVulnDBUpload), errdefs.ErrTooLarge)
	}
	source := cmp.Or(r.URL.Query().Get("source"), "upload")
	res, err := s.scans.ImportZip(r.Context(), f, n, source)
	if err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "vulnerability database imported", "source", source, "files", res.Files,
		"added", res.Added, "updated", res.Updated, "by", identity(r.Context()).Name)
	return reply(w, http.StatusOK, toAPIImport(res))
}

// vulndbUpdate imports the database distributed as an OCI artifact.
func (s *Server) vulndbUpdate(w http.ResponseWriter, r *http.Request) error {
	if err := s.check(r, auth.OpWrite, "/registries"); err != nil {
		return err
	}
	var req api.VulnDBUpdateRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Source == "" {
		return invalidField("source", "must be set (REGISTRY/REPO:TAG of the database artifact)")
	}
	t, _, ref, err := s.imageTarget(r, "source", req.Source)
	if err != nil {
		return err
	}
	res, err := s.scans.UpdateFrom(r.Context(), ref, t, remoteCredential(req.Credential), egress.Local)
	if err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "vulnerability database updated", "source", req.Source, "files", res.Files,
		"added", res.Added, "updated", res.Updated, "by", identity(r.Context()).Name)
	return reply(w, http.StatusOK, toAPIImport(res))
}

func toAPIImport(res scan.ImportResult) api.VulnDBImport {
	out := api.VulnDBImport{Files: res.Files, Added: res.Added, Updated: res.Updated, Unchanged: res.Unchanged,
		Ecosystems: res.Ecosystems,
		Rescan:     api.ScanRescan{Images: res.Rescan.Images, Changed: res.Rescan.Changed, Seconds: res.Rescan.Duration.Seconds()}}
	for _, i := range res.Ignored {
		out.Ignored = append(out.Ignored, api.VulnDBIgnored{File: i.File, ID: i.ID, Reason: i.Reason})
	}
	for _, a := range res.Rescan.Affected {
		out.Rescan.Affected = append(out.Rescan.Affected, api.ScanAffected{Registry: a.Registry, Repository: a.Repository,
			Digest: a.Digest, New: a.New, Quarantined: a.Quarantined})
	}
	return out
}

// allowlistScope is what managing a registry's allowlist (or, for "", the
// global one: admin only) takes.
func allowlistScope(registry string) string {
	if registry == "" {
		return "/registries"
	}
	return auth.RegistryScope(registry)
}

func (s *Server) listAllowlist(w http.ResponseWriter, r *http.Request) error {
	reg := r.URL.Query().Get("registry")
	if reg != "" {
		if err := s.check(r, auth.OpRead, auth.RegistryScope(reg)); err != nil {
			return err
		}
	}
	es, err := s.scans.Allowlist(r.Context(), reg)
	if err != nil {
		return err
	}
	now := time.Now()
	out := make([]api.AllowlistEntry, 0, len(es))
	for _, e := range es {
		a := api.AllowlistEntry{Registry: e.Registry, ID: e.ID, Reason: e.Reason, CreatedBy: e.CreatedBy, CreatedAt: e.CreatedAt}
		if !e.Expires.IsZero() {
			exp := e.Expires
			a.Expires, a.Expired = &exp, !exp.After(now)
		}
		out = append(out, a)
	}
	return reply(w, http.StatusOK, out)
}

func (s *Server) addAllowlist(w http.ResponseWriter, r *http.Request) error {
	var req api.AllowlistEntry
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := s.check(r, auth.OpWrite, allowlistScope(req.Registry)); err != nil {
		return err
	}
	if req.Registry != "" {
		if _, err := s.store.GetRegistry(r.Context(), req.Registry); err != nil {
			return err
		}
	}
	e := scan.AllowEntry{Registry: req.Registry, ID: req.ID, Reason: req.Reason, CreatedBy: identity(r.Context()).Name}
	if req.Expires != nil {
		e.Expires = *req.Expires
	}
	if err := s.scans.Allow(r.Context(), e); err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "advisory allowlisted", "id", e.ID, "registry", e.Registry, "expires", e.Expires, "by", e.CreatedBy)
	req.CreatedBy = e.CreatedBy
	return reply(w, http.StatusCreated, req)
}

func (s *Server) removeAllowlist(w http.ResponseWriter, r *http.Request) error {
	reg := r.URL.Query().Get("registry")
	if err := s.check(r, auth.OpWrite, allowlistScope(reg)); err != nil {
		return err
	}
	if err := s.scans.Disallow(r.Context(), reg, r.PathValue("id")); err != nil {
		return err
	}
	return reply(w, http.StatusNoContent, nil)
}

// scanPolicyRoutes serve repositories' own scan policies (a registry's own
// is part of PATCH /v1/registries/{reg}). Setting one is the operator's,
// as the registry's is: admin only.
func (s *Server) scanPolicyRoutes() {
	s.mux.HandleFunc("GET /v1/registries/{reg}/scan-policy", s.authed(s.getScanPolicy))
	s.mux.HandleFunc("PUT /v1/registries/{reg}/scan-policy", s.authed(s.putScanPolicy))
	s.mux.HandleFunc("DELETE /v1/registries/{reg}/scan-policy", s.authed(s.deleteScanPolicy))
}

func (s *Server) getScanPolicy(w http.ResponseWriter, r *http.Request) error {
	reg := r.PathValue("reg")
	repo, err := s.policyTarget(r, auth.OpRead, auth.RegistryScope(reg))
	if err != nil {
		return err
	}
	if _, err := s.store.GetRegistry(r.Context(), reg); err != nil {
		return err
	}
	p, own, err := s.scans.RepositoryPolicy(r.Context(), reg, repo)
	if err != nil {
		return err
	}
	if !own {
		if p, err = s.scans.Policy(r.Context(), reg); err != nil {
			return err
		}
	}
	return reply(w, http.StatusOK, api.ScanPolicy{Registry: reg, Repository: repo, ScanOnPush: p.ScanOnPush,
		QuarantineSeverity: string(p.Quarantine), Inherited: !own})
}

func (s *Server) putScanPolicy(w http.ResponseWriter, r *http.Request) error {
	reg := r.PathValue("reg")
	repo, err := s.policyTarget(r, auth.OpWrite, "/registries")
	if err != nil {
		return err
	}
	var req api.ScanPolicy
	if err := decode(r, &req); err != nil {
		return err
	}
	sev, err := quarantineSeverity(req.QuarantineSeverity)
	if err != nil {
		return err
	}
	if _, err := s.store.GetRegistry(r.Context(), reg); err != nil {
		return err
	}
	if err := s.scans.SetPolicy(r.Context(), reg, repo, scan.Policy{ScanOnPush: req.ScanOnPush, Quarantine: sev}); err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "repository scan policy set", "registry", reg, "repository", repo, "scanOnPush", req.ScanOnPush,
		"quarantine", sev, "by", identity(r.Context()).Name)
	return reply(w, http.StatusOK, api.ScanPolicy{Registry: reg, Repository: repo, ScanOnPush: req.ScanOnPush, QuarantineSeverity: string(sev)})
}

func (s *Server) deleteScanPolicy(w http.ResponseWriter, r *http.Request) error {
	reg := r.PathValue("reg")
	repo, err := s.policyTarget(r, auth.OpWrite, "/registries")
	if err != nil {
		return err
	}
	if err := s.scans.RemovePolicy(r.Context(), reg, repo); err != nil {
		return err
	}
	return reply(w, http.StatusNoContent, nil)
}

// policyTarget returns the repository a scan-policy request names ("" for
// the registry's own policy), once the caller may op on scope.
func (s *Server) policyTarget(r *http.Request, op auth.Operation, scope string) (string, error) {
	if err := s.check(r, op, scope); err != nil {
		return "", err
	}
	return repoParam(r)
}

// quarantineSeverity reads a quarantine severity: critical, high, medium,
// low, or "" / "none" for no quarantine.
func quarantineSeverity(q string) (vulndb.Severity, error) {
	if q == "" || q == "none" {
		return "", nil
	}
	sev, err := vulndb.ParseSeverity(q)
	if err != nil || sev == vulndb.SeverityUnknown {
		return "", invalidField("quarantineSeverity", "want critical, high, medium, low or none, got %q", q)
	}
	return sev, nil
}
