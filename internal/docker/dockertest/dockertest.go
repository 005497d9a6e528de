// Package dockertest provides test helpers for packages that use the Docker
// Engine through internal/docker: a client for the engine named by
// DOCKER_HOST, tiny locally built images (there is no route to a public
// registry), a throw-away docker-registry, and clean-up of everything a test
// creates.
//
// Tests that need the engine skip when DOCKER_HOST is unset, unless
// GANTRY_REQUIRE_INTEGRATION=1, in which case they fail. The same rule
// applies to the external tools used here (busybox, docker-registry,
// htpasswd).
//
// Everything a helper creates carries the label [Label] and is removed in
// t.Cleanup, except the busybox base image, which is cached on the engine
// (see [BusyboxImage]).
package dockertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/testenv"
)

// Label is the key of the label carried by every object the helpers create
// (and that tests should put on theirs, see Labels).
const Label = "io.gantry.test"

// CacheLabel is the key of the content label of cached base images.
const CacheLabel = "io.gantry.test.cache"

// cleanupTimeout bounds each clean-up call.
const cleanupTimeout = 30 * time.Second

// runID distinguishes the objects of this test process from those of other
// processes sharing the engine.
var runID = testenv.RandomHex(4)

// Require skips the test (or, with GANTRY_REQUIRE_INTEGRATION=1, fails it)
// with the reason why an integration dependency is missing: see
// testenv.Require.
func Require(t testing.TB, format string, args ...any) {
	t.Helper()
	testenv.Require(t, format, args...)
}

var (
	enginesMu sync.Mutex
	engines   = map[string]*docker.Client{}
)

// Engine returns a client for the engine at DOCKER_HOST. It skips the test
// when DOCKER_HOST is unset (fails with GANTRY_REQUIRE_INTEGRATION=1) and
// fails it when the engine does not answer. Clients are shared per process.
func Engine(t testing.TB) *docker.Client {
	t.Helper()
	host := testenv.DockerHost(t)
	enginesMu.Lock()
	defer enginesMu.Unlock()
	if c, ok := engines[host]; ok {
		return c
	}
	c, err := docker.New(docker.EndpointFromEnv(os.Getenv))
	if err != nil {
		t.Fatalf("docker engine at DOCKER_HOST=%s: %v", host, err)
	}
	if _, err := c.Connect(context.Background()); err != nil {
		t.Fatalf("docker engine at DOCKER_HOST=%s: %v", host, err)
	}
	engines[host] = c
	return c
}

// Name returns a name unique to this test process for a container, image,
// or volume: prefix-<random>, lower case.
func Name(t testing.TB, prefix string) string {
	t.Helper()
	return strings.ToLower(prefix) + "-" + runID + testenv.RandomHex(4)
}

// LabelValue is the value of Label on the objects t creates: the process
// and the test's name.
func LabelValue(t testing.TB) string {
	return runID + "/" + t.Name()
}

// Labels returns the labels a test puts on what it creates.
func Labels(t testing.TB) map[string]string {
	return map[string]string{Label: LabelValue(t)}
}

// Sweep removes, when t ends, every container, volume and image
// carrying t's label (see Labels), in that order. Use it as a safety net in
// tests whose code under test creates engine objects.
func Sweep(t testing.TB, c *docker.Client) {
	t.Helper()
	filter := Label + "=" + LabelValue(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*cleanupTimeout)
		defer cancel()
		cs, err := c.ListContainers(ctx, docker.ListContainersOptions{All: true, Labels: []string{filter}})
		if err != nil {
			t.Errorf("sweep: %v", err)
		}
		for _, ct := range cs {
			if err := c.RemoveContainer(ctx, ct.ID, docker.RemoveContainerOptions{Force: true, RemoveVolumes: true}); err != nil && !errors.Is(err, docker.ErrNotFound) && !errors.Is(err, docker.ErrConflict) {
				t.Errorf("sweep: %v", err)
			}
		}
		vs, err := c.ListVolumes(ctx, filter)
		if err != nil {
			t.Errorf("sweep: %v", err)
		}
		for _, v := range vs {
			if err := c.RemoveVolume(ctx, v.Name, true); err != nil && !errors.Is(err, docker.ErrNotFound) {
				t.Errorf("sweep: %v", err)
			}
		}
		is, err := c.ListImages(ctx, docker.ListImagesOptions{Labels: []string{filter}})
		if err != nil {
			t.Errorf("sweep: %v", err)
		}
		for _, im := range is {
			if err := c.RemoveImage(ctx, im.ID, true); err != nil && !errors.Is(err, docker.ErrNotFound) {
				t.Errorf("sweep: %v", err)
			}
		}
	})
}

// RemoveContainerOnCleanup force-removes the container (and its anonymous
// volumes) when t ends; a container already gone is fine.
func RemoveContainerOnCleanup(t testing.TB, c *docker.Client, id string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		err := c.RemoveContainer(ctx, id, docker.RemoveContainerOptions{Force: true, RemoveVolumes: true})
		// ErrConflict: the engine is already removing it (AutoRemove).
		if err != nil && !errors.Is(err, docker.ErrNotFound) && !errors.Is(err, docker.ErrConflict) {
			t.Errorf("cleanup: %v", err)
		}
	})
}

// RemoveImageOnCleanup removes the image name or ID when t ends (for a
// name shared with other names: untags it).
func RemoveImageOnCleanup(t testing.TB, c *docker.Client, ref string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := c.RemoveImage(ctx, ref, true); err != nil && !errors.Is(err, docker.ErrNotFound) {
			t.Errorf("cleanup: %v", err)
		}
	})
}

// stepImage matches the image IDs the classic builder reports per step.
var stepImage = regexp.MustCompile(`(?m)^ ---> ([0-9a-f]{12})$`)

// RemoveBuildOnCleanup removes, when t ends, the images tags and the untagged
// images of the build whose output is out (read at clean-up time): the
// classic builder keeps the steps of stages other than the last one as
// untagged images, which removing the result leaves behind. Tagged images
// (a base image, say) and images other images still depend on are kept.
func RemoveBuildOnCleanup(t testing.TB, c *docker.Client, out *bytes.Buffer, tags ...string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*cleanupTimeout)
		defer cancel()
		for _, tag := range tags {
			if err := c.RemoveImage(ctx, tag, true); err != nil && !errors.Is(err, docker.ErrNotFound) {
				t.Errorf("cleanup: %v", err)
			}
		}
		ids := stepImage.FindAllStringSubmatch(out.String(), -1)
		for i := len(ids) - 1; i >= 0; i-- {
			id := ids[i][1]
			img, err := c.InspectImage(ctx, id)
			if err != nil || len(img.RepoTags) > 0 {
				continue
			}
			// Without force: an image with children or containers stays.
			err = c.RemoveImage(ctx, id, false)
			if err != nil && !errors.Is(err, docker.ErrNotFound) && !errors.Is(err, docker.ErrConflict) {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
}

// BuildImage builds a small image from in-memory files (which must include
// a Dockerfile; see docker.TarFiles for modes), tags it tag and removes it
// when t ends. It fails t with the build output when the build fails, and
// returns the image ID. RUN steps use the host network.
func BuildImage(t testing.TB, c *docker.Client, tag string, files map[string]string) string {
	t.Helper()
	return build(t, c, tag, files, Labels(t), true)
}

func build(t testing.TB, c *docker.Client, tag string, files map[string]string, labels map[string]string, cleanup bool) string {
	t.Helper()
	if _, ok := files["Dockerfile"]; !ok {
		t.Fatalf("building %s: no Dockerfile in the files", tag)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if cleanup {
		RemoveBuildOnCleanup(t, c, &out, tag)
		if !IsPodman(c) { // Podman labels its intermediate images too: listing by label would find them
			files = ownChain(files, LabelValue(t))
		}
	}
	var id string
	var err error
	// Tests build in parallel on one engine and remove their builds' step
	// images when they end: a cached step another test removed while this
	// build used it is a not-found, and the build is run again.
	for range 3 {
		var ctxTar bytes.Buffer
		if err := docker.TarFiles(&ctxTar, files); err != nil {
			t.Fatal(err)
		}
		id, err = c.BuildImage(ctx, &ctxTar, docker.BuildOptions{
			Tags:        []string{tag},
			Labels:      labels,
			NetworkMode: "host",
		}, &out)
		if !errors.Is(err, docker.ErrNotFound) {
			break
		}
	}
	if err != nil {
		t.Fatalf("building %s: %v\n%s", tag, err, out.String())
	}
	return id
}

// ownChain returns files with a LABEL naming the test right after the
// Dockerfile's first FROM, so that the test's build steps are its own: two
// tests building the same instructions on the same base would otherwise
// share the cached step images, and one removing its build at its end
// (RemoveBuildOnCleanup) deletes a step image the other's build is using
// ("failed to get digest ...: no such file or directory").
func ownChain(files map[string]string, test string) map[string]string {
	lines := strings.Split(files["Dockerfile"], "\n")
	for i, l := range lines {
		if f := strings.Fields(l); len(f) > 0 && strings.EqualFold(f[0], "FROM") {
			out := maps.Clone(files)
			out["Dockerfile"] = strings.Join(slices.Insert(lines, i+1, "LABEL "+Label+"-build="+strconv.Quote(test)), "\n")
			return out
		}
	}
	return files
}

// busybox image content. /etc/passwd knows root, nobody and user (1000), so
// that tests can run as named users.
const (
	busyboxDockerfile = `FROM scratch
COPY busybox /bin/busybox
COPY passwd group /etc/
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin && mkdir -p -m 1777 /tmp && mkdir -p /root /home/user && chown 1000:1000 /home/user"]
CMD ["sh"]
`
	busyboxPasswd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nuser:x:1000:1000:user:/home/user:/bin/sh\n"
	busyboxGroup  = "root:x:0:\nnogroup:x:65534:\nuser:x:1000:\n"
)

var (
	cacheMu sync.Mutex
	cached  = map[string]bool{} // host + " " + tag of images known to be there
)

// ensureCached makes sure the engine has the image tag, carrying the label
// filter ("key=value"), building it from files when the tag is missing (the
// layer cache makes that quick). An image found by the label alone is not
// retagged: images built FROM it inherit the label. Concurrent tests of a
// process build it once.
func ensureCached(t testing.TB, c *docker.Client, tag, filter string, files map[string]string) {
	t.Helper()
	cacheMu.Lock()
	defer cacheMu.Unlock() // also when t fails (Goexit runs defers)
	key := c.Host() + " " + tag
	if cached[key] {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	list, err := c.ListImages(ctx, docker.ListImagesOptions{Labels: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, im := range list {
		found = found || slices.Contains(im.RepoTags, tag)
	}
	if !found {
		k, v, _ := strings.Cut(filter, "=")
		build(t, c, tag, files, map[string]string{k: v}, false)
	}
	cached[key] = true
}

// BusyboxPath returns the static busybox binary that base images are made
// from (Debian's busybox-static), requiring it like Engine requires
// DOCKER_HOST.
func BusyboxPath(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("busybox"); err == nil {
		return p
	}
	Require(t, "busybox not found (install busybox-static)")
	return ""
}

// BusyboxImage returns a minimal image made FROM scratch with a static
// busybox installed as /bin/sh and its other applets (busybox --install -s),
// a /tmp and an /etc/passwd with root, nobody and user (uid 1000).
//
// The image is built once per engine and kept, found again by a content
// label (CacheLabel = hash of its inputs) and the tag
// gantry-test/busybox:<hash>. When tag is not empty the image is also
// tagged tag, and that tag is removed when t ends. It returns tag, or the
// cache tag when tag is empty.
func BusyboxImage(t testing.TB, c *docker.Client, tag string) string {
	t.Helper()
	bin, err := os.ReadFile(BusyboxPath(t))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"Dockerfile": busyboxDockerfile,
		"busybox":    string(bin),
		"passwd":     busyboxPasswd,
		"group":      busyboxGroup,
	}
	h := sha256.New()
	for _, k := range []string{"Dockerfile", "busybox", "passwd", "group"} {
		fmt.Fprintf(h, "%s %d\n%s", k, len(files[k]), files[k])
	}
	sum := hex.EncodeToString(h.Sum(nil))[:16]
	cacheTag := "gantry-test/busybox:" + sum
	ensureCached(t, c, cacheTag, CacheLabel+"=busybox-"+sum, files)

	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if tag == "" {
		return cacheTag
	}
	if err := c.TagImage(ctx, cacheTag, tag); err != nil {
		t.Fatal(err)
	}
	RemoveImageOnCleanup(t, c, tag)
	return tag
}

// CLI runs the docker CLI against the engine at DOCKER_HOST and returns its
// standard output, failing t with its error output when it fails: an
// independent witness of what the engine holds.
func CLI(t testing.TB, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		Require(t, "the docker CLI is not installed")
	}
	cmd := exec.Command("docker", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// IsPodman reports whether c talks to Podman, whose Docker API differs
// from dockerd's in the ways docs/engines.md lists; tests check each
// engine's own behaviour there.
func IsPodman(c *docker.Client) bool {
	v, _ := c.EngineVersion()
	return strings.HasPrefix(v.Name, "Podman")
}
