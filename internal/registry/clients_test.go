package registry_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/testenv"
)

// layout writes an OCI image layout holding a two-platform image index
// tagged "v1" and returns the layout directory and the index digest.
func layout(t *testing.T) (string, digest.Digest) {
	t.Helper()
	dir := t.TempDir()
	write := func(b []byte) (digest.Digest, int64) {
		d := digest.FromBytes(b)
		p := filepath.Join(dir, "blobs", "sha256", d.Encoded())
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return d, int64(len(b))
	}
	var children []map[string]any
	for _, arch := range []string{"amd64", "arm64"} {
		var raw bytes.Buffer
		tw := tar.NewWriter(&raw)
		content := []byte("hello from " + arch + "\n")
		tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: int64(len(content)), ModTime: time.Unix(0, 0)})
		tw.Write(content)
		tw.Close()
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(raw.Bytes())
		zw.Close()
		ld, ln := write(gz.Bytes())
		cfg, _ := json.Marshal(map[string]any{"architecture": arch, "os": "linux", "config": map[string]any{},
			"rootfs": map[string]any{"type": "layers", "diff_ids": []digest.Digest{digest.FromBytes(raw.Bytes())}}})
		cd, cn := write(cfg)
		m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mtManifest,
			"config": map[string]any{"mediaType": mtConfig, "digest": cd, "size": cn},
			"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": ln}}})
		md, mn := write(m)
		children = append(children, map[string]any{"mediaType": mtManifest, "digest": md, "size": mn,
			"platform": map[string]string{"os": "linux", "architecture": arch}})
	}
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mtIndex, "manifests": children})
	id, in := write(idx)
	top, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{map[string]any{
		"mediaType": mtIndex, "digest": id, "size": in, "annotations": map[string]string{"org.opencontainers.image.ref.name": "v1"}}}})
	os.WriteFile(filepath.Join(dir, "index.json"), top, 0o644)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	return dir, id
}

// layoutIndex returns the digest of the manifest tagged tag in an OCI layout.
func layoutIndex(t *testing.T, dir, tag string) digest.Digest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Manifests []struct {
			Digest      digest.Digest     `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	json.Unmarshal(b, &idx)
	for _, m := range idx.Manifests {
		if tag == "" || m.Annotations["org.opencontainers.image.ref.name"] == tag {
			return m.Digest
		}
	}
	t.Fatalf("no %q in %s", tag, b)
	return ""
}

// clientTest prepares the test of an external client (skipped in -short
// mode): it requires the tool and serves a fresh registry, and returns the
// tool's path and the registry's host.
func clientTest(t *testing.T, tool string) (bin, host string) {
	t.Helper()
	if testing.Short() {
		t.Skip("client integration test")
	}
	bin = testenv.Tool(t, tool)
	return bin, strings.TrimPrefix(newEnv(t).srv.URL, "http://")
}

func TestSkopeo(t *testing.T) {
	t.Parallel()
	skopeo, host := clientTest(t, "skopeo")
	src, want := layout(t)
	// Push the multi-arch index, preserving digests.
	testenv.Run(t, nil, skopeo, "copy", "--all", "--preserve-digests", "--dest-tls-verify=false", "oci:"+src+":v1", "docker://"+host+"/skopeo/multi:v1")
	raw := testenv.Run(t, nil, skopeo, "inspect", "--raw", "--tls-verify=false", "docker://"+host+"/skopeo/multi:v1")
	if digest.FromString(raw) != want {
		t.Fatalf("pushed index digest %s, want %s", digest.FromString(raw), want)
	}
	// Registry to registry (blobs are mounted), then pull everything back.
	testenv.Run(t, nil, skopeo, "copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false",
		"docker://"+host+"/skopeo/multi:v1", "docker://"+host+"/skopeo/copy:v1")
	out := t.TempDir()
	testenv.Run(t, nil, skopeo, "copy", "--all", "--preserve-digests", "--src-tls-verify=false", "docker://"+host+"/skopeo/copy:v1", "oci:"+out+":v1")
	if got := layoutIndex(t, out, "v1"); got != want {
		t.Fatalf("pulled index %s, want %s", got, want)
	}
	// Converted to Docker schema 2: a manifest list of Docker manifests.
	testenv.Run(t, nil, skopeo, "copy", "--all", "--format", "v2s2", "--dest-tls-verify=false", "oci:"+src+":v1", "docker://"+host+"/skopeo/docker:v1")
	raw = testenv.Run(t, nil, skopeo, "inspect", "--raw", "--tls-verify=false", "docker://"+host+"/skopeo/docker:v1")
	if !strings.Contains(raw, mtList) {
		t.Fatalf("not a Docker manifest list: %s", raw)
	}
	testenv.Run(t, nil, skopeo, "copy", "--all", "--src-tls-verify=false", "docker://"+host+"/skopeo/docker:v1", "oci:"+t.TempDir()+":v1")
	tags := testenv.Run(t, nil, skopeo, "list-tags", "--tls-verify=false", "docker://"+host+"/skopeo/multi")
	if !strings.Contains(tags, `"v1"`) {
		t.Fatalf("list-tags: %s", tags)
	}
}

func TestCrane(t *testing.T) {
	t.Parallel()
	crane, host := clientTest(t, "crane")
	src, want := layout(t)
	ref := host + "/crane/multi:v1"
	testenv.Run(t, nil, crane, "push", "--insecure", src, ref)
	if got := strings.TrimSpace(testenv.Run(t, nil, crane, "digest", "--insecure", ref)); got != want.String() {
		t.Fatalf("crane digest %s, want %s", got, want)
	}
	testenv.Run(t, nil, crane, "copy", "--insecure", ref, host+"/crane/copy:v1")
	out := filepath.Join(t.TempDir(), "pulled")
	testenv.Run(t, nil, crane, "pull", "--insecure", "--format=oci", host+"/crane/copy:v1", out)
	if got := layoutIndex(t, out, ""); got != want {
		t.Fatalf("pulled %s, want %s", got, want)
	}
	testenv.Run(t, nil, crane, "tag", "--insecure", ref, "v2")
	if ls := testenv.Run(t, nil, crane, "ls", "--insecure", host+"/crane/multi"); strings.Fields(ls)[0] != "v1" || !strings.Contains(ls, "v2") {
		t.Fatalf("crane ls: %q", ls)
	}
	testenv.Run(t, nil, crane, "delete", "--insecure", host+"/crane/multi@"+want.String())
	if ls := testenv.Run(t, nil, crane, "ls", "--insecure", host+"/crane/multi"); strings.TrimSpace(ls) != "" {
		t.Fatalf("tags after delete: %q", ls)
	}
}

func TestOras(t *testing.T) {
	t.Parallel()
	oras, host := clientTest(t, "oras")
	work := t.TempDir()
	os.WriteFile(filepath.Join(work, "artifact.txt"), []byte("the artifact\n"), 0o644)
	os.WriteFile(filepath.Join(work, "sig.txt"), []byte("a signature\n"), 0o644)
	orasIn := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(oras, args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "HOME="+work)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("oras %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	ref := host + "/oras/art:v1"
	orasIn("push", "--plain-http", "--artifact-type", "application/vnd.gantry.test", ref, "artifact.txt:text/plain")
	orasIn("attach", "--plain-http", "--artifact-type", "application/vnd.gantry.sig", ref, "sig.txt:text/plain")
	var found struct {
		Referrers []struct {
			ArtifactType string `json:"artifactType"`
		} `json:"referrers"`
		Manifests []struct {
			ArtifactType string `json:"artifactType"`
		} `json:"manifests"`
	}
	out := orasIn("discover", "--plain-http", "--format", "json", "--artifact-type", "application/vnd.gantry.sig", ref)
	if err := json.Unmarshal([]byte(out), &found); err != nil {
		t.Fatalf("discover output %q: %v", out, err)
	}
	n := len(found.Referrers) + len(found.Manifests)
	if n != 1 {
		t.Fatalf("referrers: %s", out)
	}
	pulled := filepath.Join(work, "pulled")
	orasIn("pull", "--plain-http", "-o", pulled, ref)
	if b, err := os.ReadFile(filepath.Join(pulled, "artifact.txt")); err != nil || string(b) != "the artifact\n" {
		t.Fatalf("pulled artifact: %q %v", b, err)
	}
	// A multi-arch index from an OCI layout, and back.
	src, want := layout(t)
	orasIn("cp", "--to-plain-http", "--from-oci-layout", src+":v1", host+"/oras/multi:v1")
	got := strings.TrimSpace(orasIn("resolve", "--plain-http", host+"/oras/multi:v1"))
	if got != want.String() {
		t.Fatalf("resolved %s, want %s", got, want)
	}
	dst := filepath.Join(work, "layout")
	orasIn("cp", "--from-plain-http", "--to-oci-layout", host+"/oras/multi:v1", dst+":v1")
	if got := layoutIndex(t, dst, "v1"); got != want {
		t.Fatalf("copied back %s, want %s", got, want)
	}
}

func TestDockerEngine(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("client integration test")
	}
	testenv.DockerHost(t)
	docker := testenv.Tool(t, "docker")
	busybox := testenv.Tool(t, "busybox")
	e := newEnv(t)
	host := strings.TrimPrefix(e.srv.URL, "http://")
	ctxDir := t.TempDir()
	b, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ctxDir, "busybox"), b, 0o755)
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM scratch\nCOPY busybox /bin/busybox\nCMD [\"/bin/busybox\", \"echo\", \"hello from gantry\"]\n"), 0o644)
	img := host + "/docker/busybox:v1"
	t.Cleanup(func() { exec.Command(docker, "rmi", "-f", img, host+"/docker/copy:v1").Run() })
	testenv.Run(t, nil, docker, "build", "-q", "-t", img, ctxDir)
	testenv.Run(t, nil, docker, "push", img)
	// A second repository: layers are mounted from the first.
	testenv.Run(t, nil, docker, "tag", img, host+"/docker/copy:v1")
	testenv.Run(t, nil, docker, "push", host+"/docker/copy:v1")
	testenv.Run(t, nil, docker, "rmi", img, host+"/docker/copy:v1")
	testenv.Run(t, nil, docker, "pull", img)
	if out := testenv.Run(t, nil, docker, "run", "--rm", "--network", "host", img); !strings.Contains(out, "hello from gantry") {
		t.Fatalf("run: %q", out)
	}
	m, err := e.st.GetManifest(context.Background(), "test", "docker/busybox", "v1")
	if err != nil || m.MediaType != mtDocker {
		t.Fatalf("stored manifest: %+v %v", m.MediaType, err)
	}
}
