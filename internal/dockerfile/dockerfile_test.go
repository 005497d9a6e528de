package dockerfile

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/oci"
)

func TestScan(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		src       string
		args      map[string]string
		target    string
		opts      []Option
		runtime   string
		buildtime []string
		images    []string // Stage.Image of every FROM
		err       string
	}{
		{
			name:    "seed sample with build arg",
			src:     "ARG REGISTRY_FROM_URL=\nFROM ${REGISTRY_FROM_URL}node:15-alpine\nENV NODE_VERSION 15-alpine\n",
			args:    map[string]string{"REGISTRY_FROM_URL": "127.0.0.1:5000/"},
			runtime: "127.0.0.1:5000/node:15-alpine",
			images:  []string{"127.0.0.1:5000/node:15-alpine"},
		},
		{
			name:    "seed sample without build arg falls back to the default",
			src:     "ARG REGISTRY_FROM_URL=\nFROM ${REGISTRY_FROM_URL}node:15-alpine\n",
			runtime: "docker.io/library/node:15-alpine",
		},
		{
			name:    "base-image-update app Dockerfile",
			src:     "ARG REGISTRY_NAME\nFROM ${REGISTRY_NAME}/baseimages/node:15-alpine\n\nCOPY . /src\n",
			args:    map[string]string{"REGISTRY_NAME": "127.0.0.1:5002"},
			runtime: "127.0.0.1:5002/baseimages/node:15-alpine",
		},
		{
			name:    "build arg for an undeclared ARG is not used",
			src:     "FROM ${REG}node\n",
			args:    map[string]string{"REG": "r.io/"},
			runtime: "docker.io/library/node:latest",
		},
		{
			name:    "dollar forms and defaults",
			src:     "ARG A=alpine\nARG B\nARG C=3.19\nFROM $A:${C}\nFROM ${B:-busybox}:${MISSING-1.36}\nFROM ${A:+debian}:12\n",
			runtime: "docker.io/library/debian:12",
			buildtime: []string{
				"docker.io/library/alpine:3.19",
				"docker.io/library/busybox:1.36",
			},
		},
		{
			name:    "ARG referring to an earlier ARG; later default wins",
			src:     "ARG REG=r.io\nARG IMG=${REG}/app\nARG TAG=1\nARG TAG=2\nFROM $IMG:$TAG\n",
			runtime: "r.io/app:2",
		},
		{
			name:    "build arg wins over a default",
			src:     "ARG TAG=1\nFROM node:$TAG\n",
			args:    map[string]string{"TAG": "20"},
			runtime: "docker.io/library/node:20",
		},
		{
			name:    "multiple ARGs on one line with quotes",
			src:     "ARG A=\"node\" B='20'\nFROM ${A}:${B}\n",
			runtime: "docker.io/library/node:20",
		},
		{
			name:    "ARG after FROM is not visible to later FROM",
			src:     "FROM alpine\nARG X=busybox\nFROM ${X:-debian}\n",
			runtime: "docker.io/library/debian:latest",
			buildtime: []string{
				"docker.io/library/alpine:latest",
			},
		},
		{
			name: "multi-stage with aliases",
			src: `FROM golang:1.22 AS build
RUN go build -o /app .
FROM build as test
RUN go test ./...
FROM gcr.io/distroless/static:nonroot
COPY --from=build /app /app
`,
			runtime:   "gcr.io/distroless/static:nonroot",
			buildtime: []string{"docker.io/library/golang:1.22"},
			images:    []string{"golang:1.22", "build", "gcr.io/distroless/static:nonroot"},
		},
		{
			name:      "final stage built from a stage",
			src:       "FROM node:20 AS base\nFROM base AS deps\nFROM deps\n",
			runtime:   "docker.io/library/node:20",
			buildtime: nil,
		},
		{
			name:    "stage names are case-insensitive",
			src:     "FROM node:20 AS Base\nFROM BASE\n",
			runtime: "docker.io/library/node:20",
		},
		{
			name:      "target stage",
			src:       "FROM golang:1.22 AS build\nFROM alpine:3 AS runtime\nFROM busybox AS debug\n",
			target:    "runtime",
			runtime:   "docker.io/library/alpine:3",
			buildtime: []string{"docker.io/library/golang:1.22"},
		},
		{
			name:    "target is case-insensitive",
			src:     "FROM golang:1.22 AS build\nFROM alpine:3\n",
			target:  "BUILD",
			runtime: "docker.io/library/golang:1.22",
		},
		{
			name:    "unknown target",
			src:     "FROM alpine\n",
			target:  "nope",
			err:     `target stage not found: "nope"`,
			runtime: "",
		},
		{
			name:      "scratch is no image",
			src:       "FROM golang:1.22 AS build\nFROM scratch\nCOPY --from=build /app /app\n",
			runtime:   "",
			buildtime: []string{"docker.io/library/golang:1.22"},
		},
		{
			name:      "duplicates collapse after normalization",
			src:       "FROM golang AS a\nFROM library/golang:latest AS b\nFROM docker.io/library/golang AS c\nFROM alpine\n",
			runtime:   "docker.io/library/alpine:latest",
			buildtime: []string{"docker.io/library/golang:latest"},
		},
		{
			name:    "runtime image also used as buildtime is reported once",
			src:     "FROM alpine AS a\nFROM alpine\n",
			runtime: "docker.io/library/alpine:latest",
		},
		{
			name:      "platform flag with automatic ARGs",
			src:       "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\nFROM --platform=${TARGETPLATFORM} alpine:${TARGETARCH}\n",
			opts:      []Option{WithPlatform("linux/arm64/v8"), WithBuildPlatform("linux/amd64")},
			runtime:   "docker.io/library/alpine:arm64",
			buildtime: []string{"docker.io/library/golang:1.22"},
		},
		{
			name:    "declaring an automatic platform ARG keeps its value",
			src:     "ARG TARGETARCH\nFROM alpine:$TARGETARCH\n",
			opts:    []Option{WithPlatform("linux/arm64")},
			runtime: "docker.io/library/alpine:arm64",
		},
		{
			name:    "continuations, comments and case-insensitive instructions",
			src:     "# a comment\nfrom \\\n  # comment inside a continuation\n\n  node:20 \\\n  as base\nFrOm base\n",
			runtime: "docker.io/library/node:20",
			images:  []string{"node:20", "base"},
		},
		{
			name:    "escape directive",
			src:     "# escape=`\n# syntax=docker/dockerfile:1\nARG V=1\nFROM node:$V `\n  AS a\nRUN echo C:\\ \nFROM a\n",
			runtime: "docker.io/library/node:1",
		},
		{
			name:    "directive after a comment is a comment",
			src:     "# hello\n# escape=`\nFROM node:1 \\\n AS a\n",
			runtime: "docker.io/library/node:1",
		},
		{
			name: "heredocs are not read as instructions",
			src: `FROM alpine AS a
RUN <<EOF
FROM evil:1
EOF
COPY <<-"END" <<OTHER /dst
	FROM evil:2
	END
FROM evil:3
OTHER
RUN cat <<EOF > /x
FROM evil:4
EOF
FROM busybox
`,
			runtime:   "docker.io/library/busybox:latest",
			buildtime: []string{"docker.io/library/alpine:latest"},
		},
		{
			name:    "BOM and CRLF",
			src:     "\xEF\xBB\xBFARG T=2\r\nFROM node:$T\r\n",
			runtime: "docker.io/library/node:2",
		},
		{
			name:    "quoted image",
			src:     "ARG T=2\nFROM \"node:$T\"\n",
			runtime: "docker.io/library/node:2",
		},
		{name: "no FROM", src: "# nothing\nRUN true\n", err: "no FROM instruction"},
		{name: "FROM without image", src: "FROM\n", err: "Dockerfile line 1: FROM requires an image"},
		{name: "FROM with extra words", src: "FROM a b\n", err: "cannot understand"},
		{name: "unknown FROM flag", src: "FROM --foo=bar alpine\n", err: `unknown flag "--foo=bar"`},
		{name: "empty after substitution", src: "ARG BASE\nFROM $BASE\n", err: "Dockerfile line 2: FROM $BASE: the image name is empty after ARG substitution"},
		{name: "required variable", src: "FROM ${BASE:?required}\n", err: "BASE: required"},
		{name: "invalid reference", src: "FROM Node:1\n", err: "Dockerfile line 1: FROM Node:1: invalid image reference: \"Node:1\": repository name must be lowercase"},
		{name: "duplicate stage", src: "FROM a AS x\nFROM b AS X\n", err: `duplicate stage name "x" (first defined at line 1)`},
		{name: "unterminated heredoc", src: "FROM a\nRUN <<EOF\necho\n", err: `Dockerfile line 2: unterminated heredoc "EOF"`},
		{name: "bad escape", src: "# escape=x\nFROM a\n", err: "invalid escape token"},
		{name: "bad substitution", src: "FROM ${A/b}\n", err: "unsupported modifier"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := Scan([]byte(tt.src), tt.args, tt.target, tt.opts...)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Scan error = %v; want %q", err, tt.err)
				}
				if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTargetNotFound) {
					t.Fatalf("error %v wraps neither ErrInvalid nor ErrTargetNotFound", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Runtime != tt.runtime {
				t.Errorf("Runtime = %q; want %q", r.Runtime, tt.runtime)
			}
			if !slices.Equal(r.Buildtime, tt.buildtime) {
				t.Errorf("Buildtime = %q; want %q", r.Buildtime, tt.buildtime)
			}
			if tt.images != nil {
				var got []string
				for _, st := range r.Stages {
					got = append(got, st.Image)
				}
				if !slices.Equal(got, tt.images) {
					t.Errorf("images = %q; want %q", got, tt.images)
				}
			}
		})
	}
}

func TestScanStages(t *testing.T) {
	t.Parallel()
	src := "ARG P=linux/amd64\nFROM --platform=$P golang:1.22 AS build\nFROM build AS test\nFROM scratch\n"
	r, err := Scan([]byte(src), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []Stage{
		{Index: 0, Line: 2, Name: "build", Platform: "linux/amd64", Raw: "golang:1.22", Image: "golang:1.22", Parent: -1, Ref: "docker.io/library/golang:1.22", Origin: "docker.io/library/golang:1.22"},
		{Index: 1, Line: 3, Name: "test", Raw: "build", Image: "build", Parent: 0, Origin: "docker.io/library/golang:1.22"},
		{Index: 2, Line: 4, Raw: "scratch", Image: "scratch", Parent: -1, Scratch: true},
	}
	if !slices.Equal(r.Stages, want) {
		t.Fatalf("Stages =\n%+v\nwant\n%+v", r.Stages, want)
	}
	if r.Target != 2 || r.Runtime != "" || !slices.Equal(r.Buildtime, []string{"docker.io/library/golang:1.22"}) {
		t.Fatalf("Target %d Runtime %q Buildtime %q", r.Target, r.Runtime, r.Buildtime)
	}
}

// TestSeedDockerfiles scans the sample Dockerfiles the tutorial uses.
func TestSeedDockerfiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file    string
		args    map[string]string
		runtime string
	}{
		{"testdata/base-image-node.Dockerfile", map[string]string{"REGISTRY_FROM_URL": "127.0.0.1:5000/"}, "127.0.0.1:5000/node:15-alpine"},
		{"testdata/hello-world.Dockerfile", map[string]string{"REGISTRY_FROM_URL": "127.0.0.1:5001/"}, "127.0.0.1:5001/node:15-alpine"},
		{"testdata/import-baseimage-node.Dockerfile", map[string]string{"REGISTRY_FROM_URL": "127.0.0.1:5000/"}, "127.0.0.1:5000/node:15-alpine"},
		{"testdata/Dockerfile-app", map[string]string{"REGISTRY_NAME": "127.0.0.1:5001"}, "127.0.0.1:5001/baseimages/node:15-alpine"},
		{"testdata/Dockerfile-base", nil, "docker.io/library/node:15-alpine"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			r, err := Scan(src, tt.args, "")
			if err != nil {
				t.Fatal(err)
			}
			if r.Runtime != tt.runtime || len(r.Buildtime) != 0 {
				t.Fatalf("Runtime %q Buildtime %q; want %q and none", r.Runtime, r.Buildtime, tt.runtime)
			}
		})
	}
}

func FuzzScan(f *testing.F) {
	for _, seed := range []string{
		"FROM alpine\n",
		"ARG A=1\nFROM node:$A AS b\nFROM b\n",
		"# escape=`\nFROM a `\n AS b\n",
		"FROM --platform=$BUILDPLATFORM golang AS x\nRUN <<EOF\nFROM y\nEOF\nFROM scratch\n",
		"ARG X=${Y:-${Z:+w}}\nFROM ${X}\n",
		"from \\\n#c\n a\n",
	} {
		f.Add([]byte(seed), "")
	}
	f.Add([]byte("FROM a AS b\nFROM c\n"), "b")
	f.Fuzz(func(t *testing.T, src []byte, target string) {
		r, err := Scan(src, map[string]string{"A": "x"}, target, WithPlatform("linux/amd64"))
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTargetNotFound) {
				t.Fatalf("unexpected error type: %v", err)
			}
			return
		}
		if len(r.Stages) == 0 || r.Target < 0 || r.Target >= len(r.Stages) {
			t.Fatalf("bad result %+v", r)
		}
		check := func(ref string) {
			if ref == "" {
				return
			}
			n, err := oci.Normalize(ref)
			if err != nil || n != ref {
				t.Fatalf("dependency %q is not canonical (%q, %v)", ref, n, err)
			}
		}
		check(r.Runtime)
		for _, b := range r.Buildtime {
			check(b)
			if b == r.Runtime {
				t.Fatalf("buildtime repeats runtime %q", b)
			}
		}
		for i, st := range r.Stages {
			if st.Index != i || st.Parent >= i {
				t.Fatalf("stage %d refers to a later stage: %+v", i, st)
			}
			if st.Parent >= 0 && st.Origin != r.Stages[st.Parent].Origin {
				t.Fatalf("stage %d origin %q differs from parent's %q", i, st.Origin, r.Stages[st.Parent].Origin)
			}
		}
	})
}

// TestScanReads: COPY --from and RUN --mount from= name stages (by name or
// index) or images; the images are listed in Reads, canonical and once, and
// are not dependencies.
func TestScanReads(t *testing.T) {
	src := `ARG TOOLS=registry.example/tools:1
FROM alpine:3.19 AS build
COPY --from=0 /a /a
RUN --mount=type=cache,target=/c --mount=type=bind,from=build,target=/b true
COPY --link --from=busybox:1.36 /bin/busybox /bin/
FROM scratch
COPY --from=build /out /
COPY --from=${TOOLS} /tool /tool
RUN --mount=type=bind,from="ghcr.io/x/y@sha256:` + strings.Repeat("a", 64) + `",target=/y true
COPY --from=busybox:1.36 /x /x
COPY --chown=1:1 a b
`
	res, err := Scan([]byte(src), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"docker.io/library/busybox:1.36", "registry.example/tools:1", "ghcr.io/x/y@sha256:" + strings.Repeat("a", 64)}
	if !slices.Equal(res.Reads, want) {
		t.Errorf("Reads = %q, want %q", res.Reads, want)
	}
	if res.Runtime != "" || !slices.Equal(res.Buildtime, []string{"docker.io/library/alpine:3.19"}) {
		t.Errorf("dependencies = %q, %q", res.Runtime, res.Buildtime)
	}
	for _, bad := range []struct{ src, want string }{
		{"FROM alpine\nARG X\nCOPY --from=$X /a /a\n", "Dockerfile line 3: --from=$X is empty after ARG substitution"},
		{"FROM alpine\nCOPY --from=UPPER:Case /a /a\n", "Dockerfile line 2: --from=UPPER:Case:"},
	} {
		if _, err := Scan([]byte(bad.src), nil, ""); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: err = %v, want %q", bad.src, err, bad.want)
		}
	}
}
