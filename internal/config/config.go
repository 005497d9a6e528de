// Package config is the gantry server's configuration: defaults, a versioned
// YAML file laid over them, then GANTRY_SECTION_FIELD environment overrides,
// then Validate. Only cmd reads files and the environment; the result is
// handed to internal/server as plain values.
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/gantryhq/gantry/internal/errdefs"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errdefs.New("invalid configuration", errdefs.ErrInvalid)

// Config is the whole server configuration. YAML keys are camelCase without
// underscores so that environment overrides map one to one: the field
// engine.host is GANTRY_ENGINE_HOST.
type Config struct {
	// Version of the file format; 1 is the only one.
	Version int `yaml:"version"`
	// Data is the data directory (database, blobs, logs, keys).
	Data string `yaml:"data"`
	// Listen is the control API address.
	Listen string `yaml:"listen"`
	// Network says how clients reach gantry: TLS, registry hostnames, a
	// proxy in front.
	Network Network `yaml:"network"`
	Log     Log     `yaml:"log"`
	Engine  Engine  `yaml:"engine"`
	// Storage trades durability for speed.
	Storage  Storage  `yaml:"storage"`
	Tasks    Tasks    `yaml:"tasks"`
	Triggers Triggers `yaml:"triggers"`
	Cache    Cache    `yaml:"cache"`
	Security Security `yaml:"security"`
	Upstream Upstream `yaml:"upstream"`
}

// Upstream says how gantry's registry client reaches other registries
// (import, cache rules, base-image polling). Lists are comma-separated in
// GANTRY_UPSTREAM_* variables.
type Upstream struct {
	// CABundle is a PEM file of CA certificates trusted besides the
	// system's, for registries with certificates from a private CA
	// (gantry server --upstream-ca).
	CABundle string `yaml:"caBundle"`
	// PlainHTTP lists registries (host[:port]) spoken to in plain HTTP
	// (--upstream-plain-http); loopback registries always are.
	PlainHTTP []string `yaml:"plainHTTP"`
	// SkipVerify lists registries whose certificate is not checked at all
	// (--upstream-skip-verify): insecure; prefer CABundle.
	SkipVerify []string `yaml:"skipVerify"`
}

// Network says how clients on a network reach the server (docs/tls.md).
type Network struct {
	TLS TLS `yaml:"tls"`
	// Domain, when set, serves every registry at <name>.<Domain> on the
	// shared RegistryListen listener, routed by SNI and Host (--domain).
	// Login servers are then in that form.
	Domain string `yaml:"domain"`
	// RegistryListen is the shared registry listener's address
	// (--registry-listen; default :443 with TLS, :80 without), used with
	// Domain.
	RegistryListen string `yaml:"registryListen"`
	// ExternalURL is the public URL of the control API when a proxy
	// terminates TLS in front of gantry (--external-url), e.g.
	// https://gantry.example.com. Its scheme and port also apply to the
	// registry hostnames, and its host is advertised for listeners bound
	// to an unspecified address (0.0.0.0 or [::]).
	ExternalURL string `yaml:"externalURL"`
	// TrustedProxies are the addresses (IPs or CIDR prefixes) whose
	// X-Forwarded-For header is believed as the client's address (access
	// log, brute-force limiter; --trusted-proxy, repeatable); others' is
	// ignored. The scheme and host clients use come from ExternalURL, never
	// from forwarded headers.
	TrustedProxies []string `yaml:"trustedProxies"`
	// MetricsListen, when set, serves /metrics without authentication on
	// this separate address (--metrics-listen).
	MetricsListen string `yaml:"metricsListen"`
	// MetricsTokenFile names a file holding a bearer token (16 characters
	// or more) that, besides the admin, may read /metrics and the profiles
	// on the control listener: a Prometheus scrape config's
	// authorization.credentials_file (--metrics-token-file).
	MetricsTokenFile string `yaml:"metricsTokenFile"`
	// BodyTimeout is how long a request body may go without sending a byte
	// before the request is cut (--body-timeout; default 60s, 0: never). It
	// bounds the wait for a stalled or abandoned client, not the length of
	// an upload: a slow but steady one is not cut. Too short, and clients
	// on poor links fail uploads; too long, and stalled clients hold
	// connections and upload sessions for that long.
	BodyTimeout time.Duration `yaml:"bodyTimeout"`
}

// TLS says where the certificates of every listener come from: at most one
// of the files, the local CA or ACME; none serves plain HTTP.
type TLS struct {
	// Cert and Key are PEM files (chains allowed), reloaded when they
	// change or on SIGHUP (--tls-cert, --tls-key).
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// SelfSigned issues certificates from a local CA kept in the data
	// directory's keys (--tls self-signed); `gantry server ca` prints it.
	SelfSigned bool `yaml:"selfSigned"`
	// ACMEEmail turns on ACME (--acme-email) against ACMEDirectory
	// (--acme-directory; default Let's Encrypt), for the control host and
	// the registry hostnames. ACMECA is a PEM bundle trusted for the
	// directory's own certificate (a private ACME server).
	ACMEEmail     string `yaml:"acmeEmail"`
	ACMEDirectory string `yaml:"acmeDirectory"`
	ACMECA        string `yaml:"acmeCA"`
}

// Enabled reports whether the listeners serve TLS.
func (t TLS) Enabled() bool { return t.Cert != "" || t.Key != "" || t.SelfSigned || t.ACMEEmail != "" }

// Log configures the server log.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Engine locates the container engine steps and container instances run on.
// When Host is empty, cmd fills the whole section from DOCKER_HOST,
// DOCKER_TLS_VERIFY, DOCKER_TLS and DOCKER_CERT_PATH as the docker CLI reads
// them (default unix:///var/run/docker.sock).
type Engine struct {
	// Host is a DOCKER_HOST-style address, e.g. unix:///tmp/gantry-engine/docker.sock
	// or tcp://host:2376.
	Host string `yaml:"host"`
	// TLS speaks TLS to a tcp:// host; TLSVerify also verifies the engine's
	// certificate against TLSCA (or the system roots).
	TLS       bool `yaml:"tls"`
	TLSVerify bool `yaml:"tlsVerify"`
	// TLSCA, TLSCert and TLSKey are PEM files: the CA bundle and the client
	// certificate and key (DOCKER_CERT_PATH's ca.pem, cert.pem, key.pem).
	TLSCA   string `yaml:"tlsCA"`
	TLSCert string `yaml:"tlsCert"`
	TLSKey  string `yaml:"tlsKey"`
	// BuildNetwork is the network of builds' RUN instructions when a build
	// asks for none: "none" (the default: RUN gets a network namespace
	// with loopback only, so it can neither reach nor observe the host's
	// loopback), "default" (the engine's default network, Docker's bridge,
	// for an engine that has one), or "host".
	BuildNetwork string `yaml:"buildNetwork"`
}

// Storage configures the blob store.
type Storage struct {
	// Durability is "safe" (the default): a push is acknowledged only once
	// the blob file, its directory entry and the metadata commit are on
	// stable storage (fsync; commits share fsyncs of SQLite's WAL); or "fast": a process
	// crash still never leaves a partial blob visible or loses a commit,
	// but an OS crash or power loss may lose the last seconds of
	// acknowledged pushes (gantry server --durability).
	Durability string `yaml:"durability"`
	// Fsync is the former switch of safe durability: true forces it even
	// with durability fast.
	Fsync bool `yaml:"fsync"`
	// GCInterval is how often garbage collection runs (unreferenced blobs,
	// expired upload sessions); 0 disables the scheduled runs (gantry gc
	// run still works).
	GCInterval time.Duration `yaml:"gcInterval"`
	// GCGrace is how long a blob nothing references is kept after it was
	// last uploaded, linked or checked, so that a push whose manifest has
	// not arrived yet keeps its blobs. Shorter frees space sooner; a push
	// slower than the grace may be refused and have to be retried.
	GCGrace time.Duration `yaml:"gcGrace"`
	// UploadTTL is how long an upload session may stay idle before GC
	// removes it and its file.
	UploadTTL time.Duration `yaml:"uploadTTL"`
}

// Durable reports whether pushes are acknowledged only once on stable
// storage.
func (s Storage) Durable() bool { return s.Durability != "fast" || s.Fsync }

// Tasks configures the run queue.
type Tasks struct {
	// Concurrency is how many runs execute at once.
	Concurrency int `yaml:"concurrency"`
	// LogRetention is how long run logs are kept.
	LogRetention time.Duration `yaml:"logRetention"`
}

// Triggers configures polling intervals.
type Triggers struct {
	// CommitPollInterval is how often git contexts are polled for new commits.
	CommitPollInterval time.Duration `yaml:"commitPollInterval"`
	// BaseImagePollInterval is how often base images in external registries
	// are checked for a new digest.
	BaseImagePollInterval time.Duration `yaml:"baseImagePollInterval"`
}

// Cache configures pull-through cache rules.
type Cache struct {
	// TagTTL is how long a cached tag is served before it is revalidated
	// against the upstream with a HEAD request.
	TagTTL time.Duration `yaml:"tagTTL"`
}

// Security says what task content and upstream fetches may reach beyond a
// task's own rights (docs/security.md). Lists are comma-separated in
// GANTRY_SECURITY_* variables.
type Security struct {
	// ContextRoots are the folders under which a non-admin caller may name a
	// local folder context or a file:// or local-path git URL (gantry server
	// --context-root, repeatable). Empty: none; the admin may use any
	// folder outside the data directory.
	ContextRoots []string `yaml:"contextRoots"`
	// PrivilegedRegistries are the registries whose task steps may ask for
	// privileged: true or the host network explicitly (gantry server
	// --allow-privileged-steps, repeatable).
	PrivilegedRegistries []string `yaml:"privilegedRegistries"`
	// UpstreamAllow, when not empty, is the only upstream hosts import,
	// cache rules and base-image polling may fetch from (gantry server
	// --upstream-allow); UpstreamDeny is refused always (--upstream-deny).
	// Entries are host names, host:port, IP addresses or CIDR prefixes;
	// "*.example.com" matches subdomains.
	UpstreamAllow []string `yaml:"upstreamAllow"`
	UpstreamDeny  []string `yaml:"upstreamDeny"`
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		Version:  1,
		Data:     "gantry-data",
		Listen:   "127.0.0.1:7000",
		Log:      Log{Level: "info", Format: "text"},
		Network:  Network{BodyTimeout: time.Minute},
		Engine:   Engine{BuildNetwork: "none"},
		Storage:  Storage{Durability: "safe", GCInterval: time.Hour, GCGrace: time.Hour, UploadTTL: 24 * time.Hour},
		Tasks:    Tasks{Concurrency: 4, LogRetention: 30 * 24 * time.Hour},
		Triggers: Triggers{CommitPollInterval: 2 * time.Second, BaseImagePollInterval: 5 * time.Minute},
		Cache:    Cache{TagTTL: 5 * time.Minute},
	}
}

// Load lays the YAML document r over c. Unknown keys are errors, so typos
// do not pass silently.
func (c *Config) Load(r io.Reader, name string) error {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %w: %v", name, ErrInvalid, err)
	}
	return nil
}

// LoadFile is Load on a file.
func (c *Config) LoadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("reading configuration: %w", err)
	}
	defer f.Close()
	return c.Load(f, path)
}

// ApplyEnv applies GANTRY_<SECTION>_<FIELD> overrides from environ (as from
// os.Environ), e.g. GANTRY_STORAGE_FSYNC=true, GANTRY_LISTEN=127.0.0.1:7001.
func (c *Config) ApplyEnv(environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "GANTRY_") {
			env[k] = v
		}
	}
	return applyEnv(reflect.ValueOf(c).Elem(), "GANTRY", env)
}

func applyEnv(v reflect.Value, prefix string, env map[string]string) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key := prefix + "_" + strings.ToUpper(strings.Split(f.Tag.Get("yaml"), ",")[0])
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct {
			if err := applyEnv(fv, key, env); err != nil {
				return err
			}
			continue
		}
		s, ok := env[key]
		if !ok {
			continue
		}
		if err := setScalar(fv, s); err != nil {
			return fmt.Errorf("%s=%q: %w: %v", key, s, ErrInvalid, err)
		}
	}
	return nil
}

func setScalar(v reflect.Value, s string) error {
	switch v.Interface().(type) {
	case time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported kind %s", v.Kind())
		}
		var list []string
		for _, e := range strings.Split(s, ",") {
			if e = strings.TrimSpace(e); e != "" {
				list = append(list, e)
			}
		}
		v.Set(reflect.ValueOf(list))
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		v.SetInt(n)
	default:
		return fmt.Errorf("unsupported kind %s", v.Kind())
	}
	return nil
}

// Validate checks the configuration and says which field is wrong.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %w: %s", field, ErrInvalid, fmt.Sprintf(format, args...)))
	}
	if c.Version != 1 {
		bad("version", "%d is not supported (want 1)", c.Version)
	}
	if c.Data == "" {
		bad("data", "must be set")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q is not host:port", c.Listen)
	}
	errs = append(errs, c.Network.validate()...)
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q: want text or json", c.Log.Format)
	}
	switch c.Storage.Durability {
	case "safe", "fast":
	default:
		bad("storage.durability (--durability)", "%q: want safe or fast", c.Storage.Durability)
	}
	switch c.Engine.BuildNetwork {
	case "none", "default", "host":
	default:
		bad("engine.buildNetwork", "%q: want none, default or host", c.Engine.BuildNetwork)
	}
	if c.Storage.GCInterval < 0 || c.Storage.GCGrace < 0 {
		bad("storage", "gcInterval and gcGrace must not be negative")
	}
	if c.Storage.UploadTTL <= 0 {
		bad("storage.uploadTTL", "must be positive")
	}
	if c.Tasks.Concurrency < 1 {
		bad("tasks.concurrency", "must be at least 1")
	}
	if c.Triggers.CommitPollInterval < 0 || c.Triggers.BaseImagePollInterval < 0 {
		bad("triggers", "intervals must not be negative")
	}
	if c.Upstream.CABundle != "" {
		if _, err := os.Stat(c.Upstream.CABundle); err != nil {
			bad("upstream.caBundle", "%v", err)
		}
	}
	for i, root := range c.Security.ContextRoots {
		if !filepath.IsAbs(root) {
			bad(fmt.Sprintf("security.contextRoots[%d]", i), "%q is not an absolute path", root)
		}
	}
	return errors.Join(errs...)
}
