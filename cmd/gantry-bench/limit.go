package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// limitServer is this machine's limit for a blob store, measured in the
// same run: it only streams an upload to a file while hashing it, checks
// the digest and renames the file into place, and serves files back with
// sendfile. No authentication, no metadata, no fsync. Manifests are kept
// in memory so that the workload runs through; their figures mean nothing.
type limitServer struct {
	dir string
	srv *http.Server
	url string
	seq atomic.Int64

	mu        sync.RWMutex
	manifests map[string][]byte
}

// startLimit starts the limit server, over TLS with tc when it is not nil
// (files are then served through the TLS connection: no sendfile).
func startLimit(tc *tls.Config) (*limitServer, error) {
	dir, err := os.MkdirTemp("", "gantry-bench-limit-")
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &limitServer{dir: dir, url: "http://" + l.Addr().String(), manifests: map[string][]byte{}}
	if tc != nil {
		l = tls.NewListener(l, tc)
		s.url = "https://" + l.Addr().String()
	}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "gantry-bench: limit server:", err)
		}
	}()
	return s, nil
}

func (s *limitServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = s.srv.Shutdown(ctx)
	cancel()
	os.RemoveAll(s.dir)
}

func (s *limitServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(p, "/blobs/uploads/"):
		w.Header().Set("Location", fmt.Sprintf("/upload/%d", s.seq.Add(1)))
		w.WriteHeader(http.StatusAccepted)
	case r.Method == http.MethodPut && strings.HasPrefix(p, "/upload/"):
		s.upload(w, r)
	case strings.Contains(p, "/blobs/sha256:"):
		hexd := p[strings.LastIndex(p, ":")+1:]
		f, err := os.Open(filepath.Join(s.dir, hexd))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", time.Time{}, f)
	case strings.Contains(p, "/manifests/"):
		s.manifest(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *limitServer) upload(w http.ResponseWriter, r *http.Request) {
	want := strings.TrimPrefix(r.URL.Query().Get("digest"), "sha256:")
	tmp, err := os.CreateTemp(s.dir, "upload-")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), r.Body)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil && hex.EncodeToString(h.Sum(nil)) != want {
		err = errors.New("digest mismatch")
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(s.dir, want))
	}
	if err != nil {
		os.Remove(tmp.Name())
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

func (s *limitServer) manifest(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPut:
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.manifests[r.URL.Path] = b
		s.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	case http.MethodGet, http.MethodHead:
		s.mu.RLock()
		b, ok := s.manifests[r.URL.Path]
		s.mu.RUnlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}
