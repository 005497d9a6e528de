package telemetry

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// Check is one readiness check.
type Check struct {
	// Name names the part checked ("database", "blobs", "engine").
	Name string
	// Run returns nil when the part works. Its error is shown in the
	// /readyz body, so it must hold no secret (and no more of a path than
	// the data directory's own names).
	Run func(ctx context.Context) error
	// Optional marks a part the server serves without: when it fails the
	// server is degraded (200, the part named) rather than not ready (503).
	Optional bool
	// Detail, if set, describes the part when it is ok (free disk space,
	// a certificate's expiry).
	Detail func() string
}

// checkTimeout bounds each check.
const checkTimeout = 3 * time.Second

// CheckResult is the outcome of one check in the /readyz body.
type CheckResult struct {
	Name string `json:"name"`
	// Status is "ok", "degraded" (an optional part failed) or "failed".
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Readiness is the /readyz body.
type Readiness struct {
	// Status is "ready", "degraded" or "not ready".
	Status string        `json:"status"`
	Checks []CheckResult `json:"checks"`
}

// Live answers /healthz: 200 "ok" while the process serves HTTP at all.
func Live() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("ok\n"))
	})
}

// Ready answers /readyz: it runs every check concurrently, each bounded
// by a short timeout, and answers 503 when a required one fails, else 200
// ("degraded" when an optional one fails). The body is JSON when the
// client accepts application/json (or asks ?format=json), else one line
// per check ("database: ok", "engine: degraded (...)").
func Ready(checks ...Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res := runChecks(r.Context(), checks)
		code := http.StatusOK
		if res.Status == "not ready" {
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Cache-Control", "no-store")
		if r.URL.Query().Get("format") == "json" || r.Header.Get("Accept") == "application/json" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(res)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		out := res.Status + "\n"
		for _, c := range res.Checks {
			out += c.Name + ": " + c.Status
			if c.Error != "" {
				out += " (" + c.Error + ")"
			}
			if c.Detail != "" {
				out += " (" + c.Detail + ")"
			}
			out += "\n"
		}
		_, _ = w.Write([]byte(out))
	})
}

func runChecks(ctx context.Context, checks []Check) Readiness {
	res := Readiness{Status: "ready", Checks: make([]CheckResult, len(checks))}
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, checkTimeout)
			defer cancel()
			r := CheckResult{Name: c.Name, Status: "ok"}
			if err := c.Run(cctx); err != nil {
				r.Status, r.Error = "failed", err.Error()
				if c.Optional {
					r.Status = "degraded"
				}
			}
			if r.Status == "ok" && c.Detail != nil {
				r.Detail = c.Detail()
			}
			res.Checks[i] = r
		})
	}
	wg.Wait()
	for i, c := range checks {
		switch {
		case res.Checks[i].Status == "ok":
		case c.Optional:
			if res.Status == "ready" {
				res.Status = "degraded"
			}
		default:
			res.Status = "not ready"
		}
	}
	return res
}
