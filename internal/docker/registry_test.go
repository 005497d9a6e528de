package docker_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
)

// TestPushPull pushes to and pulls from a real registry (docker-registry
// with htpasswd authentication), checking that AuthConfig reaches it for
// pull, push and build.
func TestPushPull(t *testing.T) {
	t.Parallel()
	c, base := engine(t)
	ctx := testCtx(t)
	reg := dockertest.StartRegistry(t, true)

	local := dockertest.Name(t, "app") + ":1"
	id := dockertest.BuildImage(t, c, local, map[string]string{
		"Dockerfile": "FROM " + base + "\nCOPY msg /msg\nCMD [\"cat\", \"/msg\"]\n",
		"msg":        "pushed and pulled\n",
	})
	ref := reg.Host + "/team/app:v1"
	if err := c.TagImage(ctx, local, ref); err != nil {
		t.Fatal(err)
	}
	dockertest.RemoveImageOnCleanup(t, c, ref)

	// Without or with wrong credentials the registry refuses.
	wrong := *reg.Auth()
	wrong.Password = "wrong"
	for name, auth := range map[string]*docker.AuthConfig{"none": nil, "wrong password": &wrong} {
		var out bytes.Buffer
		_, err := c.PushImage(ctx, ref, auth, &out)
		if !errors.Is(err, docker.ErrUnauthorized) {
			t.Errorf("push with %s credentials: %v, want ErrUnauthorized\n%s", name, err, out.String())
		} else {
			t.Logf("push with %s credentials: %v", name, err)
		}
	}

	var out bytes.Buffer
	digest, err := c.PushImage(ctx, ref, reg.Auth(), &out)
	if err != nil {
		t.Fatalf("push: %v\n%s", err, out.String())
	}
	t.Logf("push output:\n%s", out.String())
	if !strings.HasPrefix(digest, "sha256:") || len(digest) != 71 {
		t.Errorf("digest = %q", digest)
	}
	if !hasLine(out.String(), "v1: digest: "+digest+" size: "+sizeFrom(out.String())) {
		t.Errorf("push output lacks the digest line")
	}
	img, err := c.InspectImage(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	// Podman lists a pushed digest only after a pull (docs/engines.md).
	if !slices.Contains(img.RepoDigests, reg.Host+"/team/app@"+digest) && !dockertest.IsPodman(c) {
		t.Errorf("RepoDigests = %v, want %s", img.RepoDigests, digest)
	}
	// Pushing again pushes nothing new and reports the same digest.
	again, err := c.PushImage(ctx, ref, reg.Auth(), nil)
	if err != nil || again != digest {
		t.Errorf("second push: %q, %v", again, err)
	}
	if _, err := c.PushImage(ctx, reg.Host+"/team/app@"+digest, reg.Auth(), nil); !errors.Is(err, docker.ErrInvalid) {
		t.Errorf("push by digest: %v, want ErrInvalid", err)
	}

	// Remove the local copies, then pull.
	if err := c.RemoveImage(ctx, ref, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.InspectImage(ctx, ref); !errors.Is(err, docker.ErrNotFound) {
		t.Fatalf("image still there: %v", err)
	}
	for name, auth := range map[string]*docker.AuthConfig{"none": nil, "wrong password": &wrong} {
		err := c.PullImage(ctx, ref, auth, nil)
		if !errors.Is(err, docker.ErrUnauthorized) {
			t.Errorf("pull with %s credentials: %v, want ErrUnauthorized", name, err)
		} else {
			t.Logf("pull with %s credentials: %v", name, err)
		}
	}
	out.Reset()
	if err := c.PullImage(ctx, ref, reg.Auth(), &out); err != nil {
		t.Fatalf("pull: %v\n%s", err, out.String())
	}
	t.Logf("pull output:\n%s", out.String())
	if !strings.Contains(out.String(), "Digest: "+digest) && !dockertest.IsPodman(c) { // Podman prints no digest
		t.Errorf("pull output lacks the digest")
	}
	pulled, err := c.InspectImage(ctx, ref)
	if err != nil || pulled.ID != id {
		t.Errorf("pulled image %s, %v; want %s", pulled.ID, err, id)
	}
	// By digest. Podman lists the digest reference among the image's tags:
	// remove it too, or a later test's registry on the same port finds it.
	dockertest.RemoveImageOnCleanup(t, c, reg.Host+"/team/app@"+digest)
	if err := c.PullImage(ctx, reg.Host+"/team/app@"+digest, reg.Auth(), nil); err != nil {
		t.Errorf("pull by digest: %v", err)
	}
	if err := c.PullImage(ctx, reg.Host+"/team/app:nope", reg.Auth(), nil); !errors.Is(err, docker.ErrNotFound) {
		t.Errorf("pull a missing tag: %v, want ErrNotFound", err)
	} else {
		t.Logf("pull a missing tag: %v", err)
	}

	// A build whose FROM image is only in the registry pulls it with the
	// credentials of AuthConfigs.
	if err := c.RemoveImage(ctx, ref, false); err != nil {
		t.Fatal(err)
	}
	var ctxTar bytes.Buffer
	_ = docker.TarFiles(&ctxTar, map[string]string{"Dockerfile": "FROM " + ref + "\nRUN cat /msg\n"})
	derived := dockertest.Name(t, "derived") + ":1"
	out.Reset()
	dockertest.RemoveBuildOnCleanup(t, c, &out, derived)
	_, err = c.BuildImage(ctx, bytes.NewReader(ctxTar.Bytes()), docker.BuildOptions{Tags: []string{derived}, NetworkMode: "host", Labels: dockertest.Labels(t)}, &out)
	if !errors.Is(err, docker.ErrUnauthorized) {
		t.Errorf("build FROM a private image without credentials: %v, want ErrUnauthorized", err)
	}
	out.Reset()
	_, err = c.BuildImage(ctx, bytes.NewReader(ctxTar.Bytes()), docker.BuildOptions{
		Tags: []string{derived}, NetworkMode: "host", Labels: dockertest.Labels(t), Pull: true,
		AuthConfigs: map[string]docker.AuthConfig{reg.Host: *reg.Auth()},
	}, &out)
	if err != nil {
		t.Fatalf("build with AuthConfigs: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "pushed and pulled") {
		t.Errorf("build output:\n%s", out.String())
	}
}

// sizeFrom extracts the "size: N" of a push output's digest line.
func sizeFrom(out string) string {
	i := strings.LastIndex(out, " size: ")
	if i < 0 {
		return ""
	}
	rest := out[i+len(" size: "):]
	if j := strings.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	return rest
}
