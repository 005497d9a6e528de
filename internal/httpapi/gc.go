package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/store"
)

// Collector runs garbage collection passes. The server's GC scheduler
// implements it (one pass at a time, each logged and counted in the
// metrics); without WithCollector the API runs passes on the store itself.
type Collector interface {
	GC(ctx context.Context, opts store.GCOptions) (store.GCResult, error)
}

// WithCollector runs POST /v1/gc through c.
func WithCollector(c Collector) Option { return func(s *Server) { s.gc = c } }

func (s *Server) gcRoutes() {
	s.mux.HandleFunc("POST /v1/gc", s.authed(s.runGC))
}

// runGC runs a garbage collection pass and answers what it removed. Admin
// only (as creating registries): a pass touches content every registry
// shares.
func (s *Server) runGC(w http.ResponseWriter, r *http.Request) error {
	if err := s.check(r, auth.OpWrite, "/registries"); err != nil {
		return err
	}
	var req api.GCRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	opts := store.GCOptions{Registry: req.Registry, DryRun: req.DryRun}
	if req.Grace != "" {
		g, err := time.ParseDuration(req.Grace)
		if err != nil || g < 0 {
			return invalidField("grace", "want a duration of 0 or more such as 1h or 0s, got %q", req.Grace)
		}
		opts.Grace = &g
	}
	var c Collector = s.store
	if s.gc != nil {
		c = s.gc
	}
	res, err := c.GC(r.Context(), opts)
	if err != nil {
		return err
	}
	out := api.GCResult{
		Registry: req.Registry,
		DryRun:   req.DryRun,
		Grace:    res.Grace.String(),
		Blobs:    len(res.Blobs),
		Bytes:    res.Bytes,
		Uploads:  res.Uploads,
		Seconds:  res.Duration.Seconds(),
	}
	for _, b := range res.Blobs {
		out.Digests = append(out.Digests, b.Digest.String())
	}
	return reply(w, http.StatusOK, out)
}
