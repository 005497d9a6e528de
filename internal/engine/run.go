package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"gopkg.in/yaml.v3"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/plan"
)

// Paths in the setup container (see run.setup).
const (
	setupSecrets = "/gantry/secrets/"
	// setupCLIHome is where the alias steps' HOME volume is mounted.
	setupCLIHome = "/gantry/clihome"
	// imagesFile lists the image tags the run created, "<tag> <image ID>"
	// per line, in the setup container's own file system: what Cleanup
	// reads after a crash.
	imagesFile = "/gantry-images"
)

// run is the state of one Execute, in parts of one job each: the names of
// its engine objects, its registry logins, the images it may use (scope),
// what it pushed and built from (outputs), what its teardown removes
// besides its labelled objects (leftovers), what prepare resolved for each
// step, and the writer of its imagesFile (tags). The run itself sets up,
// runs the steps (operations) and tears down.
type run struct {
	e       *Engine
	d       *docker.Client
	job     Job
	log     *runLog
	plan    *plan.Plan
	names   names
	setupID string // the setup container

	logins    *logins
	scope     *scope
	outputs   *outputs
	leftovers leftovers
	steps     stepStates
	tags      *tagWriter

	mu    sync.Mutex
	dirty bool // a container has run with /workspace mounted
}

var nameRE = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

func newRun(e *Engine, job Job, lg *runLog) *run {
	registry := job.RegistryName
	if registry == "" {
		registry = job.Registry
	}
	safe := strings.Trim(nameRE.ReplaceAllString(registry+"_"+job.RunID, "_"), "_.-")
	r := &run{
		e:   e,
		d:   e.d,
		job: job,
		log: lg,
		names: names{
			registry:  registry,
			label:     registry + "/" + job.RunID,
			prefix:    "gantry_" + safe + "_",
			workspace: "gantry_" + safe + "_workspace",
			home:      "gantry_" + safe + "_home",
			cliHome:   "gantry_" + safe + "_clihome",
			secrets:   map[string]string{},
		},
		logins:  newLogins(job.Credentials),
		scope:   newScope(e.reservedRepositories()),
		outputs: newOutputs(),
		tags:    &tagWriter{},
	}
	return r
}

// env returns the step's container environment: HOME first (so that the
// step can override it), the step's entries, then GantryEnv for the CLI.
func (r *run) env(s *plan.Step, cli bool) []string {
	env := append([]string{"HOME=" + HomeDir}, s.Env...)
	if cli {
		for _, k := range slices.Sorted(maps.Keys(r.job.GantryEnv)) {
			env = append(env, k+"="+r.job.GantryEnv[k])
		}
	}
	return env
}

// setup creates the run's volumes and the (never started) setup container
// that mounts them, and fills them: the workspace from Job.Workspace, the
// home volume's .docker/config.json with the run's logins, and the secret
// volumes' files. It also verifies the logins.
func (r *run) setup(ctx context.Context) error {
	vols := []string{r.names.workspace, r.names.home, r.names.cliHome}
	for i, v := range r.plan.Volumes {
		name := fmt.Sprintf("%ssecret%d_%s", r.names.prefix, i, strings.Trim(nameRE.ReplaceAllString(v.Name, "_"), "_"))
		r.names.secrets[v.Name] = name
		vols = append(vols, name)
	}
	r.log.Printf("Setting up Docker configuration...")
	var g errgroup.Group
	g.Go(func() error { return r.e.ensureHelper(ctx) })
	for _, v := range vols {
		g.Go(func() error {
			_, err := r.d.CreateVolume(ctx, v, r.names.labels(roleVolume, ""))
			return err
		})
	}
	logins := checkLogins(ctx, r.e.remote, r.job.Credentials)
	if err := g.Wait(); err != nil {
		return setupErr(ctx, err)
	}

	mounts := []docker.Mount{
		{Type: "volume", Source: r.names.workspace, Target: plan.Workspace},
		{Type: "volume", Source: r.names.home, Target: HomeDir},
		{Type: "volume", Source: r.names.cliHome, Target: setupCLIHome},
	}
	for i, v := range r.plan.Volumes {
		mounts = append(mounts, docker.Mount{Type: "volume", Source: r.names.secrets[v.Name], Target: fmt.Sprintf("%s%d", setupSecrets, i)})
	}
	id, err := r.d.CreateContainer(ctx, r.names.prefix+"setup",
		docker.ContainerConfig{Image: helperImage, Cmd: []string{"/none"}, Labels: r.names.labels(roleSetup, "")},
		docker.HostConfig{NetworkMode: "none", Mounts: mounts})
	if err != nil {
		return setupErr(ctx, err)
	}
	r.setupID = id

	// Each volume is filled by extracting into its own mount point (Podman
	// does not extract through a mount when the archive goes to /).
	config, err := r.logins.dockerConfig()
	if err != nil {
		return err
	}
	if r.job.Workspace != "" {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(docker.TarDir(pw, r.job.Workspace)) }()
		err = r.d.CopyToContainer(ctx, id, plan.Workspace, pr)
		pr.CloseWithError(err)
		if err != nil {
			return setupErr(ctx, fmt.Errorf("copying the context: %w", err))
		}
	}
	// The alias steps get a HOME of their own with the same logins: what
	// they save there (az acr login, gantry login: the run's control-API
	// credential) never reaches the other steps.
	for _, home := range []string{HomeDir, setupCLIHome} {
		if err := r.copyFiles(ctx, home, []tarFile{
			{name: ".docker/", mode: 0o700},
			{name: ".docker/config.json", mode: 0o600, data: config},
		}); err != nil {
			return setupErr(ctx, fmt.Errorf("copying the configuration: %w", err))
		}
	}
	for i, v := range r.plan.Volumes {
		var files []tarFile
		for _, f := range v.Files {
			if f.Name == "." || f.Name == ".." || strings.ContainsAny(f.Name, `/\`) {
				return fmt.Errorf("secret volume %s: invalid file name %q", v.Name, f.Name)
			}
			files = append(files, tarFile{name: f.Name, mode: 0o444, data: f.Data})
		}
		if err := r.copyFiles(ctx, fmt.Sprintf("%s%d", setupSecrets, i), files); err != nil {
			return setupErr(ctx, fmt.Errorf("copying secret volume %s: %w", v.Name, err))
		}
	}
	r.tags.start(r.writeImagesFile)
	r.log.Printf("Successfully set up Docker configuration")
	for _, l := range logins {
		res := <-l.done
		r.log.Printf("Logging in to registry: %s", l.host)
		switch {
		case res == nil:
			r.log.Printf("Successfully logged into %s", l.host)
		case errors.Is(res, errUnreachable):
			r.log.Printf("Could not reach %s to verify the login, continuing: %v", l.host, res)
		default:
			return fmt.Errorf("failed to login to registry %s: %w", l.host, res)
		}
	}
	if names := declaredNetworks(r.plan); len(names) > 0 {
		r.log.Printf("Declared networks (%s) are not created: every step runs on the host network, so steps reach each other (and detached services) on 127.0.0.1",
			strings.Join(names, ", "))
	}
	return nil
}

// setupErr marks a failure to set a run up as the engine's (unless ctx
// ended).
func setupErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("setting up the run: %w: %w", ErrEngine, err)
}

// declaredNetworks lists the networks the task file names (the implicit
// default network aside), which gantry maps to the host network.
func declaredNetworks(p *plan.Plan) []string {
	var names []string
	add := func(n string) {
		if n != "" && n != plan.DefaultNetworkName && n != hostNetwork && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, n := range p.Networks {
		add(n.Name)
	}
	for _, s := range p.Steps {
		add(s.Network)
	}
	return names
}

// writeDockerConfig rewrites config.json after docker login or logout.
func (r *run) writeDockerConfig(ctx context.Context) error {
	data, err := r.logins.dockerConfig()
	if err != nil {
		return err
	}
	return r.copyFiles(ctx, HomeDir, []tarFile{{name: ".docker/", mode: 0o700}, {name: ".docker/config.json", mode: 0o600, data: data}})
}

// tarFile is a file (or, with a trailing slash, a directory) to copy into
// the setup container.
type tarFile struct {
	name string
	mode int64
	data []byte
}

func (r *run) copyFiles(ctx context.Context, dir string, files []tarFile) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := writeFiles(tw, files, r.e.now()); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return r.d.CopyToContainer(ctx, r.setupID, dir, &buf)
}

func writeFiles(tw *tar.Writer, files []tarFile, now time.Time) error {
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: now, Typeflag: tar.TypeReg, Size: int64(len(f.data))}
		if strings.HasSuffix(f.name, "/") {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	return nil
}

// recordCreated records that the run gave tag(s) to image id: in memory,
// and (in the background, see tagWriter) in the setup container,
// where Cleanup finds them after a crash.
func (r *run) recordCreated(_ context.Context, id string, tags ...string) {
	if len(tags) == 0 {
		return
	}
	r.scope.add(id, tags...)
	r.e.leases.use(r, tags...)
	r.tags.changed()
}

// writeImagesFile writes the tags the run created to imagesFile.
func (r *run) writeImagesFile() {
	created := r.scope.createdTags()
	var b strings.Builder
	for _, t := range slices.Sorted(maps.Keys(created)) {
		fmt.Fprintf(&b, "%s %s\n", t, created[t])
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	err := r.copyFiles(ctx, "/", []tarFile{{name: strings.TrimPrefix(imagesFile, "/"), mode: 0o600, data: []byte(b.String())}})
	cancel()
	if err != nil {
		r.e.log.Warn("recording created images", "run", r.names.label, "err", err)
	}
}

// teardown removes everything the run created: detached and kept
// containers, the setup container, the image tags it created (when they
// still point at its images) and its volumes.
func (r *run) teardown(ctx context.Context) error {
	r.tags.stop()
	var errs []error
	det, dirs := r.leftovers.take()
	created := r.e.leases.end(r)
	// Containers first (detached ones are still running), then, in
	// parallel, the tags and the volumes they no longer use.
	errs = append(errs, removeContainers(ctx, r.d, r.names.label))
	for _, d := range det {
		d.cancel()
		select {
		case <-d.done:
		case <-ctx.Done():
		}
	}
	var g errgroup.Group
	g.Go(func() error { return r.untagOrHandOver(ctx, created) })
	g.Go(func() error { return removeVolumes(ctx, r.d, r.names.label) })
	errs = append(errs, g.Wait())
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cleanupLabelled removes a run's objects found by label (Cleanup).
func cleanupLabelled(ctx context.Context, d *docker.Client, label string) error {
	cs, err := d.ListContainers(ctx, docker.ListContainersOptions{All: true, Labels: []string{LabelRun + "=" + label, LabelRole + "=" + roleSetup}})
	if err != nil {
		return fmt.Errorf("cleaning up run %s: %w", label, engineErr(err))
	}
	var errs []error
	for _, c := range cs {
		created, err := readCreated(ctx, d, c.ID)
		if err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, untag(ctx, d, created))
	}
	errs = append(errs, removeContainers(ctx, d, label), removeVolumes(ctx, d, label))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleaning up run %s: %w", label, err)
	}
	return nil
}

// readCreated reads imagesFile from a setup container.
func readCreated(ctx context.Context, d *docker.Client, id string) (map[string]string, error) {
	rc, _, err := d.CopyFromContainer(ctx, id, imagesFile)
	if errors.Is(err, docker.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	if _, err := tr.Next(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", imagesFile, err)
	}
	data, err := io.ReadAll(io.LimitReader(tr, 1<<20))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if tag, id, ok := strings.Cut(line, " "); ok {
			out[tag] = id
		}
	}
	return out, nil
}

func removeContainers(ctx context.Context, d *docker.Client, label string) error {
	cs, err := d.ListContainers(ctx, docker.ListContainersOptions{All: true, Labels: []string{LabelRun + "=" + label}})
	if err != nil {
		return err
	}
	var g errgroup.Group
	for _, c := range cs {
		g.Go(func() error {
			if err := d.RemoveContainer(ctx, c.ID, docker.RemoveContainerOptions{Force: true, RemoveVolumes: true}); err != nil && !errors.Is(err, docker.ErrNotFound) {
				// ErrConflict: the engine is already removing it (AutoRemove);
				// wait for that so that the volumes can go.
				if !errors.Is(err, docker.ErrConflict) {
					return err
				}
				if ch, werr := d.WaitContainer(ctx, c.ID, docker.WaitRemoved); werr == nil {
					select {
					case <-ch:
					case <-ctx.Done():
					}
				}
			}
			return nil
		})
	}
	return g.Wait()
}

func removeVolumes(ctx context.Context, d *docker.Client, label string) error {
	vs, err := d.ListVolumes(ctx, LabelRun+"="+label)
	if err != nil {
		return err
	}
	var g errgroup.Group
	for _, v := range vs {
		g.Go(func() error {
			if err := d.RemoveVolume(ctx, v.Name, true); err != nil && !errors.Is(err, docker.ErrNotFound) {
				return err
			}
			return nil
		})
	}
	return g.Wait()
}

// untagOrHandOver removes the tags the run created, except those another
// live run relies on: that run inherits them and removes them at its end.
func (r *run) untagOrHandOver(ctx context.Context, created map[string]string) error {
	var errs []error
	for _, tag := range slices.Sorted(maps.Keys(created)) {
		func() {
			defer r.e.leases.lock(tag)()
			if heir, ok := r.e.leases.handOver(r, tag, created[tag]); ok {
				heir.tags.changed()
				return
			}
			errs = append(errs, untag(ctx, r.d, map[string]string{tag: created[tag]}))
		}()
	}
	return errors.Join(errs...)
}

// untag removes the tags a run created that still point at the images it
// gave them (a later run may have moved them).
func untag(ctx context.Context, d *docker.Client, created map[string]string) error {
	// One at a time: Podman loses track of an image whose tags are removed
	// concurrently ("image not known"), and a run has few tags.
	var errs []error
	for _, tag := range slices.Sorted(maps.Keys(created)) {
		id := created[tag]
		img, err := d.InspectImage(ctx, tag)
		if err != nil {
			if !errors.Is(err, docker.ErrNotFound) {
				errs = append(errs, err)
			}
			continue
		}
		if id != "" && img.ID != id {
			continue // moved since: no longer the run's
		}
		// ErrConflict: a container of someone else uses it as its only
		// name; it stays.
		if err := d.RemoveImage(ctx, tag, false); err != nil && !errors.Is(err, docker.ErrNotFound) && !errors.Is(err, docker.ErrConflict) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// reportDependencies logs the dependencies as acb does at the end of a
// successful run.
func (r *run) reportDependencies(deps []Dependency) {
	if len(deps) == 0 {
		return
	}
	type ref struct {
		Registry   string `yaml:"registry"`
		Repository string `yaml:"repository"`
		Tag        string `yaml:"tag,omitempty"`
		Digest     string `yaml:"digest,omitempty"`
	}
	type entry struct {
		Image     ref   `yaml:"image"`
		Runtime   *ref  `yaml:"runtime-dependency,omitempty"`
		Buildtime []ref `yaml:"buildtime-dependency,omitempty"`
		Git       *struct {
			Head string `yaml:"git-head-revision"`
		} `yaml:"git,omitempty"`
	}
	conv := func(i Image) ref { return ref(i) }
	pushed := r.outputs.digests()
	var list []entry
	for _, d := range deps {
		r.log.Printf("Populating digests for step ID: %s...", d.Step)
		r.log.Printf("Successfully populated digests for step ID: %s", d.Step)
		for _, tag := range d.Images {
			img := imageOf(tag)
			img.Digest = pushed[img.Reference()]
			e := entry{Image: conv(img)}
			if d.Runtime.Repository != "" {
				rt := conv(d.Runtime)
				e.Runtime = &rt
			}
			for _, b := range d.Buildtime {
				e.Buildtime = append(e.Buildtime, conv(b))
			}
			if r.job.Commit != "" {
				e.Git = &struct {
					Head string `yaml:"git-head-revision"`
				}{r.job.Commit}
			}
			list = append(list, e)
		}
	}
	data, err := yaml.Marshal(list)
	if err != nil {
		return
	}
	r.log.Printf("The following dependencies were found:")
	for _, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		r.log.write(line)
	}
}
