package cli

import (
	"log/slog"
	"os"

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
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the gantry server: the control API and every registry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadServerConfig(cmd, file, data, listen, sec, up)
			if err != nil {
				return err
			}
			return server.Run(cmd.Context(), cfg, server.Options{
				AdminPassword: os.Getenv("GANTRY_ADMIN_PASSWORD"),
				Logger:        serverLogger(o, cfg),
				Stdout:        o.out,
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
	return cmd
}

// loadServerConfig applies, in order: defaults, the file, GANTRY_* env
// overrides, then flags; and validates the result.
func loadServerConfig(cmd *cobra.Command, file, data, listen string, sec config.Security, up config.Upstream) (config.Config, error) {
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
