// Package standin builds local stand-ins for the public images the ACR
// Tasks walkthrough uses, for tests and for `gantry demo`: there is no route
// to a public registry, so images such as node:15-alpine are made FROM
// scratch with Debian's static busybox.
//
// They are stand-ins, not the real thing: NodeImage's `node` is a shell
// script that serves a server.js-style app as a static page with busybox
// httpd, and its `npm` does nothing. They are just enough for the sample
// Dockerfiles and task files of the tutorial to run unchanged:
//
//	hello-world:  RUN cd /src && npm install ... CMD ["node", "/src/server.js"]
//	import gate:  CMD ./test.sh  (sh, echo -e, tr)
//
// Images are built once per engine and content, found again by their own
// tag (gantry-standin/<name>:<content hash>, labelled LabelStandin), and
// tagged as asked.
package standin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"sync"

	"github.com/gantryhq/gantry/internal/docker"
)

// LabelStandin marks stand-in images; its value names the image and the
// hash of its content ("node-<hash>").
const LabelStandin = "io.gantry.standin"

// NodeVersion is the NODE_VERSION of the node stand-in (node:15-alpine's).
const NodeVersion = "15.14.0"

// ErrNoBusybox is returned when no static busybox can be found.
var ErrNoBusybox = errors.New("static busybox not found (install busybox-static)")

// Option configures the builders.
type Option func(*options)

type options struct {
	busybox string
}

// WithBusybox sets the static busybox binary the images are made from
// (default: /bin/busybox, /usr/bin/busybox or busybox on PATH).
func WithBusybox(path string) Option { return func(o *options) { o.busybox = path } }

const nodeDockerfile = `FROM scratch
COPY busybox /bin/busybox
COPY passwd group /etc/
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin && mkdir -p -m 1777 /tmp && mkdir -p /usr/local/bin /home/node && chown 1000:1000 /home/node"]
COPY node npm /usr/local/bin/
COPY os-release /etc/os-release
COPY installed /lib/apk/db/installed
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin NODE_VERSION=` + NodeVersion + ` YARN_VERSION=1.22.5
CMD ["node"]
`

// alpineRelease and apkInstalled make the stand-in what a scanner sees in
// node:15-alpine: Alpine 3.13 with its apk database (the packages the real
// image carries, in apk's installed-database format).
const alpineRelease = `NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.13.5
PRETTY_NAME="Alpine Linux v3.13"
HOME_URL="https://alpinelinux.org/"
BUG_REPORT_URL="https://bugs.alpinelinux.org/"
`

const apkInstalled = `P:musl
V:1.2.2-r1
A:x86_64
S:383189
I:622592
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl

P:busybox
V:1.32.1-r6
A:x86_64
S:496867
I:946176
T:Size optimized toolbox of many common UNIX utilities
U:https://busybox.net/
L:GPL-2.0-only
o:busybox
D:so:libc.musl-x86_64.so.1

P:libgcc
V:10.2.1_pre1-r3
A:x86_64
S:43286
I:114688
T:GNU C compiler runtime libraries
U:https://gcc.gnu.org
L:GPL-2.0-or-later LGPL-2.1-or-later
o:gcc

P:libstdc++
V:10.2.1_pre1-r3
A:x86_64
S:488474
I:1675264
T:GNU C++ standard runtime library
U:https://gcc.gnu.org
L:GPL-2.0-or-later LGPL-2.1-or-later
o:gcc

`

const (
	passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nnode:x:1000:1000:node:/home/node:/bin/sh\n"
	group  = "root:x:0:\nnogroup:x:65534:\nnode:x:1000:\n"
)

// nodeScript is the stand-in for node. `node <app.js>` serves an HTTP app
// on ${PORT:-80} when the file creates a server: the hello-world sample's
// page (background color, version, host name) or the base-image-update
// sample's text. Environment variables that are unset show as "undefined",
// as process.env does.
const nodeScript = `#!/bin/sh
# gantry stand-in for node (not Node.js): serves server.js-style apps with busybox httpd.
case "$1" in
-v|--version) echo "v${NODE_VERSION:-` + NodeVersion + `}"; exit 0 ;;
"") echo "node (gantry stand-in): no REPL; run node <app.js>" >&2; exit 1 ;;
esac
app="$1"
if [ ! -f "$app" ]; then
	echo "Error: Cannot find module '$app'" >&2
	exit 1
fi
if ! grep -q createServer "$app"; then
	echo "node (gantry stand-in): $app starts no HTTP server; nothing to do"
	exit 0
fi
port="${PORT:-80}"
www="$(mktemp -d)"
if grep -q "Background Color" "$app"; then
	cat > "$www/index.html" <<EOF
<style type="text/css">body {background-color:${BACKGROUND_COLOR-undefined};}</style><h1>Azure Container Registry Tasks</h1><h3>Enabling OS & Framework Patching</h3><a href="https://aka.ms/acr/tasks">https://aka.ms/acr/tasks</a></p><p><b>Version:</b> ${NODE_VERSION-undefined}</p><p><b>Background Color:</b> ${BACKGROUND_COLOR-undefined}</p><p><b>HostName:</b> $(hostname)</p>
EOF
else
	printf 'Hello World\nVersion: %s\n' "${NODE_VERSION-undefined}" > "$www/index.html"
fi
echo "Server running at http://localhost:$port"
exec httpd -f -p "$port" -h "$www"
`

const npmScript = `#!/bin/sh
# gantry stand-in for npm: installs nothing.
echo "npm (gantry stand-in): would run 'npm $*' in $(pwd); nothing installed"
`

// mu serializes the builds of a process.
var mu sync.Mutex

// NodeImage makes sure the engine has the node:15-alpine stand-in, tags it
// tag when tag is not empty (e.g. "node:15-alpine"), and returns tag, or
// the stand-in's own tag (gantry-standin/node:<content hash>) when tag is
// empty. The image is built once per engine and content; later calls (and
// processes) find it by its own tag.
func NodeImage(ctx context.Context, c *docker.Client, tag string, opts ...Option) (string, error) {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	bb := o.busybox
	if bb == "" {
		bb = FindBusybox()
	}
	if bb == "" {
		return "", ErrNoBusybox
	}
	bin, err := os.ReadFile(bb)
	if err != nil {
		return "", fmt.Errorf("node stand-in: %w", err)
	}
	files := map[string]string{
		"Dockerfile": nodeDockerfile, "busybox": string(bin), "passwd": passwd, "group": group,
		"node": nodeScript, "npm": npmScript, "os-release": alpineRelease, "installed": apkInstalled,
	}
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(files)) {
		fmt.Fprintf(h, "%s %d\n%s", k, len(files[k]), files[k])
	}
	sum := hex.EncodeToString(h.Sum(nil))[:16]
	own := "gantry-standin/node:" + sum
	if err := ensure(ctx, c, own, "node-"+sum, files); err != nil {
		return "", fmt.Errorf("node stand-in: %w", err)
	}
	if tag == "" {
		return own, nil
	}
	if err := c.TagImage(ctx, own, tag); err != nil {
		return "", fmt.Errorf("node stand-in: %w", err)
	}
	return tag, nil
}

// ensure builds the image own (labelled LabelStandin=label) unless the
// engine has it. It looks the image up by its tag, not its label: images
// built FROM a stand-in inherit the label.
func ensure(ctx context.Context, c *docker.Client, own, label string, files map[string]string) error {
	mu.Lock()
	defer mu.Unlock()
	if _, err := c.InspectImage(ctx, own); err == nil {
		return nil
	} else if !errors.Is(err, docker.ErrNotFound) {
		return err
	}
	var ctxTar bytes.Buffer
	if err := docker.TarFiles(&ctxTar, files); err != nil {
		return err
	}
	var out bytes.Buffer
	_, err := c.BuildImage(ctx, &ctxTar, docker.BuildOptions{
		Tags:        []string{own},
		Labels:      map[string]string{LabelStandin: label},
		NetworkMode: "host",
	}, &out)
	if err != nil {
		return fmt.Errorf("building: %w\n%s", err, out.String())
	}
	return nil
}

// Push pushes the local image src as dst (registry/repository:tag) with
// the given credentials and returns the pushed digest. The dst tag is
// removed from the engine afterwards, so that the engine's only copy of
// dst is what it pulls from the registry.
func Push(ctx context.Context, c *docker.Client, src, dst string, auth *docker.AuthConfig) (string, error) {
	if err := c.TagImage(ctx, src, dst); err != nil {
		return "", err
	}
	digest, err := c.PushImage(ctx, dst, auth, io.Discard)
	if rerr := c.RemoveImage(context.WithoutCancel(ctx), dst, false); rerr != nil && !errors.Is(rerr, docker.ErrNotFound) && err == nil {
		err = rerr
	}
	if err != nil {
		return "", err
	}
	return digest, nil
}

// FindBusybox returns the path of Debian's static busybox (the base of
// every locally built image), or "" when it is not installed.
func FindBusybox() string {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("busybox"); err == nil {
		return p
	}
	return ""
}
