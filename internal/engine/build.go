package engine

import (
	"archive/tar"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/dockerfile"
	"github.com/gantryhq/gantry/internal/oci"
	"github.com/gantryhq/gantry/internal/plan"
)

// buildInput is a prepared build: the context on the host and what the
// Dockerfile builds from.
type buildInput struct {
	dir    string // the context directory on the host
	dfHost string // the Dockerfile on the host (it may lie outside dir)
	deps   *dockerfile.Result
}

// prepareBuild locates a build's context and Dockerfile, scans the
// Dockerfile for its base images (logging it for build steps, as acb does)
// and refreshes the bases that live in a registry.
func (r *run) prepareBuild(ctx context.Context, s *plan.Step, b *plan.Build, report bool) error {
	switch b.ContextKind {
	case plan.ContextGit, plan.ContextURL:
		return fmt.Errorf("build context %s: remote (%s) build contexts are not supported; give the task this context instead, or clone it in an earlier step into /workspace", b.Context, b.ContextKind)
	}
	root, err := r.workspaceRoot(ctx)
	if err != nil {
		return err
	}
	dir, err := hostPath(root, b.ContextPath)
	if err == nil {
		dir, err = inside(root, dir)
	}
	if err != nil {
		return fmt.Errorf("build context %s: %w", b.Context, err)
	}
	df := cmp.Or(b.Dockerfile, "Dockerfile")
	dfHost, err := hostPath(root, b.DockerfilePath)
	if err == nil {
		dfHost, err = inside(root, dfHost)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("dockerfile %s not found in the build context (%s)", df, b.DockerfilePath)
	}
	if err != nil {
		return fmt.Errorf("dockerfile %s: %w", df, err)
	}
	data, err := os.ReadFile(dfHost)
	if err != nil {
		return fmt.Errorf("dockerfile %s: %w", df, err)
	}
	in := &buildInput{dir: dir, dfHost: dfHost}
	if b.Cache {
		r.log.once("cache/"+s.ID, "Step ID: %s: cache: enabled is ignored: builds use the engine's own layer cache, kept between runs, not a registry cache (%s)", s.ID, b.CacheRef)
	}
	for _, o := range b.Options {
		r.log.once("option/"+s.ID+o.Name, "Step ID: %s: docker build option %s is ignored by gantry's builder", s.ID, o.Name)
	}

	var opts []dockerfile.Option
	if b.Platform != "" {
		opts = append(opts, dockerfile.WithPlatform(b.Platform))
	}
	if report {
		r.log.Printf("Scanning for dependencies...")
	}
	deps, err := dockerfile.Scan(data, b.BuildArgMap(), b.Target, opts...)
	if err != nil {
		// Every image a build reads is checked against the run's rights
		// first; a Dockerfile that cannot be read for them is not built.
		if report {
			r.log.Printf("Failed to scan dependencies: %v", err)
		}
		return fmt.Errorf("dockerfile %s: the images it builds from cannot be checked: %w", df, err)
	}
	in.deps = deps
	if report {
		r.log.Printf("Successfully scanned dependencies")
	}
	r.steps.state(s.ID).build = in
	out := r.log.output(s.ID)
	defer out.Close()
	for _, img := range append(bases(in.deps), in.deps.Reads...) {
		if imageOf(img).Registry == dockerHub {
			// The builder uses the engine's copy or pulls it; a copy
			// another live run built or tagged under this name is its own.
			if err := r.e.leases.checkAuthor(r, img); err != nil {
				return err
			}
			continue
		}
		if b.Pull {
			continue // the builder pulls it, with the run's logins
		}
		if err := r.ensureImage(ctx, img, out); err != nil {
			return fmt.Errorf("image %s: %w", img, err)
		}
	}
	return nil
}

// bases lists a scan's base images, runtime first.
func bases(res *dockerfile.Result) []string {
	var out []string
	if res.Runtime != "" {
		out = append(out, res.Runtime)
	}
	return append(out, res.Buildtime...)
}

// hostPath maps a path under /workspace to root on the host.
func hostPath(root, p string) (string, error) {
	rel, ok := strings.CutPrefix(path.Clean(p), plan.Workspace)
	if !ok || (rel != "" && !strings.HasPrefix(rel, "/")) {
		return "", fmt.Errorf("%s is outside %s, the only directory builds can read", p, plan.Workspace)
	}
	return filepath.Join(root, filepath.FromSlash(strings.TrimPrefix(rel, "/"))), nil
}

// inside resolves the symlinks of p, which must stay under root: the
// workspace may hold links anywhere (a step can create them), and neither
// a build context nor a Dockerfile may come from the server's own files.
func inside(root, p string) (string, error) {
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", err
	}
	if rel, err := filepath.Rel(realRoot, real); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("%s is a link out of %s", strings.TrimPrefix(p, root), plan.Workspace)
	}
	return real, nil
}

// workspaceRoot returns a host directory with the contents of /workspace:
// the job's workspace while no container has run (nothing can have changed
// it), else a fresh copy of the volume.
func (r *run) workspaceRoot(ctx context.Context) (string, error) {
	r.mu.Lock()
	dirty := r.dirty
	r.mu.Unlock()
	if !dirty && r.job.Workspace != "" {
		return r.job.Workspace, nil
	}
	dir, err := os.MkdirTemp("", "gantry-build-")
	if err != nil {
		return "", err
	}
	r.leftovers.tempDir(dir)
	if !dirty {
		return dir, nil // no context at all
	}
	rc, _, err := r.d.CopyFromContainer(ctx, r.setupID, plan.Workspace+"/.")
	if err != nil {
		return "", fmt.Errorf("reading the workspace: %w", engineErr(err))
	}
	defer rc.Close()
	if err := untar(rc, dir); err != nil {
		return "", fmt.Errorf("reading the workspace: %w", err)
	}
	return dir, nil
}

// untar extracts a tar stream into dir, refusing paths that leave it.
func untar(r io.Reader, dir string) error {
	// Every write goes through an os.Root: no name, symbolic link (a step
	// can leave any link in the workspace) or hard link leads out of dir.
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." || name == "" {
			continue
		}
		if !filepath.IsLocal(filepath.FromSlash(name)) {
			return fmt.Errorf("unsafe path %q in the workspace", h.Name)
		}
		dst := filepath.FromSlash(name)
		mode := os.FileMode(h.Mode).Perm()
		if err := untarEntry(root, tr, h, dst, mode); err != nil {
			return fmt.Errorf("path %q in the workspace: %w", h.Name, err)
		}
	}
}

// untarEntry writes one archive entry at dst inside root.
func untarEntry(root *os.Root, tr *tar.Reader, h *tar.Header, dst string, mode os.FileMode) error {
	parent := filepath.Dir(dst)
	switch h.Typeflag {
	case tar.TypeDir:
		return root.MkdirAll(dst, mode|0o700)
	case tar.TypeReg:
		if err := root.MkdirAll(parent, 0o755); err != nil {
			return err
		}
		// A link left at dst by an earlier entry is replaced, not written
		// through.
		if fi, err := root.Lstat(dst); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			if err := root.Remove(dst); err != nil {
				return err
			}
		}
		f, err := root.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode|0o200)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		_ = root.Chmod(dst, mode)
		_ = root.Chtimes(dst, h.ModTime, h.ModTime)
		return nil
	case tar.TypeSymlink:
		if err := root.MkdirAll(parent, 0o755); err != nil {
			return err
		}
		return root.Symlink(h.Linkname, dst)
	case tar.TypeLink:
		src := filepath.FromSlash(path.Clean(strings.TrimPrefix(h.Linkname, "./")))
		if !filepath.IsLocal(src) {
			return fmt.Errorf("hard link to %q leaves the workspace", h.Linkname)
		}
		if err := root.MkdirAll(parent, 0o755); err != nil {
			return err
		}
		return root.Link(src, dst)
	}
	return nil
}

// build runs one attempt of a build (a build step, or docker build in a
// cmd) on the engine: BuildKit where the engine offers it, else the classic
// builder (the log says which, once per step), with the run's logins for
// the FROM images and the step's --secret values from the task file's
// secrets. Build steps then record their dependencies' digests.
func (r *run) build(ctx context.Context, s *plan.Step, b *plan.Build, record bool) (attemptResult, error) {
	in := r.steps.state(s.ID).build
	if in == nil {
		return attemptResult{exitCode: -1}, fmt.Errorf("build of step %s was not prepared", s.ID)
	}
	out := r.log.output(s.ID)
	defer out.Close()
	args := map[string]*string{}
	for _, a := range b.BuildArgs {
		args[a.Name] = &a.Value
	}
	labels := map[string]string{}
	for _, l := range b.Labels {
		k, v, _ := strings.Cut(l, "=")
		labels[k] = v
	}
	network := r.buildNetwork(s, b)
	secrets, err := r.buildSecrets(b)
	if err != nil {
		return attemptResult{exitCode: -1}, err
	}
	for _, t := range b.Tags {
		if err := r.mayCreateTag(ctx, t); err != nil {
			return attemptResult{exitCode: 1, output: err.Error()}, err
		}
	}
	builder := r.chooseBuilder(ctx, s, b)
	opts := docker.BuildOptions{
		Tags:        b.Tags,
		BuildArgs:   args,
		Target:      b.Target,
		NoCache:     b.NoCache,
		Pull:        b.Pull,
		Labels:      labels,
		Platform:    b.Platform,
		NetworkMode: network,
		AuthConfigs: r.logins.authConfigs(),
		Secrets:     secrets,
		Builder:     builder,
	}
	src := docker.BuildSource{Dir: in.dir, Dockerfile: in.dfHost}
	res, err := r.d.Build(ctx, src, opts, out)
	if err != nil && ctx.Err() == nil && builder == docker.BuilderBuildKit && len(secrets) == 0 &&
		strings.Contains(err.Error(), "x509: certificate signed by unknown authority") {
		// dockerd's BuildKit reads the registry CAs of /etc/docker/certs.d
		// when dockerd starts; the engine's pulls read them at each
		// connection. A registry whose CA was added since is reached by
		// the classic builder (a build with secrets needs BuildKit).
		r.log.Printf("Step ID: %s: BuildKit does not trust a registry's certificate (dockerd's BuildKit reads /etc/docker/certs.d when dockerd starts); building with the classic builder", s.ID)
		opts.Builder = docker.BuilderClassic
		res, err = r.d.Build(ctx, src, opts, out)
	}
	if err != nil {
		if ctx.Err() != nil {
			return attemptResult{exitCode: -1}, ctx.Err()
		}
		return attemptResult{exitCode: -1}, engineErr(err)
	}
	r.recordCreated(ctx, res.ImageID, b.Tags...)
	r.e.leases.author(r, b.Tags...)
	if record {
		r.recordDependencies(ctx, s, b, in.deps)
	}
	return attemptResult{exitCode: 0}, nil
}

// chooseBuilder picks the builder of a step and logs it once per step:
// BuildKit where the engine offers it, unless the step sets
// DOCKER_BUILDKIT=0; the classic builder otherwise, with the reason.
func (r *run) chooseBuilder(ctx context.Context, s *plan.Step, b *plan.Build) docker.Builder {
	v, _ := r.d.EngineVersion()
	engine := strings.TrimSpace(v.Name + " " + v.Version)
	if b.NoBuildKit {
		r.log.once("builder/"+s.ID, "Step ID: %s: building with the classic builder of %s (DOCKER_BUILDKIT=0)", s.ID, engine)
		return docker.BuilderClassic
	}
	builder, why := r.d.Builder(ctx)
	if builder == docker.BuilderBuildKit {
		r.log.once("builder/"+s.ID, "Step ID: %s: building with BuildKit on %s", s.ID, engine)
	} else {
		r.log.once("builder/"+s.ID, "Step ID: %s: building with the classic builder: %s", s.ID, why)
	}
	return builder
}

// buildSecrets resolves a build's --secret flags from the task file's
// secrets (the plan checked that each names one).
func (r *run) buildSecrets(b *plan.Build) (docker.Secrets, error) {
	if len(b.Secrets) == 0 {
		return nil, nil
	}
	m := make(docker.Secrets, len(b.Secrets))
	for _, bs := range b.Secrets {
		v, ok := r.plan.Secret(bs.Source)
		if !ok {
			return nil, fmt.Errorf("--secret id=%s: the task file's secret %q has no value", bs.ID, bs.Source)
		}
		m[bs.ID] = []byte(v)
	}
	return m, nil
}

// recordDependencies resolves the digests of a build's base images right
// after the build (when they are the images the build used).
func (r *run) recordDependencies(ctx context.Context, s *plan.Step, b *plan.Build, deps *dockerfile.Result) {
	d := &Dependency{Step: s.ID, Images: b.Tags}
	if deps != nil {
		if deps.Runtime != "" {
			d.Runtime = r.resolveDigest(ctx, deps.Runtime)
		}
		for _, bt := range deps.Buildtime {
			d.Buildtime = append(d.Buildtime, r.resolveDigest(ctx, bt))
		}
	}
	r.outputs.built(d)
}

// resolveDigest finds the manifest digest of a base image: from the
// engine's RepoDigests (set when the image was pulled from or pushed to its
// registry), else by asking the registry (not Docker Hub, which is out of
// reach). A digest that cannot be found is left empty.
func (r *run) resolveDigest(ctx context.Context, ref string) Image {
	img := imageOf(ref)
	if img.Digest != "" {
		return img
	}
	name := img.Registry + "/" + img.Repository
	// Podman lists every manifest digest it knows of an image under each of
	// its names (the one it pulled and the one it stored, say): a single
	// candidate is the answer, several are settled by the registry.
	var candidates []string
	if info, err := r.d.InspectImage(ctx, ref); err == nil {
		for _, rd := range info.RepoDigests {
			n, dg, ok := strings.Cut(rd, "@")
			if !ok {
				continue
			}
			if full, err := oci.Normalize(n); err == nil && strings.TrimSuffix(full, ":latest") == name && !slices.Contains(candidates, dg) {
				candidates = append(candidates, dg)
			}
		}
	}
	if len(candidates) == 1 || len(candidates) > 1 && img.Registry == dockerHub {
		img.Digest = candidates[0]
		return img
	}
	if img.Registry == dockerHub {
		return img
	}
	var cred *Credential
	if c, ok := r.logins.credFor(img.Registry); ok {
		cred = &c
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	dg, err := headDigest(hctx, r.e.remote, img, cred)
	switch {
	case err == nil && (len(candidates) == 0 || slices.Contains(candidates, dg)):
		img.Digest = dg
	case len(candidates) > 0:
		// The tag moved since the pull: the engine's first candidate.
		img.Digest = candidates[0]
	default:
		r.e.log.DebugContext(ctx, "resolving a base image digest", "image", ref, "err", err)
	}
	return img
}
