// Package server is gantry's composition root: it opens the database and the
// stores, builds the services, serves the control API and one listener per
// registry, and shuts everything down in order when its context ends.
package server

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/egress"
	"github.com/gantryhq/gantry/internal/engine"
	"github.com/gantryhq/gantry/internal/httpapi"
	"github.com/gantryhq/gantry/internal/importer"
	"github.com/gantryhq/gantry/internal/instance"
	"github.com/gantryhq/gantry/internal/registry"
	"github.com/gantryhq/gantry/internal/remote"
	"github.com/gantryhq/gantry/internal/sbom"
	"github.com/gantryhq/gantry/internal/scan"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/task"
	"github.com/gantryhq/gantry/internal/trigger"
	"github.com/gantryhq/gantry/internal/vault"
	"github.com/gantryhq/gantry/internal/vulndb"
)

// Options are the inputs of Run that do not come from the config file.
type Options struct {
	// AdminPassword is GANTRY_ADMIN_PASSWORD as read by cmd ("" for a
	// random one written to the data directory on first start).
	AdminPassword string
	// Logger receives the server log.
	Logger *slog.Logger
	// Stdout receives the few lines an operator must see (where the admin
	// password is, the addresses served).
	Stdout io.Writer
	// GantryBinary is a statically linked gantry binary for the gantry CLI
	// image steps run (`cmd: gantry ...`); "" for the running executable.
	GantryBinary string
	// Ready, if set, is called once every listener is serving, with the
	// control API's address.
	Ready func(controlAddr string)
	// Reload, if set, delivers the operator's requests to reload the TLS
	// certificate files (cmd sends SIGHUP here).
	Reload <-chan struct{}
	// Tracing exports a span per request over OTLP/HTTP, configured by the
	// standard OTEL_* variables (cmd sets it when OTEL_EXPORTER_OTLP_ENDPOINT
	// or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set).
	Tracing bool
}

// drainTimeout bounds the graceful stop of each component.
const drainTimeout = 10 * time.Second

// Run serves until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, cfg config.Config, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	out := o.Stdout
	if out == nil {
		out = io.Discard
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}
	keys := filepath.Join(cfg.Data, "keys")
	certs, err := newCertSource(cfg.Network, keys, cfg.Data, log.With("component", "tls"))
	if err != nil {
		return err
	}
	defer certs.Close()

	// The control API's address is needed by the task service (steps that
	// run the gantry CLI talk to it), and the shared registry listener's
	// names the registries, so both are bound first and served last.
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("control API: listening on %s: %w", cfg.Listen, err)
	}
	defer ln.Close()
	var shared net.Listener
	if cfg.Network.Domain != "" {
		addr := cfg.Network.RegistryListen
		if addr == "" {
			addr = ":" + defaultPort(map[bool]string{true: "https", false: "http"}[certs.TLS() != nil])
		}
		if shared, err = lc.Listen(ctx, "tcp", addr); err != nil {
			return fmt.Errorf("network.registryListen (--registry-listen): listening on %s: %w", addr, err)
		}
		defer shared.Close()
	}
	nw, err := newNetwork(cfg.Network, certs.TLS(), addrOf(shared))
	if err != nil {
		return err
	}
	controlURL := nw.controlURL(ln.Addr().String())
	certs.Manage(ctx, hostOf(strings.TrimPrefix(strings.TrimPrefix(controlURL, "https://"), "http://")))
	if o.Reload != nil {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-o.Reload:
					certs.Reload(ctx)
				}
			}
		}()
	}
	if ip := net.ParseIP(hostOf(ln.Addr().String())); ip != nil && ip.IsUnspecified() && nw.external == nil {
		log.Warn("the control API listens on all interfaces but advertises 127.0.0.1: give --external-url with the name clients use", "listen", ln.Addr().String())
	}

	database, err := db.Open(ctx, filepath.Join(cfg.Data, "gantry.db"), db.Durable(cfg.Storage.Durable()), db.WithLogger(log.With("component", "db")))
	if err != nil {
		return err
	}
	defer database.Close()

	st, err := store.Open(ctx, database, cfg.Data, store.WithLogger(log.With("component", "store")), store.WithSync(cfg.Storage.Durable()),
		store.WithAddressing(nw.addressing), store.WithGCGrace(cfg.Storage.GCGrace), store.WithUploadTTL(cfg.Storage.UploadTTL))
	if err != nil {
		return err
	}
	ops, err := newOps(ctx, log, st, o.Tracing)
	if err != nil {
		return err
	}
	if path := cfg.Network.MetricsTokenFile; path != "" {
		if ops.scrapeToken, err = readScrapeToken(path); err != nil {
			ops.shutdown()
			return err
		}
	}
	defer ops.shutdown()
	au, err := auth.New(database, keys, auth.WithLogger(log.With("component", "auth")), auth.WithRegistryLookup(st),
		auth.WithObserver(ops.metrics))
	if err != nil {
		return err
	}
	vlt, err := vault.New(database, keys, vault.WithLogger(log.With("component", "vault")))
	if err != nil {
		return err
	}
	setup, err := au.EnsureAdmin(ctx, o.AdminPassword, cfg.Data)
	if err != nil {
		return err
	}
	if setup.PasswordFile != "" {
		fmt.Fprintf(out, "Created user admin; its password is in %s\n", setup.PasswordFile)
	}

	// The components start in this order, each ready before the next, and
	// stop in the reverse order (lifecycle.go).
	parts := &lifecycle{log: log}
	defer parts.stop()

	// Upstream fetches (import, cache rules, base-image polls) never reach
	// the control API, link-local or metadata addresses.
	egr, err := egress.New(egress.WithControlAddr(ln.Addr().String()),
		egress.WithAllow(cfg.Security.UpstreamAllow...), egress.WithDeny(cfg.Security.UpstreamDeny...))
	if err != nil {
		return fmt.Errorf("upstream policy: %w", err)
	}
	upstream, err := upstreamClient(cfg.Upstream, certs.ca, egr, log.With("component", "remote"))
	if err != nil {
		return err
	}
	imp := importer.New(database, st, vlt, au,
		importer.WithRemote(upstream),
		importer.WithLogger(log.With("component", "importer")),
		importer.WithTagTTL(cfg.Cache.TagTTL),
		importer.WithSpoolDir(filepath.Join(cfg.Data, "spool")),
		importer.WithMetrics(ops.metrics))
	if err := parts.start(ctx, "importer", &background{start: imp.Start, wait: imp.Wait}); err != nil {
		return err
	}

	gc := newCollector(st, log.With("component", "gc"), ops.metrics, cfg.Storage.GCInterval, filepath.Join(cfg.Data, "spool"))
	if err := parts.start(ctx, "garbage collection", &background{start: gc.Start, wait: gc.Wait}); err != nil {
		return err
	}

	// The scanner: before the registries, whose pulls its quarantine
	// policy gates; scan on push runs in its background worker.
	scans := scan.New(database, st,
		vulndb.New(database, log.With("component", "vulndb")),
		sbom.New(database, log.With("component", "sbom"), sbom.WithTempDir(filepath.Join(cfg.Data, "spool"))),
		scan.WithLogger(log.With("component", "scan")),
		scan.WithRemote(upstream),
		scan.WithAffectedHook(func(a scan.Affected) { ops.metrics.ScanAffected(a.Registry) }))
	if err := parts.start(ctx, "scanner", scans); err != nil {
		return err
	}

	regLog := log.With("component", "registry")
	regs := newListeners(regLog, nw, st, certs.Manage, func(r store.Registry, ep auth.Endpoint) http.Handler {
		v2 := registry.New(r.Name, st, registry.WithLogger(regLog.With("registry", r.Name)), registry.WithAuthorizer(au),
			registry.WithFallback(imp), registry.WithPushGuard(imp), registry.WithPullGate(scans))
		return nw.proxies.wrap(ops.wrap(r.Name, auth.WithEndpoint(registryMux(v2, au.TokenHandler(r.Name)), ep)))
	})
	served := &registryListeners{l: regs, list: st.ListRegistries, log: log, shared: nw.wrap(shared)}
	if err := parts.start(ctx, "registries", served); err != nil {
		return err
	}

	apiOpts := []httpapi.Option{httpapi.WithLogger(log.With("component", "api")), httpapi.WithImporter(imp), httpapi.WithCA(certs.ca),
		httpapi.WithCollector(gc), httpapi.WithScans(scans)}
	ep := engineEndpoint(cfg.Engine)
	dc, err := docker.New(ep, docker.WithLogger(log.With("component", "docker")))
	if err != nil {
		return fmt.Errorf("container engine: %w", err)
	}
	defer dc.Close()
	logEngine(ctx, log, dc)
	bin := o.GantryBinary
	if bin == "" {
		bin, _ = os.Executable()
	}
	runner := engine.New(dc, engine.WithLogger(log.With("component", "engine")), engine.WithGantryBinary(bin), engine.WithRemote(upstream))

	instances, err := instance.New(database, dc, vlt, instance.WithLogger(log.With("component", "instance")),
		instance.WithLoginExchange(registryLoginExchange(st, au)))
	if err != nil {
		return err
	}
	// After the registries: an image may have to be pulled from one of them.
	if err := parts.start(ctx, "container instances", stoppable{start: instances.Start, stop: instances.Stop}); err != nil {
		return err
	}
	apiOpts = append(apiOpts, httpapi.WithContainers(instances))

	tasks := task.New(database, cfg.Data, st, au, vlt, vlt, runner,
		task.WithLogger(log.With("component", "task")),
		task.WithConcurrency(cfg.Tasks.Concurrency),
		task.WithControlURL(controlURL),
		task.WithControlCA(certs.ca),
		task.WithContextRoots(cfg.Security.ContextRoots),
		task.WithPrivilegedRegistries(cfg.Security.PrivilegedRegistries),
		task.WithBuildNetwork(cfg.Engine.BuildNetwork))
	ops.countRuns(tasks)
	if err := parts.start(ctx, "task workers", &background{start: tasks.Start, wait: tasks.Wait}); err != nil {
		return err
	}

	trig := trigger.New(database, tasks, st, vlt,
		trigger.WithRemote(upstream),
		trigger.WithLogger(log.With("component", "trigger")),
		trigger.WithCommitPollInterval(cfg.Triggers.CommitPollInterval, 30*cfg.Triggers.CommitPollInterval),
		trigger.WithExternalPollInterval(cfg.Triggers.BaseImagePollInterval),
		trigger.WithMetrics(ops.metrics))
	if err := parts.start(ctx, "triggers", &background{start: trig.Start, wait: trig.Wait}); err != nil {
		return err
	}
	apiOpts = append(apiOpts, httpapi.WithTasks(tasks), httpapi.WithTriggers(trig))

	api := httpapi.New(st, au, vlt, regs, apiOpts...)
	srv := nw.newHTTPServer(nw.proxies.wrap(ops.control(api, au, database, st, dc, cfg.Data, certs)), log)
	if err := parts.start(ctx, "control API", newControlAPI(srv, nw.wrap(ln))); err != nil {
		return err
	}
	if addr := cfg.Network.MetricsListen; addr != "" {
		mln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("network.metricsListen (--metrics-listen): listening on %s: %w", addr, err)
		}
		if err := parts.start(ctx, "metrics", ops.metricsServer(mln)); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "gantry control API on %s\n", controlURL)
	log.Info("serving", "control", ln.Addr().String(), "data", cfg.Data, "registries", served.count)
	if o.Ready != nil {
		o.Ready(ln.Addr().String())
	}

	err = parts.wait(ctx)
	if err == nil {
		log.Info("shutting down")
	}
	parts.stop()
	return err
}

// registryLoginExchange exchanges a login for one of the server's own
// registries for a refresh token valid for ten minutes (a pull), so the
// engine never carries a stored password over loopback.
func registryLoginExchange(st *store.Store, au *auth.Service) instance.LoginExchange {
	return func(ctx context.Context, loginServer, username, password string) (string, bool) {
		reg, ok, err := st.LocalRegistry(ctx, loginServer)
		if err != nil || !ok {
			return "", false
		}
		tok, err := au.RegistryRefreshToken(ctx, reg.Name, username, password, 10*time.Minute)
		return tok, err == nil
	}
}

// engineEndpoint is the engine of the configuration (which cmd fills from
// DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH when the file names
// none).
func engineEndpoint(c config.Engine) docker.Endpoint {
	ep := docker.Endpoint{Host: c.Host}
	if ep.Host == "" {
		ep.Host = docker.DefaultHost
	}
	if c.TLS || c.TLSVerify {
		ep.TLS = &docker.TLS{CAFile: c.TLSCA, CertFile: c.TLSCert, KeyFile: c.TLSKey, Verify: c.TLSVerify}
	}
	return ep
}

// EngineConfig is the configuration of the engine at ep (the inverse of
// engineEndpoint), for callers that locate the engine as the docker CLI does.
func EngineConfig(ep docker.Endpoint) config.Engine {
	c := config.Engine{Host: ep.Host}
	if t := ep.TLS; t != nil {
		c.TLS, c.TLSVerify = true, t.Verify
		c.TLSCA, c.TLSCert, c.TLSKey = t.CAFile, t.CertFile, t.KeyFile
	}
	return c
}

// logEngine connects to the engine once at start and logs what it is; an
// engine that does not answer is a warning, not a failure: the registries
// are served all the same, runs end with status Error naming the address
// until the engine answers, and the client connects on the next call.
func logEngine(ctx context.Context, log *slog.Logger, dc *docker.Client) {
	v, err := dc.Connect(ctx)
	if err != nil {
		log.Warn("container engine not available: registries are served; task runs end with status Error and container instances wait until it answers",
			"engine", dc.Host(), "err", err)
		return
	}
	builder, why := dc.Builder(ctx)
	attrs := []any{"engine", dc.Host(), "name", v.Name, "version", v.Version, "api", v.NegotiatedAPIVersion,
		"apiRange", v.MinAPIVersion + "-" + v.APIVersion, "builder", string(builder)}
	if why != "" {
		attrs = append(attrs, "classicBecause", why)
	}
	log.Info("container engine", attrs...)
}

// upstreamClient is the one client of other registries (import, cache
// rules, base-image polls): the egress policy, the CA bundle (and the local
// CA) and the per-registry settings of the config.
func upstreamClient(cfg config.Upstream, localCA []byte, egr *egress.Policy, log *slog.Logger) (*remote.Client, error) {
	var roots *x509.CertPool
	if cfg.CABundle != "" {
		var err error
		if roots, err = remote.LoadCAs(cfg.CABundle); err != nil {
			return nil, fmt.Errorf("upstream.caBundle: %w", err)
		}
	}
	// The server's own registries, reached by their hostnames (an import
	// from one to another, a base image in one), have its local CA's
	// certificates.
	if localCA != nil {
		if roots == nil {
			if roots, _ = x509.SystemCertPool(); roots == nil {
				roots = x509.NewCertPool()
			}
		}
		roots.AppendCertsFromPEM(localCA)
	}
	hosts := map[string]remote.Host{}
	for _, h := range cfg.PlainHTTP {
		hosts[h] = remote.Host{PlainHTTP: true, SkipVerify: hosts[h].SkipVerify}
	}
	for _, h := range cfg.SkipVerify {
		hosts[h] = remote.Host{PlainHTTP: hosts[h].PlainHTTP, SkipVerify: true}
	}
	return remote.New(remote.WithEgress(egr), remote.WithRootCAs(roots), remote.WithHosts(hosts),
		remote.WithLogger(log), remote.WithMaxManifest(store.DefaultMaxManifestSize)), nil
}
