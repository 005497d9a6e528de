package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/plan"
)

// dockerCommand performs a `cmd: docker <subcommand>` step on the engine
// itself, as acb's docker CLI image does through the mounted socket. The
// runner lines are those of a container named after the step; a failing
// command prints the error as the docker CLI would and fails with exit
// status 1.
func (r *run) dockerCommand(ctx context.Context, s *plan.Step) (attemptResult, error) {
	d := s.Cmd.Docker
	out := r.log.output(s.ID)
	defer out.Close()
	var w io.Writer = out
	if s.Cmd.Stdout == plan.OutputDiscard {
		w = io.Discard
	}
	var ew io.Writer = out
	if s.Cmd.Stderr == plan.OutputDiscard {
		ew = io.Discard
	}
	r.log.Printf("Launching container with name: %s", s.ID)
	var err error
	if d.Subcommand == "build" {
		_, err = r.build(ctx, s, d.Build, false)
	} else if do, ok := dockerRuns[d.Subcommand]; ok {
		err = do(r, ctx, d, w)
	} else {
		err = fmt.Errorf("docker %s is not supported", d.Subcommand)
	}
	switch {
	case err == nil:
		r.log.Printf("Successfully executed container: %s", s.ID)
		return attemptResult{exitCode: 0}, nil
	case ctx.Err() != nil:
		return attemptResult{exitCode: -1}, ctx.Err()
	case errors.Is(engineErr(err), ErrEngine):
		return attemptResult{exitCode: -1}, engineErr(err)
	}
	msg := err.Error()
	if d.Subcommand != "build" {
		fmt.Fprintf(ew, "Error response from daemon: %s\n", msg)
	}
	return attemptResult{exitCode: 1, output: msg}, &exitError{code: 1}
}

// dockerRuns run the docker subcommands other than build; what a command
// prints goes to its writer.
var dockerRuns = map[string]func(*run, context.Context, *plan.DockerCommand, io.Writer) error{
	"pull":    (*run).dockerPull,
	"tag":     (*run).dockerTag,
	"push":    (*run).dockerPush,
	"images":  (*run).dockerImages,
	"inspect": (*run).dockerInspect,
	"rmi":     (*run).dockerRmi,
	"login":   (*run).dockerLogin,
	"logout":  (*run).dockerLogout,
}

func (r *run) dockerPull(ctx context.Context, d *plan.DockerCommand, w io.Writer) error {
	ref, progress, err := transfer(d, w)
	if err != nil {
		return err
	}
	if err := r.pull(ctx, ref, progress); err != nil {
		return err
	}
	fmt.Fprintln(w, qualified(ref))
	return nil
}

// transfer reads a docker pull or push: the image, and where its progress
// goes (nowhere with --quiet). --all-tags is not supported.
func transfer(d *plan.DockerCommand, w io.Writer) (string, io.Writer, error) {
	if d.Bool("--all-tags") {
		return "", nil, fmt.Errorf("docker %s --all-tags is not supported", d.Subcommand)
	}
	if d.Bool("--quiet") {
		w = nil
	}
	return d.Operands[0], w, nil
}

// qualified is the reference as the docker CLI prints it after a pull.
func qualified(ref string) string {
	img := imageOf(ref)
	if img.Digest != "" {
		return img.Registry + "/" + img.Repository + "@" + img.Digest
	}
	return img.Reference()
}

func (r *run) dockerTag(ctx context.Context, d *plan.DockerCommand, _ io.Writer) error {
	src, dst := d.Operands[0], d.Operands[1]
	if !r.scope.sees(src) {
		return errNoSuchImage(src)
	}
	if err := r.mayCreateTag(ctx, dst); err != nil {
		return err
	}
	if err := r.d.TagImage(ctx, src, dst); err != nil {
		return err
	}
	img, err := r.d.InspectImage(ctx, dst)
	if err != nil {
		return err
	}
	r.recordCreated(ctx, img.ID, dst)
	r.e.leases.author(r, dst)
	return nil
}

func (r *run) dockerPush(ctx context.Context, d *plan.DockerCommand, w io.Writer) error {
	ref, progress, err := transfer(d, w)
	if err != nil {
		return err
	}
	if !r.scope.sees(ref) || imageOf(ref).Registry == dockerHub && !r.scope.owns(ref) {
		//lint:ignore ST1005 the docker CLI's wording, which scripts match
		return fmt.Errorf("An image does not exist locally with the tag: %s", ref)
	}
	digest, err := r.d.PushImage(ctx, ref, r.logins.authFor(ref), progress)
	if err != nil {
		return err
	}
	r.outputs.pushed(ref, digest)
	return nil
}

// dockerImages prints `docker images` (default table, -q, --digests,
// --no-trunc, --filter reference=/label=, --format with the CLI's fields).
func (r *run) dockerImages(ctx context.Context, d *plan.DockerCommand, w io.Writer) error {
	opts := docker.ListImagesOptions{}
	if len(d.Operands) > 0 {
		opts.Reference = d.Operands[0]
	}
	opts.All = d.Bool("--all")
	for _, f := range d.Flags {
		if f.Name != "--filter" {
			continue
		}
		k, v, _ := strings.Cut(f.Value, "=")
		switch k {
		case "reference":
			opts.Reference = v
		case "label":
			opts.Labels = append(opts.Labels, v)
		default:
			return fmt.Errorf("docker images: filter %q is not supported (reference, label)", k)
		}
	}
	list, err := r.d.ListImages(ctx, opts)
	if err != nil {
		return err
	}
	list = r.scope.visibleImages(list)
	type row struct {
		Repository, Tag, Digest, ID, CreatedSince, CreatedAt, Size string
	}
	var rows []row
	now := r.e.now()
	for _, im := range list {
		id := im.ID
		if !d.Bool("--no-trunc") {
			id = strings.TrimPrefix(id, "sha256:")[:min(12, len(strings.TrimPrefix(id, "sha256:")))]
		}
		created := time.Unix(im.Created, 0)
		digests := map[string]string{}
		for _, rd := range im.RepoDigests {
			n, dg, _ := strings.Cut(rd, "@")
			digests[n] = dg
		}
		base := row{ID: id, CreatedSince: since(now, created), CreatedAt: created.UTC().Format("2006-01-02 15:04:05 -0700 MST"), Size: humanSize(im.Size)}
		if len(im.RepoTags) == 0 {
			b := base
			b.Repository, b.Tag, b.Digest = "<none>", "<none>", "<none>"
			rows = append(rows, b)
		}
		for _, t := range im.RepoTags {
			b := base
			i := strings.LastIndexByte(t, ':')
			b.Repository, b.Tag = t[:i], t[i+1:]
			b.Digest = cmpOr(digests[b.Repository], "<none>")
			rows = append(rows, b)
		}
	}
	if d.Bool("--quiet") {
		seen := map[string]bool{}
		for _, rw := range rows {
			if !seen[rw.ID] {
				seen[rw.ID] = true
				fmt.Fprintln(w, rw.ID)
			}
		}
		return nil
	}
	if f, ok := d.Flag("--format"); ok && f != "" && f != "table" {
		return formatEach(w, "docker images", strings.TrimPrefix(f, "table "), nil, rows)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	if d.Bool("--digests") {
		fmt.Fprintln(tw, "REPOSITORY\tTAG\tDIGEST\tIMAGE ID\tCREATED\tSIZE")
		for _, rw := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", rw.Repository, rw.Tag, rw.Digest, rw.ID, rw.CreatedSince, rw.Size)
		}
	} else {
		fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
		for _, rw := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", rw.Repository, rw.Tag, rw.ID, rw.CreatedSince, rw.Size)
		}
	}
	return tw.Flush()
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// since formats an age as the docker CLI does ("5 minutes ago").
func since(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "Less than a minute ago"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute") + " ago"
	case d < 48*time.Hour:
		return plural(int(d/time.Hour), "hour") + " ago"
	case d < 14*24*time.Hour:
		return plural(int(d/(24*time.Hour)), "day") + " ago"
	}
	return plural(int(d/(7*24*time.Hour)), "week") + " ago"
}

func plural(n int, unit string) string {
	if n == 1 {
		if unit == "hour" {
			return "About an hour"
		}
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// humanSize formats bytes in decimal units, as docker images does.
func humanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	return fmt.Sprintf("%.3g%s", f, units[i])
}

// dockerInspect prints the images as a JSON array, or --format applied to
// each (fields as in the engine's JSON: .Id, .RepoTags, .RepoDigests,
// .Created, .Config.Env, .Os, .Architecture, .Size ...).
func (r *run) dockerInspect(ctx context.Context, d *plan.DockerCommand, w io.Writer) error {
	if t, ok := d.Flag("--type"); ok && t != "image" {
		return fmt.Errorf("docker inspect --type %s is not supported (images only)", t)
	}
	var list []map[string]any
	for _, ref := range d.Operands {
		if !r.scope.sees(ref) {
			//lint:ignore ST1005 the docker CLI's wording, which scripts match
			return fmt.Errorf("No such object: %s", ref)
		}
		img, err := r.d.InspectImage(ctx, ref)
		if err != nil {
			if errors.Is(err, docker.ErrNotFound) {
				//lint:ignore ST1005 the docker CLI's wording, which scripts match
				return fmt.Errorf("No such object: %s", ref)
			}
			return err
		}
		list = append(list, map[string]any{
			"Id":          img.ID,
			"RepoTags":    img.RepoTags,
			"RepoDigests": img.RepoDigests,
			"Created":     img.Created.UTC().Format(time.RFC3339Nano),
			"Config": map[string]any{
				"Env": img.Config.Env, "Cmd": img.Config.Cmd, "Entrypoint": img.Config.Entrypoint,
				"WorkingDir": img.Config.WorkingDir, "User": img.Config.User, "Labels": img.Config.Labels,
				"ExposedPorts": img.Config.ExposedPorts,
			},
			"Os":           img.Os,
			"Architecture": img.Architecture,
			"Size":         img.Size,
		})
	}
	if f, ok := d.Flag("--format"); ok && f != "" {
		return formatEach(w, "docker inspect", f, template.FuncMap{
			"json": func(v any) (string, error) { b, err := json.Marshal(v); return string(b), err },
		}, list)
	}
	data, err := json.MarshalIndent(list, "", "    ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(data))
	return err
}

func (r *run) dockerRmi(ctx context.Context, d *plan.DockerCommand, w io.Writer) error {
	force := d.Bool("--force")
	for _, ref := range d.Operands {
		if !r.scope.owns(ref) {
			// Only what the run created: other images are shared.
			return errNoSuchImage(ref)
		}
		if err := r.d.RemoveImage(ctx, ref, force); err != nil {
			return err
		}
		r.scope.forget(ref)
		fmt.Fprintf(w, "Untagged: %s\n", ref)
	}
	return nil
}

// dockerLogin verifies the credential against the registry and adds it to
// the run's logins (used by later pulls, pushes and builds, and written to
// the steps' config.json).
func (r *run) dockerLogin(ctx context.Context, d *plan.DockerCommand, w io.Writer) error {
	server := dockerHub
	if len(d.Operands) > 0 {
		server = d.Operands[0]
	}
	user, _ := d.Flag("--username")
	pass, _ := d.Flag("--password")
	if user == "" || pass == "" {
		return errors.New("docker login needs -u USER and -p PASSWORD in a task step")
	}
	host := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(server, "https://"), "http://"), "/")
	c := Credential{Registry: host, Username: user, Password: pass}
	r.log.mask(credentialSecrets(c)...)
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := pingRegistry(lctx, r.e.remote, c); err != nil {
		return fmt.Errorf("login to %s: %w", host, err)
	}
	r.logins.set(c)
	if err := r.writeDockerConfig(ctx); err != nil {
		return err
	}
	fmt.Fprintln(w, "Login Succeeded")
	return nil
}

func (r *run) dockerLogout(ctx context.Context, d *plan.DockerCommand, w io.Writer) error {
	server := dockerHub
	if len(d.Operands) > 0 {
		server = d.Operands[0]
	}
	if !r.logins.remove(server) {
		fmt.Fprintf(w, "Not logged in to %s\n", server)
		return nil
	}
	if err := r.writeDockerConfig(ctx); err != nil {
		return err
	}
	fmt.Fprintf(w, "Removing login credentials for %s\n", server)
	return nil
}

// formatEach prints each item with a Go template, one line each, as
// docker's --format does.
func formatEach[T any](w io.Writer, command, format string, funcs template.FuncMap, items []T) error {
	tmpl, err := template.New("format").Funcs(funcs).Parse(format)
	if err != nil {
		return fmt.Errorf("%s --format: %w", command, err)
	}
	for _, it := range items {
		if err := tmpl.Execute(w, it); err != nil {
			return fmt.Errorf("%s --format: %w", command, err)
		}
		fmt.Fprintln(w)
	}
	return nil
}
