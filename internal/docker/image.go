package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/moby/moby/api/pkg/authconfig"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"
)

// AuthConfig holds registry credentials for a pull, push or build. Either
// Username and Password, or IdentityToken (an OAuth refresh token) is set.
// It reaches the engine as X-Registry-Auth (or, for BuildKit, through the
// build session) and is never logged.
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

// GoString hides the secrets from %#v.
func (a AuthConfig) GoString() string { return a.String() }

// encode returns the X-Registry-Auth value of a (the engine's
// base64url-encoded JSON).
func (a *AuthConfig) encode() (string, error) {
	if a == nil {
		a = &AuthConfig{}
	}
	return authconfig.Encode(registry.AuthConfig{
		Username: a.Username, Password: a.Password, ServerAddress: a.ServerAddress, IdentityToken: a.IdentityToken,
	})
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
	if err := c.ready(ctx); err != nil {
		return err
	}
	if _, err := reference.ParseNormalizedNamed(ref); err != nil {
		return fmt.Errorf("pulling image %q: %w", ref, &engineError{err: err, kinds: []error{ErrInvalid}})
	}
	enc, err := auth.encode()
	if err != nil {
		return fmt.Errorf("pulling image %q: %w", ref, err)
	}
	resp, err := c.api.ImagePull(ctx, ref, client.ImagePullOptions{RegistryAuth: enc})
	if err != nil {
		return fmt.Errorf("pulling image %q: %w", ref, wrap(err))
	}
	if err := render(ctx, messages(ctx, resp), out, nil); err != nil {
		return fmt.Errorf("pulling image %q: %w", ref, err)
	}
	return nil
}

// PushImage pushes ref (name:tag; a bare name means :latest) with optional
// credentials, writing progress lines to out (nil discards), and returns the
// digest of the pushed manifest.
func (c *Client) PushImage(ctx context.Context, ref string, auth *AuthConfig, out io.Writer) (string, error) {
	if _, tag := splitRef(ref); strings.Contains(tag, ":") {
		return "", fmt.Errorf("pushing image %q: a digest cannot be pushed, use a tag: %w", ref, ErrInvalid)
	}
	if err := c.ready(ctx); err != nil {
		return "", err
	}
	enc, err := auth.encode()
	if err != nil {
		return "", fmt.Errorf("pushing image %q: %w", ref, err)
	}
	resp, err := c.api.ImagePush(ctx, ref, client.ImagePushOptions{RegistryAuth: enc})
	if err != nil {
		return "", fmt.Errorf("pushing image %q: %w", ref, wrap(err))
	}
	var digest string
	var lines bytes.Buffer
	if out == nil {
		out = io.Discard
	}
	err = render(ctx, messages(ctx, resp), io.MultiWriter(out, &lines), func(raw json.RawMessage) {
		var a struct{ Tag, Digest string }
		if json.Unmarshal(raw, &a) == nil && a.Digest != "" {
			digest = a.Digest
		}
	})
	if digest == "" {
		// Podman sends no aux message; both print "<tag>: digest: <d> size: <n>".
		if m := pushedDigest.FindStringSubmatch(lines.String()); m != nil {
			digest = m[1]
		}
	}
	if err != nil {
		return "", fmt.Errorf("pushing image %q: %w", ref, err)
	}
	if digest == "" {
		return "", fmt.Errorf("pushing image %q: the engine reported no digest", ref)
	}
	return digest, nil
}

// pushedDigest finds the digest in a push's "<tag>: digest: <d> size: <n>" line.
var pushedDigest = regexp.MustCompile(`digest: (sha256:[0-9a-f]{64}) size: \d+`)

// render reads the engine's JSON message stream (pull, push, classic build),
// writes it to out as plain log lines while it arrives (nil discards) and
// hands every aux payload to aux (when non-nil). It returns the first error
// the stream reports.
//
// The rendering follows the docker CLI without a terminal: "stream" text is
// written verbatim (build output, already line-structured), "status" messages
// become "<id>: <status>" lines, and progress-bar updates are left out.
func render(ctx context.Context, msgs iter.Seq2[message, error], out io.Writer, aux func(json.RawMessage)) error {
	if out == nil {
		out = io.Discard
	}
	for m, err := range msgs {
		if err != nil {
			return ctxErr(ctx, fmt.Errorf("reading the engine's message stream: %w", err))
		}
		if m.Error != nil || m.ErrorText != "" {
			se := &streamError{msg: m.ErrorText}
			if m.Error != nil {
				se.code = m.Error.Code
				if m.Error.Message != "" {
					se.msg = m.Error.Message
				}
			}
			se.msg = strings.TrimSpace(se.msg)
			return se
		}
		if m.Aux != nil && aux != nil {
			aux(*m.Aux)
		}
		var line string
		switch {
		case m.Stream != "":
			line = m.Stream
		case m.Status != "":
			if m.Progress != nil && m.Progress.Total > 0 {
				continue // a progress-bar update
			}
			line = m.Status
			if m.ID != "" {
				line = m.ID + ": " + line
			}
			line += "\n"
		default:
			continue
		}
		if _, err := io.WriteString(out, line); err != nil {
			return fmt.Errorf("writing engine output: %w", err)
		}
	}
	return ctx.Err()
}

// message is one message of the engine's JSON message stream; older
// engines and podman may send only the plain "error" field.
type message struct {
	jsonstream.Message
	ErrorText string `json:"error,omitempty"`
}

// messages decodes a JSON message stream and closes it at its end or when
// ctx ends.
func messages(ctx context.Context, rc io.ReadCloser) iter.Seq2[message, error] {
	return func(yield func(message, error) bool) {
		stop := context.AfterFunc(ctx, func() { rc.Close() })
		defer stop()
		defer rc.Close()
		dec := json.NewDecoder(rc)
		for {
			var m message
			if err := dec.Decode(&m); err != nil {
				if !errors.Is(err, io.EOF) {
					yield(m, err)
				}
				return
			}
			if !yield(m, nil) {
				return
			}
		}
	}
}

// TagImage gives the image source (a name or an ID) the name target
// (name:tag; a bare name means :latest).
func (c *Client) TagImage(ctx context.Context, source, target string) error {
	if _, tag := splitRef(target); strings.Contains(tag, ":") {
		return fmt.Errorf("tagging image %q as %q: target must be name:tag: %w", source, target, ErrInvalid)
	}
	if _, err := reference.ParseNormalizedNamed(target); err != nil {
		return fmt.Errorf("tagging image %q as %q: %w", source, target, &engineError{err: err, kinds: []error{ErrInvalid}})
	}
	if err := c.ready(ctx); err != nil {
		return err
	}
	if _, err := c.api.ImageTag(ctx, client.ImageTagOptions{Source: source, Target: target}); err != nil {
		return fmt.Errorf("tagging image %q as %q: %w", source, target, wrap(err))
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

// Image is the engine's view of one image.
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

// InspectImage returns the image with the given name or ID.
func (c *Client) InspectImage(ctx context.Context, ref string) (Image, error) {
	if err := c.ready(ctx); err != nil {
		return Image{}, err
	}
	j, err := c.api.ImageInspect(ctx, ref)
	if err != nil {
		return Image{}, fmt.Errorf("inspecting image %q: %w", ref, wrap(err))
	}
	img := Image{
		ID:           j.ID,
		RepoTags:     j.RepoTags,
		RepoDigests:  j.RepoDigests,
		Created:      parseTime(j.Created),
		Os:           j.Os,
		Architecture: j.Architecture,
		Size:         j.Size,
	}
	if cfg := j.Config; cfg != nil {
		img.Config = ImageConfig{
			Env:          cfg.Env,
			Cmd:          cfg.Cmd,
			Entrypoint:   cfg.Entrypoint,
			WorkingDir:   cfg.WorkingDir,
			User:         cfg.User,
			Labels:       cfg.Labels,
			ExposedPorts: portNames(cfg.ExposedPorts),
		}
	}
	return img, nil
}

// portNames lists an image config's exposed ports ("80/tcp"), sorted.
func portNames[V any](m map[string]V) []string {
	if len(m) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(m))
}

// ImageSummary is one entry of ListImages.
type ImageSummary struct {
	ID          string
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
	if err := c.ready(ctx); err != nil {
		return nil, err
	}
	f := labelFilters(opts.Labels, "reference", opts.Reference)
	var res client.ImageListResult
	var err error
	for try := 0; ; try++ {
		res, err = c.api.ImageList(ctx, client.ImageListOptions{All: opts.All, Filters: f})
		// Podman 4.3 fails a listing when an image goes away meanwhile
		// ("image not known"); the listing is repeated a few times.
		if err == nil || try == 4 || !storeRace(err) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(try+1) * 20 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", wrap(err))
	}
	list := make([]ImageSummary, 0, len(res.Items))
	for _, s := range res.Items {
		list = append(list, ImageSummary{ID: s.ID, RepoTags: s.RepoTags, RepoDigests: s.RepoDigests, Labels: s.Labels, Size: s.Size, Created: s.Created})
	}
	return list, nil
}

// RemoveImage removes an image name or ID. Removing a name that shares its
// image with other names only untags it. Force also removes an image that
// containers use or that has several names when given by ID.
func (c *Client) RemoveImage(ctx context.Context, ref string, force bool) error {
	if err := c.ready(ctx); err != nil {
		return err
	}
	if _, err := c.api.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: force}); err != nil {
		return fmt.Errorf("removing image %q: %w", ref, wrap(err))
	}
	return nil
}
