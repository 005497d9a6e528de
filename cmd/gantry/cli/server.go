package cli

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/server"
)

func newServerCmd(o *rootOpts) *cobra.Command {
	var data, file, listen string
	var sec config.Security
	var up config.Upstream
	var nw config.Network
	var st config.Storage
	var lg config.Log
	var tlsMode string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the gantry server: the control API and every registry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch tlsMode {
			case "", "self-signed", "off":
			default:
				return usageError("--tls %q: want self-signed or off (or give --tls-cert and --tls-key, or --acme-email)", tlsMode)
			}
			nw.TLS.SelfSigned = tlsMode == "self-signed"
			cfg, err := loadServerConfig(cmd, file, data, listen, sec, up, nw, st, lg)
			if err != nil {
				return err
			}
			return server.Run(cmd.Context(), cfg, server.Options{
				AdminPassword: os.Getenv("GANTRY_ADMIN_PASSWORD"),
				Logger:        serverLogger(o, cfg),
				Stdout:        o.out,
				Reload:        onHangup(cmd.Context()),
				Tracing:       os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "",
			})
		},
	}
	cmd.Flags().StringVar(&data, "data", "", "data directory (default gantry-data, or the config file's)")
	cmd.Flags().StringVar(&file, "config", "", "YAML configuration file")
	cmd.Flags().StringVar(&listen, "listen", "", "control API address (default 127.0.0.1:7000)")
	cmd.Flags().StringArrayVar(&sec.ContextRoots, "context-root", nil, "folder under which tasks of non-admin callers may use local contexts (repeatable)")
	cmd.Flags().StringArrayVar(&sec.PrivilegedRegistries, "allow-privileged-steps", nil, "registry whose task steps may use privileged: true or the host network explicitly (repeatable)")
	cmd.Flags().StringArrayVar(&sec.UpstreamAllow, "upstream-allow", nil, "the only upstream hosts import, cache rules and base-image polling may reach: host, host:port, IP or CIDR, *.domain (repeatable)")
	cmd.Flags().StringArrayVar(&sec.UpstreamDeny, "upstream-deny", nil, "upstream hosts never fetched from (repeatable; same forms as --upstream-allow)")
	cmd.Flags().StringVar(&up.CABundle, "upstream-ca", "", "PEM file of CA certificates trusted for upstream registries besides the system's (private CAs)")
	cmd.Flags().StringArrayVar(&up.PlainHTTP, "upstream-plain-http", nil, "upstream registry (host[:port]) spoken to in plain HTTP (repeatable; loopback always is)")
	cmd.Flags().StringArrayVar(&up.SkipVerify, "upstream-skip-verify", nil, "upstream registry whose TLS certificate is not checked (repeatable; insecure: prefer --upstream-ca)")
	cmd.Flags().StringVar(&nw.TLS.Cert, "tls-cert", "", "PEM certificate (chain) of every listener; reloaded when it changes or on SIGHUP")
	cmd.Flags().StringVar(&nw.TLS.Key, "tls-key", "", "PEM private key of --tls-cert")
	cmd.Flags().StringVar(&tlsMode, "tls", "", "self-signed: certificates from a local CA in the data directory (gantry server ca prints it); off: plain HTTP")
	cmd.Flags().StringVar(&nw.TLS.ACMEEmail, "acme-email", "", "get certificates by ACME for the control host and the registry hostnames, with this account email")
	cmd.Flags().StringVar(&nw.TLS.ACMEDirectory, "acme-directory", "", "ACME directory URL (default Let's Encrypt)")
	cmd.Flags().StringVar(&nw.TLS.ACMECA, "acme-ca", "", "PEM file of CAs trusted for the ACME directory's own certificate")
	cmd.Flags().StringVar(&nw.Domain, "domain", "", "serve every registry as <name>.DOMAIN on the shared registry listener")
	cmd.Flags().StringVar(&nw.RegistryListen, "registry-listen", "", "address of the shared registry listener with --domain (default :443 with TLS, :80 without)")
	cmd.Flags().DurationVar(&nw.BodyTimeout, "body-timeout", config.Default().Network.BodyTimeout, "cut a request whose body sends nothing for this long (0: never); a slow but steady upload is not cut")
	cmd.Flags().StringVar(&nw.ExternalURL, "external-url", "", "public URL of the control API behind a TLS-terminating proxy, e.g. https://gantry.example.com")
	cmd.Flags().StringArrayVar(&nw.TrustedProxies, "trusted-proxy", nil, "proxy address (IP or CIDR) whose X-Forwarded-* headers are believed (repeatable)")
	cmd.Flags().StringVar(&nw.MetricsListen, "metrics-listen", "", "serve /metrics without authentication on this separate address")
	cmd.Flags().StringVar(&nw.MetricsTokenFile, "metrics-token-file", "", "file holding a bearer token that may read /metrics besides the admin (Prometheus' credentials_file)")
	cmd.Flags().StringVar(&lg.Format, "log-format", "", "server log format: text (default) or json")
	cmd.Flags().StringVar(&lg.Level, "log-level", "", "server log level: debug, info (default), warn or error")
	cmd.Flags().StringVar(&st.Durability, "durability", "", "safe (default): acknowledge a push once it is on stable storage (fsync); fast: skip the fsyncs (an OS crash may lose the last seconds of pushes)")
	cmd.Flags().DurationVar(&st.GCInterval, "gc-interval", 0, "how often garbage collection runs; 0 disables the scheduled runs (default 1h, or the config file's)")
	cmd.Flags().DurationVar(&st.GCGrace, "gc-grace", 0, "keep blobs nothing references for this long after their last upload, link or check (default 1h)")
	cmd.Flags().DurationVar(&st.UploadTTL, "upload-ttl", 0, "remove upload sessions idle for this long (default 24h)")
	cmd.AddCommand(newServerCACmd(o))
	return cmd
}

// loadServerConfig applies, in order: defaults, the file, GANTRY_* env
// overrides, then flags; and validates the result.
func loadServerConfig(cmd *cobra.Command, file, data, listen string, sec config.Security, up config.Upstream, nw config.Network, st config.Storage, lg config.Log) (config.Config, error) {
	cfg := config.Default()
	if file != "" {
		if err := cfg.LoadFile(file); err != nil {
			return cfg, err
		}
	}
	if err := cfg.ApplyEnv(os.Environ()); err != nil {
		return cfg, err
	}
	// The flags the command line set win over the file and the environment.
	overlay := map[string]func(){
		"data":                   func() { cfg.Data = data },
		"listen":                 func() { cfg.Listen = listen },
		"context-root":           func() { cfg.Security.ContextRoots = sec.ContextRoots },
		"allow-privileged-steps": func() { cfg.Security.PrivilegedRegistries = sec.PrivilegedRegistries },
		"upstream-allow":         func() { cfg.Security.UpstreamAllow = sec.UpstreamAllow },
		"upstream-deny":          func() { cfg.Security.UpstreamDeny = sec.UpstreamDeny },
		"upstream-ca":            func() { cfg.Upstream.CABundle = up.CABundle },
		"upstream-plain-http":    func() { cfg.Upstream.PlainHTTP = up.PlainHTTP },
		"upstream-skip-verify":   func() { cfg.Upstream.SkipVerify = up.SkipVerify },
		"tls-cert":               func() { cfg.Network.TLS.Cert = nw.TLS.Cert },
		"tls-key":                func() { cfg.Network.TLS.Key = nw.TLS.Key },
		"tls":                    func() { cfg.Network.TLS.SelfSigned = nw.TLS.SelfSigned },
		"acme-email":             func() { cfg.Network.TLS.ACMEEmail = nw.TLS.ACMEEmail },
		"acme-directory":         func() { cfg.Network.TLS.ACMEDirectory = nw.TLS.ACMEDirectory },
		"acme-ca":                func() { cfg.Network.TLS.ACMECA = nw.TLS.ACMECA },
		"domain":                 func() { cfg.Network.Domain = nw.Domain },
		"registry-listen":        func() { cfg.Network.RegistryListen = nw.RegistryListen },
		"body-timeout":           func() { cfg.Network.BodyTimeout = nw.BodyTimeout },
		"external-url":           func() { cfg.Network.ExternalURL = nw.ExternalURL },
		"trusted-proxy":          func() { cfg.Network.TrustedProxies = nw.TrustedProxies },
		"metrics-listen":         func() { cfg.Network.MetricsListen = nw.MetricsListen },
		"metrics-token-file":     func() { cfg.Network.MetricsTokenFile = nw.MetricsTokenFile },
		"log-format":             func() { cfg.Log.Format = lg.Format },
		"log-level":              func() { cfg.Log.Level = lg.Level },
		"durability":             func() { cfg.Storage.Durability = st.Durability },
		"gc-interval":            func() { cfg.Storage.GCInterval = st.GCInterval },
		"gc-grace":               func() { cfg.Storage.GCGrace = st.GCGrace },
		"upload-ttl":             func() { cfg.Storage.UploadTTL = st.UploadTTL },
	}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if set, ok := overlay[f.Name]; ok {
			set()
		}
	})
	if cfg.Engine.Host == "" {
		bn := cfg.Engine.BuildNetwork
		cfg.Engine = server.EngineConfig(docker.EndpointFromEnv(os.Getenv))
		cfg.Engine.BuildNetwork = bn
	}
	return cfg, cfg.Validate()
}

func serverLogger(o *rootOpts, cfg config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	if o.verbose {
		level = slog.LevelDebug
	}
	h := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(o.errOut, h))
	}
	return slog.New(slog.NewTextHandler(o.errOut, h))
}

// newServerCACmd is `gantry server ca`: the local CA's certificate, for
// clients to trust (--tls self-signed).
func newServerCACmd(o *rootOpts) *cobra.Command {
	var data, file string
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Print the local CA certificate (PEM) of a server started with --tls self-signed",
		Long: `Print the certificate of the local CA a server started with --tls self-signed
issues its certificates from, read from the data directory. Clients trust it:

  gantry server ca > ca.crt
  sudo mkdir -p /etc/docker/certs.d/contoso.gantry.test && sudo cp ca.crt /etc/docker/certs.d/contoso.gantry.test/ca.crt
  curl --cacert ca.crt https://contoso.gantry.test/v2/

A running server also serves it, unauthenticated, at GET /v1/ca.pem.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := config.Default()
			if file != "" {
				if err := cfg.LoadFile(file); err != nil {
					return err
				}
			}
			if err := cfg.ApplyEnv(os.Environ()); err != nil {
				return err
			}
			if data != "" {
				cfg.Data = data
			}
			pem, err := server.LocalCA(cfg.Data)
			if err != nil {
				return err
			}
			_, err = o.out.Write(pem)
			return err
		},
	}
	cmd.Flags().StringVar(&data, "data", "", "data directory (default gantry-data, or the config file's)")
	cmd.Flags().StringVar(&file, "config", "", "YAML configuration file")
	return cmd
}

// onHangup delivers SIGHUP (reload the TLS certificate files) until ctx
// ends.
func onHangup(ctx context.Context) <-chan struct{} {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP)
	out := make(chan struct{}, 1)
	go func() {
		defer signal.Stop(sig)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
				select {
				case out <- struct{}{}:
				default: // a reload is already pending
				}
			}
		}
	}()
	return out
}
