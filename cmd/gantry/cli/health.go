package cli

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// healthCheck is one line of gantry check-health.
type healthCheck struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

var healthView = tableView{{header: "NAME", expr: "name"}, {header: "STATUS", expr: "status"}, {header: "DETAIL", expr: "detail"}}

// newCheckHealthCmd is `gantry check-health`, as az acr check-health: the
// server, its readiness (database, blob storage, disk, certificates,
// engine) and the TLS certificate this client sees.
func newCheckHealthCmd(o *rootOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "check-health",
		Short: "Check the server, its database, blob storage, disk, engine and certificates",
		Long: `Check the gantry server this CLI talks to: that it answers (and its version),
its readiness parts (database and blob directory writable, free disk space,
the expiry of the certificates it serves, the container engine) and, over
HTTPS, the certificate this client is shown and when it expires.

Exits 1 when a part failed; "degraded" parts (the engine down, little disk
space, a certificate expiring within 14 days) are reported and exit 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			checks, failed := o.checkHealth(cmd.Context())
			if err := o.print(checks, healthView); err != nil {
				return err
			}
			if failed {
				return exitCode{code: 1}
			}
			return nil
		},
	}
}

func (o *rootOpts) checkHealth(ctx context.Context) ([]healthCheck, bool) {
	c, err := o.client()
	if err != nil {
		return []healthCheck{{Name: "server", Status: "failed", Detail: err.Error()}}, true
	}
	v, err := c.Version(ctx)
	if err != nil {
		return []healthCheck{{Name: "server", Status: "failed", Detail: fmt.Sprintf("%s: %v", c.Server(), err)}}, true
	}
	out := []healthCheck{{Name: "server", Status: "ok", Detail: fmt.Sprintf("gantry %s at %s", v.Version, c.Server())}}
	failed := false
	ready, err := c.Ready(ctx)
	if err != nil {
		out = append(out, healthCheck{Name: "readiness", Status: "failed", Detail: err.Error()})
		failed = true
	} else {
		for _, ch := range ready.Checks {
			detail := ch.Detail
			if ch.Error != "" {
				detail = ch.Error
			}
			out = append(out, healthCheck{Name: ch.Name, Status: ch.Status, Detail: detail})
			failed = failed || ch.Status == "failed"
		}
	}
	if strings.HasPrefix(c.Server(), "https://") {
		tc := o.tlsCheck(ctx, c.Server())
		out = append(out, tc)
		failed = failed || tc.Status == "failed"
	}
	return out, failed
}

// tlsCheck reports the certificate the server shows this client.
func (o *rootOpts) tlsCheck(ctx context.Context, server string) healthCheck {
	hc, err := trustingClient()
	if err != nil {
		return healthCheck{Name: "tls", Status: "failed", Detail: err.Error()}
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/v1/version", nil)
	if err != nil {
		return healthCheck{Name: "tls", Status: "failed", Detail: err.Error()}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return healthCheck{Name: "tls", Status: "failed", Detail: err.Error()}
	}
	resp.Body.Close()
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		return healthCheck{Name: "tls", Status: "failed", Detail: "no certificate"}
	}
	leaf := resp.TLS.PeerCertificates[0]
	left := time.Until(leaf.NotAfter)
	status := "ok"
	if left < 14*24*time.Hour {
		status = "degraded"
	}
	return healthCheck{Name: "tls", Status: status, Detail: fmt.Sprintf("%s, issued by %q, expires %s (in %d days)", resp.TLS.ServerName,
		leaf.Issuer.CommonName, leaf.NotAfter.UTC().Format(time.RFC3339), int(left.Hours()/24))}
}
