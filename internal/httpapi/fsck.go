package httpapi

import (
	"net/http"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/auth"
)

func (s *Server) fsckRoutes() {
	s.mux.HandleFunc("POST /v1/fsck", s.authed(s.fsck))
}

// fsck verifies every blob (of one registry, or all) against its digest,
// quarantining damaged files: for whoever may manage every registry.
func (s *Server) fsck(w http.ResponseWriter, r *http.Request) error {
	if err := s.check(r, auth.OpWrite, "/registries"); err != nil {
		return err
	}
	var req api.FsckRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	rep, err := s.store.Fsck(r.Context(), req.Registry)
	if err != nil {
		return err
	}
	out := api.FsckReport{Checked: rep.Blobs, Bytes: rep.Bytes, DurationSeconds: rep.Duration.Seconds(), Damaged: []api.FsckDamage{}}
	for _, d := range rep.Damaged {
		out.Damaged = append(out.Damaged, api.FsckDamage{Digest: d.Digest.String(), Problem: d.Problem, Quarantined: d.Quarantined, Manifests: d.Manifests})
	}
	return reply(w, http.StatusOK, out)
}
