package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/cli/cli/config/types"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/auth/authprovider"
	"github.com/moby/buildkit/session/secrets/secretsprovider"
	"github.com/moby/buildkit/util/entitlements"
	"github.com/moby/buildkit/util/progress/progressui"
	"github.com/tonistiigi/fsutil"
)

// probeTimeout bounds the check whether the engine offers BuildKit.
const probeTimeout = 10 * time.Second

// buildKitUnavailable returns "" when the engine offers BuildKit through its
// gRPC endpoint (dockerd 18.09 and newer), else why not (Podman serves no
// such endpoint). A definite answer is cached; a failure to reach the engine
// is not.
func (c *Client) buildKitUnavailable(ctx context.Context) string {
	c.bkMu.Lock()
	defer c.bkMu.Unlock()
	if c.bkChecked {
		return c.bkWhy
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	bk, err := c.buildkitClient(pctx)
	if err == nil {
		_, err = bk.ListWorkers(pctx)
		bk.Close()
	}
	v, _ := c.EngineVersion()
	switch {
	case err == nil:
		c.bkChecked, c.bkWhy = true, ""
	case ctx.Err() != nil:
		return "the check was cancelled"
	default:
		c.bkChecked = true
		c.bkWhy = fmt.Sprintf("%s %s at %s offers no BuildKit (%v)", v.Name, v.Version, c.host, firstLine(err.Error()))
		c.log.InfoContext(ctx, "engine without BuildKit: builds use the classic builder", logKeyErr, err)
	}
	return c.bkWhy
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// buildkitClient connects to the engine's BuildKit: its gRPC API and its
// session endpoint, each over a hijacked connection of the Engine API (as
// buildx's docker driver does).
func (c *Client) buildkitClient(ctx context.Context) (*bkclient.Client, error) {
	return bkclient.New(ctx, "",
		bkclient.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return c.api.DialHijack(ctx, "/grpc", "h2c", nil)
		}),
		bkclient.WithSessionDialer(func(ctx context.Context, proto string, meta map[string][]string) (net.Conn, error) {
			return c.api.DialHijack(ctx, "/session", proto, meta)
		}))
}

// buildKit runs one build on the engine's BuildKit with the Dockerfile
// frontend and stores the result in the engine's image store (the moby
// exporter), named after opts.Tags. It returns the image's ID.
func (c *Client) buildKit(ctx context.Context, dir, dockerfile string, opts BuildOptions, out io.Writer) (string, error) {
	if out == nil {
		out = io.Discard
	}
	bk, err := c.buildkitClient(ctx)
	if err != nil {
		return "", fmt.Errorf("connecting to BuildKit at %s: %w", c.host, wrap(err))
	}
	defer bk.Close()
	contextFS, err := fsutil.NewFS(dir)
	if err != nil {
		return "", fmt.Errorf("build context: %w", err)
	}
	dockerfileFS, err := fsutil.NewFS(filepath.Dir(dockerfile))
	if err != nil {
		return "", fmt.Errorf("dockerfile: %w", err)
	}
	attrs := map[string]string{"filename": filepath.Base(dockerfile)}
	if opts.Target != "" {
		attrs["target"] = opts.Target
	}
	if opts.Platform != "" {
		if _, err := parsePlatform(opts.Platform); err != nil {
			return "", err
		}
		attrs["platform"] = opts.Platform
	}
	for k, v := range opts.BuildArgs {
		if v != nil {
			attrs["build-arg:"+k] = *v
		}
	}
	for k, v := range opts.Labels {
		attrs["label:"+k] = v
	}
	if opts.NoCache {
		attrs["no-cache"] = ""
	}
	if opts.Pull {
		attrs["image-resolve-mode"] = "pull"
	}
	var allowed []string
	switch opts.NetworkMode {
	case "", "host":
		// The engines gantry runs on have no bridge network: RUN uses the
		// host's, which needs the network.host entitlement.
		attrs["force-network-mode"] = "host"
		allowed = append(allowed, string(entitlements.EntitlementNetworkHost))
	case "none":
		attrs["force-network-mode"] = "none"
	case "default":
		// The engine's default network (Docker's bridge), where there is
		// one: RUN gets a network namespace of its own.
	default:
		return "", fmt.Errorf("network %q: BuildKit builds run on the host network, the default network or none: %w", opts.NetworkMode, ErrInvalid)
	}
	export := bkclient.ExportEntry{Type: "moby", Attrs: map[string]string{}}
	if len(opts.Tags) > 0 {
		export.Attrs["name"] = strings.Join(opts.Tags, ",")
	}
	solve := bkclient.SolveOpt{
		Frontend:            "dockerfile.v0",
		FrontendAttrs:       attrs,
		LocalMounts:         map[string]fsutil.FS{"context": contextFS, "dockerfile": dockerfileFS},
		Exports:             []bkclient.ExportEntry{export},
		AllowedEntitlements: allowed,
		Session: []session.Attachable{
			secretsprovider.FromMap(opts.Secrets),
			authprovider.NewDockerAuthProvider(authprovider.DockerAuthProviderConfig{
				AuthConfigProvider: authLookup(opts.AuthConfigs),
			}),
		},
	}

	ch := make(chan *bkclient.SolveStatus)
	display, err := progressui.NewDisplay(out, progressui.PlainMode)
	if err != nil {
		return "", err
	}
	shown := make(chan struct{})
	go func() {
		defer close(shown)
		// UpdateFrom drains ch until Solve closes it.
		_, _ = display.UpdateFrom(context.WithoutCancel(ctx), ch)
	}()
	resp, err := bk.Solve(ctx, nil, solve, ch)
	<-shown
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		msg := strings.TrimPrefix(firstLine(err.Error()), "rpc error: code = Unknown desc = ")
		return "", &engineError{err: errors.New(msg), kinds: classify(msg)}
	}
	if len(opts.Tags) > 0 {
		img, err := c.InspectImage(ctx, opts.Tags[0])
		if err != nil {
			return "", err
		}
		return img.ID, nil
	}
	if id := resp.ExporterResponse[exptypes.ExporterImageConfigDigestKey]; id != "" {
		return id, nil
	}
	return resp.ExporterResponse[exptypes.ExporterImageDigestKey], nil
}

// authLookup answers the build session's credential requests from the
// build's registry logins. BuildKit asks by registry host (Docker Hub as
// registry-1.docker.io).
func authLookup(m map[string]AuthConfig) authprovider.AuthConfigProvider {
	return func(_ context.Context, host string, _ []string, _ authprovider.ExpireCachedAuthCheck) (types.AuthConfig, error) {
		keys := []string{host}
		if host == authprovider.DockerHubRegistryHost {
			keys = append(keys, "docker.io", "index.docker.io", authprovider.DockerHubConfigfileKey)
		}
		for _, k := range keys {
			if a, ok := m[k]; ok {
				return types.AuthConfig{
					Username: a.Username, Password: a.Password, ServerAddress: host, IdentityToken: a.IdentityToken,
				}, nil
			}
		}
		return types.AuthConfig{ServerAddress: host}, nil
	}
}

// Builder returns the builder an automatic Build would use on this engine:
// BuilderBuildKit, or BuilderClassic with the reason BuildKit is not there.
func (c *Client) Builder(ctx context.Context) (Builder, string) {
	if err := c.ready(ctx); err != nil {
		return BuilderClassic, err.Error()
	}
	if why := c.buildKitUnavailable(ctx); why != "" {
		return BuilderClassic, why
	}
	return BuilderBuildKit, ""
}
