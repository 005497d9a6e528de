package docker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// AuthConfig holds registry credentials for a pull, push or build. Either
// Username and Password, or IdentityToken (an OAuth refresh token) is set.
// It is sent to the engine as base64url-encoded JSON (X-Registry-Auth) and
// never logged.
type AuthConfig struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	ServerAddress string `json:"serveraddress,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
}

// String hides the secrets when an AuthConfig is printed.
func (a AuthConfig) String() string {
	return fmt.Sprintf("AuthConfig{Username:%q ServerAddress:%q}", a.Username, a.ServerAddress)
}

// encodeAuth returns the X-Registry-Auth / X-Registry-Config value of v.
func encodeAuth(v any) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return base64.URLEncoding.EncodeToString(data), nil
}

func authHeader(a *AuthConfig) (http.Header, error) {
	if a == nil {
		a = &AuthConfig{}
	}
	enc, err := encodeAuth(a)
	if err != nil {
		return nil, err
	}
	return http.Header{"X-Registry-Auth": {enc}}, nil
}

// BuildOptions configures BuildImage. The zero value builds ./Dockerfile
// with the engine's defaults and removes intermediate containers, also after
// a failed step.
type BuildOptions struct {
	Tags       []string           // names to tag the result with (name:tag)
	Dockerfile string             // path of the Dockerfile inside the context (default "Dockerfile")
	BuildArgs  map[string]*string // ARG values; a nil value takes it from the engine's environment
	Target     string             // stage to build in a multi-stage Dockerfile
	NoCache    bool               // do not use the build cache
	Pull       bool               // always try to pull newer versions of the FROM images
	Labels     map[string]string  // labels added to the image
	Platform   string             // e.g. linux/amd64
	// NetworkMode is the network of the RUN containers: "host" for the
	// engine gantry runs, a network name, or "" for the engine's default.
	NetworkMode string
	// AuthConfigs are credentials for pulling FROM images, keyed by registry
	// host (X-Registry-Config).
	AuthConfigs map[string]AuthConfig
	// KeepIntermediate keeps the containers of the build steps (rm=0,
	// forcerm=0); by default they are removed even when a step fails.
	KeepIntermediate bool
}

// BuildImage builds an image with the classic builder from a tar stream of
// the build context (see TarDir, TarBuildContext, TarFiles). The build output
// is written to out as plain lines while it arrives (nil discards). A failing
// step is returned as an error carrying the builder's message. It returns the
// ID of the built image (sha256:...).
func (c *Client) BuildImage(ctx context.Context, contextTar io.Reader, opts BuildOptions, out io.Writer) (string, error) {
	q := url.Values{"version": {"1"}}
	for _, t := range opts.Tags {
		q.Add("t", t)
	}
	if opts.Dockerfile != "" {
		q.Set("dockerfile", opts.Dockerfile)
	}
	if len(opts.BuildArgs) > 0 {
		data, err := json.Marshal(opts.BuildArgs)
		if err != nil {
			return "", fmt.Errorf("encoding build args: %w", err)
		}
		q.Set("buildargs", string(data))
	}
	if len(opts.Labels) > 0 {
		data, err := json.Marshal(opts.Labels)
		if err != nil {
			return "", fmt.Errorf("encoding labels: %w", err)
		}
		q.Set("labels", string(data))
	}
	if opts.Target != "" {
		q.Set("target", opts.Target)
	}
	if opts.NoCache {
		q.Set("nocache", "1")
	}
	if opts.Pull {
		q.Set("pull", "1")
	}
	if opts.Platform != "" {
		q.Set("platform", opts.Platform)
	}
	if opts.NetworkMode != "" {
		q.Set("networkmode", opts.NetworkMode)
	}
	if opts.KeepIntermediate {
		q.Set("rm", "0")
	} else {
		q.Set("rm", "1")
		q.Set("forcerm", "1")
	}
	hdr := http.Header{"Content-Type": {"application/x-tar"}}
	if len(opts.AuthConfigs) > 0 {
		enc, err := encodeAuth(opts.AuthConfigs)
		if err != nil {
			return "", fmt.Errorf("encoding registry credentials: %w", err)
		}
		hdr.Set("X-Registry-Config", enc)
	}
	what := "building image"
	if len(opts.Tags) > 0 {
		what += " " + strings.Join(opts.Tags, ", ")
	}
	resp, err := c.do(ctx, http.MethodPost, "/build", q, contextTar, hdr)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	var id string
	err = decodeMessages(resp.Body, out, func(raw json.RawMessage) error {
		var a struct{ ID string }
		if json.Unmarshal(raw, &a) == nil && a.ID != "" {
			id = a.ID
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, ctxErr(ctx, err))
	}
	if id == "" {
		return "", fmt.Errorf("%s: the engine reported no image ID", what)
	}
	return id, nil
}

// splitRef splits an image reference into its name and its tag or digest
// ("latest" when there is neither). "host:5000/a/b:v1" -> "host:5000/a/b",
// "v1"; "a@sha256:..." -> "a", "sha256:...".
func splitRef(ref string) (name, tag string) {
	if i := strings.LastIndex(ref, "@"); i >= 0 {
		return ref[:i], ref[i+1:]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[:i], ref[i+1:]
	}
	return ref, "latest"
}

// PullImage pulls ref (name:tag or name@digest; a bare name means :latest)
// with optional credentials, writing progress lines to out (nil discards).
func (c *Client) PullImage(ctx context.Context, ref string, auth *AuthConfig, out io.Writer) error {
	name, tag := splitRef(ref)
	hdr, err := authHeader(auth)
	if err != nil {
		return fmt.Errorf("pulling image %q: %w", ref, err)
	}
	resp, err := c.do(ctx, http.MethodPost, "/images/create", url.Values{"fromImage": {name}, "tag": {tag}}, nil, hdr)
	if err != nil {
		return fmt.Errorf("pulling image %q: %w", ref, err)
	}
	defer resp.Body.Close()
	if err := decodeMessages(resp.Body, out, nil); err != nil {
		return fmt.Errorf("pulling image %q: %w", ref, ctxErr(ctx, err))
	}
	return nil
}

// PushImage pushes ref (name:tag; a bare name means :latest) with optional
// credentials, writing progress lines to out (nil discards), and returns the
// digest of the pushed manifest.
func (c *Client) PushImage(ctx context.Context, ref string, auth *AuthConfig, out io.Writer) (string, error) {
	name, tag := splitRef(ref)
	if strings.Contains(tag, ":") {
		return "", fmt.Errorf("pushing image %q: a digest cannot be pushed, use a tag: %w", ref, ErrInvalid)
	}
	hdr, err := authHeader(auth)
	if err != nil {
		return "", fmt.Errorf("pushing image %q: %w", ref, err)
	}
	resp, err := c.do(ctx, http.MethodPost, "/images/"+name+"/push", url.Values{"tag": {tag}}, nil, hdr)
	if err != nil {
		return "", fmt.Errorf("pushing image %q: %w", ref, err)
	}
	defer resp.Body.Close()
	var digest string
	err = decodeMessages(resp.Body, out, func(raw json.RawMessage) error {
		var a struct{ Tag, Digest string }
		if json.Unmarshal(raw, &a) == nil && a.Digest != "" {
			digest = a.Digest
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("pushing image %q: %w", ref, ctxErr(ctx, err))
	}
	if digest == "" {
		return "", fmt.Errorf("pushing image %q: the engine reported no digest", ref)
	}
	return digest, nil
}

// TagImage gives the image source (a name or an ID) the name target
// (name:tag; a bare name means :latest).
func (c *Client) TagImage(ctx context.Context, source, target string) error {
	repo, tag := splitRef(target)
	if strings.Contains(tag, ":") {
		return fmt.Errorf("tagging image %q as %q: target must be name:tag: %w", source, target, ErrInvalid)
	}
	if err := c.sendJSON(ctx, http.MethodPost, "/images/"+source+"/tag", url.Values{"repo": {repo}, "tag": {tag}}, nil, nil); err != nil {
		return fmt.Errorf("tagging image %q as %q: %w", source, target, err)
	}
	return nil
}

// ImageConfig is the run configuration recorded in an image.
type ImageConfig struct {
	Env          []string
	Cmd          []string
	Entrypoint   []string
	WorkingDir   string
	User         string
	Labels       map[string]string
	ExposedPorts []string // "80/tcp"
}

// Image is the engine's view of one image (GET /images/{name}/json).
type Image struct {
	ID           string // sha256:...
	RepoTags     []string
	RepoDigests  []string // name@sha256:... for each registry it was pushed to or pulled from
	Created      time.Time
	Config       ImageConfig
	Os           string
	Architecture string
	Size         int64
}

type imageJSON struct {
	ID           string `json:"Id"`
	RepoTags     []string
	RepoDigests  []string
	Created      time.Time
	Config       containerConfigJSON
	Os           string
	Architecture string
	Size         int64
}

// InspectImage returns the image with the given name or ID.
func (c *Client) InspectImage(ctx context.Context, ref string) (Image, error) {
	var j imageJSON
	if err := c.getJSON(ctx, "/images/"+ref+"/json", nil, &j); err != nil {
		return Image{}, fmt.Errorf("inspecting image %q: %w", ref, err)
	}
	return Image{
		ID:          j.ID,
		RepoTags:    j.RepoTags,
		RepoDigests: j.RepoDigests,
		Created:     j.Created,
		Config: ImageConfig{
			Env:          j.Config.Env,
			Cmd:          j.Config.Cmd,
			Entrypoint:   j.Config.Entrypoint,
			WorkingDir:   j.Config.WorkingDir,
			User:         j.Config.User,
			Labels:       j.Config.Labels,
			ExposedPorts: portList(j.Config.ExposedPorts),
		},
		Os:           j.Os,
		Architecture: j.Architecture,
		Size:         j.Size,
	}, nil
}

// ImageSummary is one entry of ListImages.
type ImageSummary struct {
	ID          string `json:"Id"`
	RepoTags    []string
	RepoDigests []string
	Labels      map[string]string
	Size        int64
	Created     int64 // Unix seconds
}

// ListImagesOptions filters ListImages.
type ListImagesOptions struct {
	// Reference keeps images whose name matches, e.g. "app", "app:1",
	// "registry:5000/team/*".
	Reference string
	// Labels keeps images carrying all of these labels ("key" or "key=value").
	Labels []string
	// All includes intermediate images.
	All bool
}

// ListImages lists the engine's images.
func (c *Client) ListImages(ctx context.Context, opts ListImagesOptions) ([]ImageSummary, error) {
	q := url.Values{}
	f := map[string][]string{"label": opts.Labels}
	if opts.Reference != "" {
		f["reference"] = []string{opts.Reference}
	}
	if s := filters(f); s != "" {
		q.Set("filters", s)
	}
	if opts.All {
		q.Set("all", "1")
	}
	var list []ImageSummary
	if err := c.getJSON(ctx, "/images/json", q, &list); err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	return list, nil
}

// RemoveImage removes an image name or ID. Removing a name that shares its
// image with other names only untags it. Force also removes an image that
// containers use or that has several names when given by ID.
func (c *Client) RemoveImage(ctx context.Context, ref string, force bool) error {
	q := url.Values{}
	if force {
		q.Set("force", "1")
	}
	if err := c.sendJSON(ctx, http.MethodDelete, "/images/"+ref, q, nil, nil); err != nil {
		return fmt.Errorf("removing image %q: %w", ref, err)
	}
	return nil
}
