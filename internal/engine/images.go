package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/standin"
	"github.com/gantryhq/gantry/internal/taskfile"
)

// helperImage is the image of the setup container: FROM scratch with no
// files; its containers are created (to mount the run's volumes for
// copying) and never started.
const helperImage = "gantry-helper:1"

// LabelCLI is the label of the gantry CLI image; its value is the hash of
// the image's content, which is also the image's tag.
const LabelCLI = "io.gantry.cli"

const helperDockerfile = "FROM scratch\nLABEL io.gantry.helper=1\nCMD [\"/none\"]\n"

// cliDockerfile builds the gantry CLI image: busybox as the shell and the
// gantry binary as the entrypoint, also installed as az (the binary runs
// its Azure CLI subset when called by that name).
const cliDockerfile = `FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin && mkdir -p -m 1777 /tmp"]
COPY gantry /usr/local/bin/gantry
RUN ["/bin/busybox", "ln", "-s", "gantry", "/usr/local/bin/az"]
ENV PATH=/usr/local/bin:/usr/bin:/bin
ENTRYPOINT ["gantry"]
`

// azDockerfile makes the az image from the gantry CLI image (%s): the same
// files, with az as the entrypoint.
const azDockerfile = "FROM %s\nENTRYPOINT [\"az\"]\n"

// ensureHelper makes sure the helper image exists on the engine.
func (e *Engine) ensureHelper(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.helper {
		return nil
	}
	if _, err := e.d.InspectImage(ctx, helperImage); err == nil {
		e.helper = true
		return nil
	} else if !errors.Is(err, docker.ErrNotFound) {
		return err
	}
	var buf bytes.Buffer
	if err := docker.TarFiles(&buf, map[string]string{"Dockerfile": helperDockerfile}); err != nil {
		return err
	}
	if _, err := e.d.BuildImage(ctx, &buf, docker.BuildOptions{Tags: []string{helperImage}, NetworkMode: "none"}, nil); err != nil {
		return fmt.Errorf("building the helper image: %w", err)
	}
	e.helper = true
	return nil
}

// cliAlias is the image the gantry alias names.
func (e *Engine) cliAlias() string { return e.imageAliases()["gantry"] }

// azAlias is the image the az alias names.
func (e *Engine) azAlias() string { return e.imageAliases()["az"] }

// EnsureAzImage builds the az image, <az repository>:<the CLI image's
// hash>, once per process, and returns its image ID: the gantry CLI image
// with az (gantry's Azure CLI subset) as its entrypoint. Steps run it by ID,
// so a tag replaced on the engine changes nothing. Without a gantry binary
// it returns taskfile.AzImage unchecked.
func (e *Engine) EnsureAzImage(ctx context.Context) (string, error) {
	if _, err := e.EnsureCLIImage(ctx); err != nil || e.gantry == "" {
		if e.gantry == "" {
			return taskfile.AzImage, nil
		}
		return "", err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.azID != "" && e.present(ctx, e.azID) {
		return e.azID, nil
	}
	_, sum, _ := strings.Cut(e.cliImage, ":")
	tag := e.azRepo + ":" + sum
	var buf bytes.Buffer
	var out bytes.Buffer
	// FROM the CLI image's ID: the tag could have been replaced.
	df := fmt.Sprintf(azDockerfile, e.cliID)
	id, err := rebuildVanished(func() (string, error) {
		buf.Reset()
		out.Reset()
		if err := docker.TarFiles(&buf, map[string]string{"Dockerfile": df}); err != nil {
			return "", err
		}
		return e.d.BuildImage(ctx, &buf, docker.BuildOptions{
			Tags: []string{tag}, Labels: map[string]string{LabelCLI: sum}, NetworkMode: "none",
		}, &out)
	})
	if err != nil {
		return "", fmt.Errorf("building the az image: %w\n%s", engineErr(err), out.String())
	}
	e.log.InfoContext(ctx, "built the az image", "image", tag, "id", id)
	e.azImage, e.azID = tag, id
	e.pruneCLIImages(ctx, e.azRepo, tag)
	return id, nil
}

// present reports whether the engine still holds the image id (an
// operator may have removed it; what an ID names cannot have changed).
func (e *Engine) present(ctx context.Context, id string) bool {
	_, err := e.d.InspectImage(ctx, id)
	return err == nil
}

// EnsureCLIImage builds the gantry CLI image, <repository>:<content hash>,
// FROM scratch with busybox (/bin, installed as applets) and the gantry
// binary at /usr/local/bin/gantry as the entrypoint, and returns its image
// ID. It is built once per process (the engine's layer cache makes a
// rebuild of unchanged content quick), never taken from the engine by its
// tag, which a task could have replaced; steps run it by ID. Without a
// gantry binary (WithGantryBinary) it returns taskfile.GantryImage
// unchecked. Execute calls it on first use; a server may call it at
// start-up.
func (e *Engine) EnsureCLIImage(ctx context.Context) (string, error) {
	if e.gantry == "" {
		return taskfile.GantryImage, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cliID != "" && e.present(ctx, e.cliID) {
		return e.cliID, nil
	}
	busybox := e.busybox
	if busybox == "" {
		busybox = standin.FindBusybox()
	}
	if busybox == "" {
		return "", fmt.Errorf("building the gantry CLI image: no static busybox found (install busybox-static)")
	}
	for _, p := range []string{e.gantry, busybox} {
		if err := checkStatic(p); err != nil {
			return "", fmt.Errorf("building the gantry CLI image: %w", err)
		}
	}
	h := sha256.New()
	io.WriteString(h, cliDockerfile)
	for _, p := range []string{busybox, e.gantry} {
		f, err := os.Open(p)
		if err != nil {
			return "", fmt.Errorf("building the gantry CLI image: %w", err)
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("building the gantry CLI image: %w", err)
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))[:16]
	tag := e.cliRepo + ":" + sum
	var out bytes.Buffer
	id, err := rebuildVanished(func() (string, error) {
		out.Reset()
		pr, pw := io.Pipe()
		go func() {
			pw.CloseWithError(tarHostFiles(pw, map[string]string{"busybox": busybox, "gantry": e.gantry}, cliDockerfile))
		}()
		id, err := e.d.BuildImage(ctx, pr, docker.BuildOptions{
			Tags:        []string{tag},
			Labels:      map[string]string{LabelCLI: sum},
			NetworkMode: "none",
		}, &out)
		pr.CloseWithError(err)
		return id, err
	})
	if err != nil {
		return "", fmt.Errorf("building the gantry CLI image: %w\n%s", engineErr(err), out.String())
	}
	e.log.InfoContext(ctx, "built the gantry CLI image", "image", tag, "id", id)
	e.cliImage, e.cliID = tag, id
	e.azID = "" // FROM the CLI image: rebuilt on its next use
	e.pruneCLIImages(ctx, e.cliRepo, tag)
	return id, nil
}

// rebuildVanished runs build, and runs it again (twice at most) when the
// engine reports an image not found: the CLI images are built FROM scratch
// or FROM an image this process holds by ID, so a missing image is a cached
// step another client removed while the build used it (another gantry
// process pruning its old CLI images, or an operator's prune).
func rebuildVanished(build func() (string, error)) (string, error) {
	var err error
	for range 3 {
		var id string
		if id, err = build(); !errors.Is(err, docker.ErrNotFound) {
			return id, err
		}
	}
	return "", err
}

// pruneCLIImages removes the CLI (or az) images of earlier binaries (repo,
// other tags). Images that containers still use are kept.
func (e *Engine) pruneCLIImages(ctx context.Context, repo, keep string) {
	list, err := e.d.ListImages(ctx, docker.ListImagesOptions{Labels: []string{LabelCLI}})
	if err != nil {
		return
	}
	for _, im := range list {
		for _, t := range im.RepoTags {
			if t == keep || !strings.HasPrefix(t, repo+":") {
				continue
			}
			if err := e.d.RemoveImage(ctx, t, false); err != nil && !errors.Is(err, docker.ErrNotFound) {
				e.log.DebugContext(ctx, "keeping an old gantry CLI image", "image", t, "err", err)
			}
		}
	}
}

// tarHostFiles writes a build context: a Dockerfile and host files (mode
// 0755) under the given names.
func tarHostFiles(w io.Writer, files map[string]string, dockerfile string) error {
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := io.WriteString(tw, dockerfile); err != nil {
		return err
	}
	for name, p := range files {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return err
		}
		err = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: fi.Size(), Typeflag: tar.TypeReg, ModTime: fi.ModTime()})
		if err == nil {
			_, err = io.Copy(tw, io.LimitReader(f, fi.Size()))
		}
		f.Close()
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

// checkStatic refuses a binary that needs a dynamic loader: the CLI image
// has no libc.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; the gantry CLI image needs a static binary (CGO_ENABLED=0 go build)", path)
		}
	}
	return nil
}
