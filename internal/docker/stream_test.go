package docker

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func frame(stream byte, s string) []byte {
	hdr := make([]byte, 8, 8+len(s))
	hdr[0] = stream
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(s)))
	return append(hdr, s...)
}

func TestRenderMessages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		out     string
		aux     []string
		wantErr string
		wantIs  error
	}{
		{
			name: "build",
			in: `{"stream":"Step 1/2 : FROM scratch\n"}
{"stream":" ---\u003e \n"}
{"stream":"Step 2/2 : RUN echo hi"}{"stream":"\n"}
{"stream":"hi\n"}
{"aux":{"ID":"sha256:abc"}}
{"stream":"Successfully built abc\n"}
`,
			out: "Step 1/2 : FROM scratch\n ---> \nStep 2/2 : RUN echo hi\nhi\nSuccessfully built abc\n",
			aux: []string{`{"ID":"sha256:abc"}`},
		},
		{
			name: "pull progress is left out",
			in: `{"status":"Pulling from team/app","id":"1"}
{"status":"Pulling fs layer","progressDetail":{},"id":"a1"}
{"status":"Downloading","progressDetail":{"current":10,"total":100},"progress":"[=\u003e  ] 10B/100B","id":"a1"}
{"status":"Download complete","progressDetail":{},"id":"a1"}
{"status":"Digest: sha256:1234"}
{"status":"Status: Downloaded newer image for h/team/app:1"}
`,
			out: "1: Pulling from team/app\na1: Pulling fs layer\na1: Download complete\nDigest: sha256:1234\nStatus: Downloaded newer image for h/team/app:1\n",
		},
		{
			name: "error mid-stream",
			in: `{"stream":"Step 1/1 : RUN exit 3\n"}
{"stream":" ---\u003e Running in 0123\n"}
{"errorDetail":{"code":3,"message":"The command '/bin/sh -c exit 3' returned a non-zero code: 3"},"error":"The command '/bin/sh -c exit 3' returned a non-zero code: 3"}
{"stream":"never shown\n"}
`,
			out:     "Step 1/1 : RUN exit 3\n ---> Running in 0123\n",
			wantErr: "The command '/bin/sh -c exit 3' returned a non-zero code: 3",
		},
		{
			name:    "error without detail",
			in:      `{"error":"unauthorized: authentication required"}`,
			wantErr: "unauthorized: authentication required",
			wantIs:  ErrUnauthorized,
		},
		{
			name: "a cached step removed during the build",
			in: `{"stream":"Step 2/8 : COPY busybox /bin/busybox\n"}
{"errorDetail":{"message":"unable to find image \"sha256:2d77\""},"error":"unable to find image \"sha256:2d77\""}
`,
			out:     "Step 2/8 : COPY busybox /bin/busybox\n",
			wantErr: "unable to find image",
			wantIs:  ErrNotFound,
		},
		{
			name:    "garbage",
			in:      `{"stream":"ok\n"} not json`,
			out:     "ok\n",
			wantErr: "reading the engine's message stream",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			var aux []string
			ctx := context.Background()
			err := render(ctx, messages(ctx, io.NopCloser(strings.NewReader(tt.in))), &out, func(raw json.RawMessage) {
				aux = append(aux, string(raw))
			})
			if tt.wantErr == "" && err != nil {
				t.Fatalf("err = %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("err = %v, want it to match %v", err, tt.wantIs)
			}
			if out.String() != tt.out {
				t.Errorf("out = %q, want %q", out.String(), tt.out)
			}
			if strings.Join(aux, "|") != strings.Join(tt.aux, "|") {
				t.Errorf("aux = %q, want %q", aux, tt.aux)
			}
		})
	}
}

// signalWriter records writes and signals the first one.
type signalWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	first chan struct{}
	once  sync.Once
}

func newSignalWriter() *signalWriter { return &signalWriter{first: make(chan struct{})} }

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.once.Do(func() { close(w.first) })
	return w.buf.Write(p)
}

func (w *signalWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestStreamsAreLiveAndCancellable checks that output reaches the writer
// while the engine is still streaming, and that cancelling ctx ends the
// call promptly with ctx's error.
func TestStreamsAreLiveAndCancellable(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	c := newFakeEngine(t, "1.12", "1.41", func(w http.ResponseWriter, r *http.Request) {
		f := w.(http.Flusher)
		switch {
		case strings.HasSuffix(r.URL.Path, "/logs"):
			w.Write(frame(1, "first\n"))
		case strings.HasSuffix(r.URL.Path, "/build"):
			io.Copy(io.Discard, r.Body)
			io.WriteString(w, `{"stream":"Step 1/1 : RUN sleep\n"}`)
		case strings.HasSuffix(r.URL.Path, "/push"):
			io.WriteString(w, `{"status":"The push refers to repository [h/a]"}`)
		}
		f.Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}).client(t)
	t.Cleanup(func() { close(release) }) // after the parallel subtests
	calls := map[string]func(ctx context.Context, out io.Writer) error{
		"logs": func(ctx context.Context, out io.Writer) error {
			return c.ContainerLogs(ctx, "x", LogsOptions{Follow: true}, out, nil)
		},
		"build": func(ctx context.Context, out io.Writer) error {
			_, err := c.BuildImage(ctx, strings.NewReader("tar"), BuildOptions{}, out)
			return err
		},
		"push": func(ctx context.Context, out io.Writer) error {
			_, err := c.PushImage(ctx, "h/a:1", nil, out)
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			out := newSignalWriter()
			done := make(chan error, 1)
			go func() { done <- call(ctx, out) }()
			select {
			case <-out.first:
			case <-time.After(5 * time.Second):
				t.Fatal("no output while the stream is open")
			}
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("err = %v, want context.Canceled", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("call did not return after cancel")
			}
			if out.String() == "" {
				t.Error("no output")
			}
		})
	}
}

func TestPushDigestAndLogsDemux(t *testing.T) {
	t.Parallel()
	var gotAuth, gotTag, gotPath string
	c := newFakeEngine(t, "1.12", "1.41", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/push"):
			gotAuth, gotTag, gotPath = r.Header.Get("X-Registry-Auth"), r.URL.Query().Get("tag"), r.URL.Path
			io.WriteString(w, `{"status":"The push refers to repository [127.0.0.1:5000/team/app]"}
{"status":"Pushed","progressDetail":{},"id":"5b0d"}
{"status":"v1: digest: sha256:feed size: 527"}
{"progressDetail":{},"aux":{"Tag":"v1","Digest":"sha256:feed","Size":527}}
`)
		case strings.HasSuffix(r.URL.Path, "/logs"):
			if r.URL.Query().Get("stdout") != "1" || r.URL.Query().Get("stderr") != "1" || r.URL.Query().Get("tail") != "5" {
				http.Error(w, `{"message":"bad query"}`, 400)
				return
			}
			w.Write(frame(1, "a\n"))
			w.Write(frame(2, "b\n"))
		}
	}).client(t)
	var out bytes.Buffer
	digest, err := c.PushImage(context.Background(), "127.0.0.1:5000/team/app:v1", &AuthConfig{Username: "u", Password: "p"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if digest != "sha256:feed" {
		t.Errorf("digest = %q", digest)
	}
	if gotPath != "/images/127.0.0.1:5000/team/app/push" || gotTag != "v1" {
		t.Errorf("path %q tag %q", gotPath, gotTag)
	}
	// base64url of {"username":"u","password":"p"}
	if gotAuth != "eyJ1c2VybmFtZSI6InUiLCJwYXNzd29yZCI6InAifQ==" {
		t.Errorf("X-Registry-Auth = %q", gotAuth)
	}
	if !strings.Contains(out.String(), "v1: digest: sha256:feed size: 527\n") || strings.Contains(out.String(), "aux") {
		t.Errorf("out = %q", out.String())
	}

	var so, se bytes.Buffer
	if err := c.ContainerLogs(context.Background(), "x", LogsOptions{Tail: 5}, &so, &se); err != nil {
		t.Fatal(err)
	}
	if so.String() != "a\n" || se.String() != "b\n" {
		t.Errorf("stdout %q stderr %q", so.String(), se.String())
	}
}
