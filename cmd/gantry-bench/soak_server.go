package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
	"github.com/gantryhq/gantry/internal/peer"
)

// soakServer is the gantry server a soak drives: a real `gantry server`
// process on loopback, which the soak kills and restarts.
type soakServer struct {
	cfg      soakConfig
	data     string
	logPath  string
	listen   string
	password string
	client   *client.Client
	cmd      *exec.Cmd
	exited   chan struct{}
}

func newSoakServer(cfg soakConfig) (*soakServer, error) {
	bin, err := filepath.Abs(cfg.bin)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("--gantry-bin: %w", err)
	}
	cfg.bin = bin
	listen, err := peer.FreeAddr()
	if err != nil {
		return nil, err
	}
	var pw [18]byte
	rand.Read(pw[:])
	s := &soakServer{cfg: cfg, data: filepath.Join(cfg.dir, "data"), logPath: filepath.Join(cfg.dir, "server.log"),
		listen: listen, password: hex.EncodeToString(pw[:])}
	s.client, err = client.New("http://"+listen, client.WithBasicAuth("admin", s.password),
		client.WithHTTPClient(&http.Client{Timeout: 2 * time.Minute}))
	if err != nil {
		return nil, err
	}
	return s, nil
}

// start starts the server (again, after a kill: same data, same ports) and
// waits until it answers.
func (s *soakServer) start(ctx context.Context) error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(s.cfg.bin, "server", "--data", s.data, "--listen", s.listen,
		"--gc-interval", s.cfg.gcInterval.String(), "--gc-grace", s.cfg.gcGrace.String(),
		"--upload-ttl", s.cfg.uploadTTL.String(), "--body-timeout", s.cfg.bodyTimeout.String())
	// No engine: the soak is about the registry. An unreachable engine
	// only fails runs, which the soak starts none of.
	cmd.Env = append(os.Environ(), "GANTRY_ADMIN_PASSWORD="+s.password, "DOCKER_HOST=unix://"+filepath.Join(s.cfg.dir, "no-engine.sock"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", s.cfg.bin, err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func(exited chan struct{}) {
		cmd.Wait()
		close(exited)
	}(s.exited)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := s.client.Version(ctx); err == nil {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("gantry server exited at start; see %s", s.logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("gantry server did not answer within a minute; see %s", s.logPath)
}

func (s *soakServer) pid() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// kill kills the server with SIGKILL, as a crash or the OOM killer does,
// and waits for it to be gone.
func (s *soakServer) kill() error {
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-s.exited
	return nil
}

// stop stops the server gracefully (SIGTERM), killing it if it does not
// stop within 30 seconds.
func (s *soakServer) stop() {
	if s.cmd == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.exited
	}
}

// createRegistry creates a registry on a free loopback port and returns
// its base URL.
func (s *soakServer) createRegistry(ctx context.Context, name string) (string, error) {
	addr, err := peer.FreeAddr()
	if err != nil {
		return "", err
	}
	r, err := s.client.CreateRegistry(ctx, api.CreateRegistryRequest{Name: name, Listen: addr})
	if err != nil {
		return "", fmt.Errorf("creating registry %s: %w", name, err)
	}
	return "http://" + r.LoginServer, nil
}

// gc runs a GC pass with no grace: nothing is uploading any more.
func (s *soakServer) gc(ctx context.Context) (*api.GCResult, error) {
	res, err := s.client.RunGC(ctx, api.GCRequest{Grace: "0s"})
	if err != nil {
		return nil, fmt.Errorf("final gc: %w", err)
	}
	return res, nil
}

// soakStats is what the server holds at one moment.
type soakStats struct {
	rss        int64 // resident memory, bytes
	fds        int   // open file descriptors
	goroutines int
	wal        int64 // the database's write-ahead log, bytes
	blobs      int64 // blob files, bytes
	uploads    int64 // upload files, bytes
	data       int64 // the whole data directory, bytes
}

func (s *soakServer) stats(ctx context.Context) (soakStats, error) {
	var st soakStats
	pid := s.pid()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			st.rss = kb << 10
		}
	}
	f.Close()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return st, err
	}
	st.fds = len(fds)
	if fi, err := os.Stat(filepath.Join(s.data, "gantry.db-wal")); err == nil {
		st.wal = fi.Size()
	}
	st.blobs = dirBytes(filepath.Join(s.data, "blobs"))
	st.uploads = dirBytes(filepath.Join(s.data, "uploads"))
	st.data = dirBytes(s.data)
	st.goroutines, err = s.goroutines(ctx)
	return st, err
}

// goroutines reads go_goroutines from the server's Prometheus metrics.
func (s *soakServer) goroutines(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.listen+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	req.SetBasicAuth("admin", s.password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("metrics: no go_goroutines (%s)", resp.Status)
}
