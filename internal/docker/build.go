package docker

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Builder names the image builder a build ran on.
type Builder string

// Builders.
const (
	// BuilderAuto picks BuildKit where the engine offers it, else the
	// classic builder (BuildOptions.Builder's zero value).
	BuilderAuto Builder = ""
	// BuilderBuildKit is the engine's BuildKit, driven through its gRPC and
	// session endpoints (github.com/moby/buildkit/client).
	BuilderBuildKit Builder = "BuildKit"
	// BuilderClassic is the engine's classic builder (POST /build).
	BuilderClassic Builder = "classic"
)

// BuildOptions configures a build. The zero value builds ./Dockerfile with
// the engine's defaults and removes intermediate containers, also after a
// failed step.
type BuildOptions struct {
	Tags       []string           // names to tag the result with (name:tag)
	Dockerfile string             // path of the Dockerfile inside the context (default "Dockerfile"); BuildImage only
	BuildArgs  map[string]*string // ARG values; a nil value takes it from the engine's environment (classic) or is left out (BuildKit)
	Target     string             // stage to build in a multi-stage Dockerfile
	NoCache    bool               // do not use the build cache
	Pull       bool               // always try to pull newer versions of the FROM images
	Labels     map[string]string  // labels added to the image
	Platform   string             // e.g. linux/amd64
	// NetworkMode is the network of the RUN containers: "host", "none",
	// "default" (the engine's default network, Docker's bridge, which
	// gantry's development engines do not have), or "" for host.
	NetworkMode string
	// AuthConfigs are credentials for pulling FROM images, keyed by registry
	// host (X-Registry-Config for the classic builder, the session's auth
	// provider for BuildKit).
	AuthConfigs map[string]AuthConfig
	// Secrets are the build secrets by ID, for RUN --mount=type=secret,id=ID.
	// They travel through the build session and reach no layer, history or
	// log; only BuildKit has them, so a build with secrets on an engine
	// without BuildKit fails with ErrNoBuildKit.
	Secrets Secrets
	// Builder chooses the builder (default BuilderAuto). BuilderBuildKit on
	// an engine without BuildKit fails with ErrNoBuildKit.
	Builder Builder
	// KeepIntermediate keeps the containers of the build steps (rm=0,
	// forcerm=0, classic builder); by default they are removed even when a
	// step fails.
	KeepIntermediate bool
}

// Secrets are build secrets by ID. Printing them shows only the IDs.
type Secrets map[string][]byte

// String lists the IDs, never the values.
func (s Secrets) String() string {
	return "Secrets{" + strings.Join(slices.Sorted(maps.Keys(s)), ", ") + "}"
}

// GoString is String, for %#v.
func (s Secrets) GoString() string { return s.String() }

// BuildSource is what Build reads: a context directory on this host and a
// Dockerfile, which may lie outside it.
type BuildSource struct {
	Dir string
	// Dockerfile is the Dockerfile's path, relative to Dir or absolute; ""
	// means Dir/Dockerfile.
	Dockerfile string
}

// BuildResult is the outcome of Build.
type BuildResult struct {
	ImageID string  // sha256:... of the built image in the engine's store
	Builder Builder // the builder that ran (Client.Builder says why)
}

// Build builds src with BuildKit where the engine offers it and the classic
// builder otherwise (see BuildOptions.Builder), and tags the result. The
// build output is written to out as plain lines while it arrives (nil
// discards): BuildKit's plain progress ("#5 [2/3] RUN ...") or the classic
// builder's steps. The context honours src.Dir/.dockerignore as the docker
// CLI does. A failing step is returned as an error carrying the builder's
// message.
func (c *Client) Build(ctx context.Context, src BuildSource, opts BuildOptions, out io.Writer) (BuildResult, error) {
	if err := c.ready(ctx); err != nil {
		return BuildResult{}, err
	}
	df := src.Dockerfile
	if df == "" {
		df = "Dockerfile"
	}
	if !filepath.IsAbs(df) {
		df = filepath.Join(src.Dir, df)
	}
	what := buildWhat(opts.Tags)
	builder := opts.Builder
	if builder == BuilderAuto || builder == BuilderBuildKit {
		switch why := c.buildKitUnavailable(ctx); {
		case why == "":
			builder = BuilderBuildKit
		case builder == BuilderBuildKit:
			return BuildResult{}, fmt.Errorf("%s: %s: %w", what, why, ErrNoBuildKit)
		default:
			builder = BuilderClassic
		}
	}
	switch builder {
	case BuilderBuildKit:
		id, err := c.buildKit(ctx, src.Dir, df, opts, out)
		if err != nil {
			return BuildResult{}, fmt.Errorf("%s: %w", what, err)
		}
		return BuildResult{ImageID: id, Builder: BuilderBuildKit}, nil
	case BuilderClassic:
		if err := c.noSecrets(what, opts.Secrets); err != nil {
			return BuildResult{}, err
		}
		var id string
		var err error
		for try := 0; ; try++ {
			pr, pw := io.Pipe()
			name := make(chan string, 1)
			go func() { pw.CloseWithError(contextTar(pw, src.Dir, df, name)) }()
			opts.Dockerfile = <-name
			id, err = c.BuildImage(ctx, pr, opts, out)
			pr.CloseWithError(err)
			// Podman 4.3's builder fails its cache lookup when another
			// client removes an image meanwhile ("layer not known"); the
			// build starts again.
			if err == nil || try == 2 || ctx.Err() != nil || !storeRace(err) {
				break
			}
			c.log.InfoContext(ctx, "build hit a concurrent image removal; building again", logKeyErr, err)
		}
		if err != nil {
			return BuildResult{}, err
		}
		return BuildResult{ImageID: id, Builder: BuilderClassic}, nil
	}
	return BuildResult{}, fmt.Errorf("%s: unknown builder %q: %w", what, builder, ErrInvalid)
}

// noSecrets refuses build secrets on the classic builder, naming them and
// the engine.
func (c *Client) noSecrets(what string, secrets Secrets) error {
	if len(secrets) == 0 {
		return nil
	}
	v, _ := c.EngineVersion()
	return fmt.Errorf("%s: build secrets (%s) need BuildKit, which %s %s at %s does not offer: %w",
		what, strings.Join(slices.Sorted(maps.Keys(secrets)), ", "), v.Name, v.Version, c.host, ErrNoBuildKit)
}

func buildWhat(tags []string) string {
	if len(tags) == 0 {
		return "building image"
	}
	return "building image " + strings.Join(tags, ", ")
}

// contextTar streams the build context dir for the classic builder, with the
// Dockerfile df added under a generated name when it lies outside dir (as
// the docker CLI does). It sends the Dockerfile's name in the stream on name
// before writing.
func contextTar(w io.Writer, dir, df string, name chan<- string) error {
	rel, err := filepath.Rel(dir, df)
	if err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		name <- filepath.ToSlash(rel)
		return TarBuildContext(w, dir, filepath.ToSlash(rel))
	}
	data, err := os.ReadFile(df)
	if err != nil {
		name <- "Dockerfile"
		return fmt.Errorf("reading the Dockerfile: %w", err)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	generated := ".dockerfile." + hex.EncodeToString(b)
	name <- generated
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(TarBuildContext(pw, dir, "")) }()
	defer pr.Close()
	tr := tar.NewReader(pr)
	tw := tar.NewWriter(w)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: generated, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(data); err != nil {
		return err
	}
	return tw.Close()
}

// BuildImage builds an image with the classic builder from a tar stream of
// the build context (see TarDir, TarBuildContext, TarFiles). The build output
// is written to out as plain lines while it arrives (nil discards). A failing
// step is returned as an error carrying the builder's message. It returns the
// ID of the built image (sha256:...). Secrets are not supported here.
func (c *Client) BuildImage(ctx context.Context, contextTar io.Reader, opts BuildOptions, out io.Writer) (string, error) {
	what := buildWhat(opts.Tags)
	if err := c.ready(ctx); err != nil {
		return "", err
	}
	if err := c.noSecrets(what, opts.Secrets); err != nil {
		return "", err
	}
	bo := client.ImageBuildOptions{
		Tags:        opts.Tags,
		Dockerfile:  opts.Dockerfile,
		BuildArgs:   opts.BuildArgs,
		Target:      opts.Target,
		NoCache:     opts.NoCache,
		PullParent:  opts.Pull,
		Labels:      opts.Labels,
		NetworkMode: classicNetwork(opts.NetworkMode),
		Remove:      !opts.KeepIntermediate,
		ForceRemove: !opts.KeepIntermediate,
		Version:     build.BuilderV1,
	}
	if opts.Platform != "" {
		p, err := parsePlatform(opts.Platform)
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		bo.Platforms = []ocispec.Platform{p}
	}
	if len(opts.AuthConfigs) > 0 {
		bo.AuthConfigs = make(map[string]registry.AuthConfig, len(opts.AuthConfigs))
		for host, a := range opts.AuthConfigs {
			bo.AuthConfigs[host] = registry.AuthConfig{Username: a.Username, Password: a.Password, ServerAddress: a.ServerAddress, IdentityToken: a.IdentityToken}
		}
	}
	res, err := c.api.ImageBuild(ctx, contextTar, bo)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, wrap(err))
	}
	var id string
	err = render(ctx, messages(ctx, res.Body), out, func(raw json.RawMessage) {
		var a struct{ ID string }
		if json.Unmarshal(raw, &a) == nil && a.ID != "" {
			id = a.ID
		}
	})
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if id == "" {
		return "", fmt.Errorf("%s: the engine reported no image ID", what)
	}
	return id, nil
}

// parsePlatform reads os/arch[/variant].
func parsePlatform(s string) (ocispec.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return ocispec.Platform{}, fmt.Errorf("platform %q: want os/arch[/variant]: %w", s, ErrInvalid)
	}
	p := ocispec.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// classicNetwork is the classic builder's form of BuildOptions.NetworkMode.
func classicNetwork(mode string) string {
	switch mode {
	case "":
		return "host"
	case "default":
		return ""
	}
	return mode
}
