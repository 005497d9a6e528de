// Command gantry-bench measures a gantry registry against CNCF Distribution
// (Debian's docker-registry) in the same run: blob push and pull (8 MiB
// blobs, 8 concurrent clients) and small manifest PUT and GET, printing
// MB/s, requests/s and the ratios.
//
//	gantry-bench --gantry http://127.0.0.1:5001 --username admin --password ...
//
// Distribution is started on a loopback port with a temporary filesystem
// root and stopped afterwards (--distribution=false skips it). The hidden
// flag --serve ADDR serves an in-process gantry registry (no access control,
// temporary data) until interrupted, so the benchmark can run before a
// gantry server is started; --cpuprofile profiles that process.
//
// gantry-bench soak (scripts/soak.sh) is the soak test instead: a real
// gantry server under mixed traffic and abuse, killed and restarted, then
// checked; see runSoak.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

type config struct {
	gantry       string
	username     string
	password     string
	distribution bool
	distBin      string
	blobSize     int
	blobCount    int
	pullRounds   int
	concurrency  int
	duration     time.Duration
	manifestMax  int
	serve        string
	cpuProfile   string
	prefaultMiB  int64
	tls          bool
	http2        bool
	limit        bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := mainErr(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gantry-bench:", err)
		os.Exit(1)
	}
}

func mainErr(ctx context.Context, args []string, out io.Writer) error {
	if len(args) > 0 && args[0] == "soak" {
		return runSoak(ctx, args[1:], out)
	}
	if len(args) > 0 && args[0] == "scan" {
		return runScanBench(ctx, args[1:], out)
	}
	var cfg config
	fs := flag.NewFlagSet("gantry-bench", flag.ContinueOnError)
	fs.StringVar(&cfg.gantry, "gantry", "", "base URL of the gantry registry to measure (http://host:port); empty: an in-process registry")
	fs.StringVar(&cfg.username, "username", os.Getenv("GANTRY_USERNAME"), "user or token name for the gantry registry (Basic or Bearer token flow)")
	fs.StringVar(&cfg.password, "password", os.Getenv("GANTRY_PASSWORD"), "password for the gantry registry")
	fs.BoolVar(&cfg.distribution, "distribution", true, "also start and measure CNCF Distribution (docker-registry)")
	fs.StringVar(&cfg.distBin, "distribution-bin", "/usr/bin/docker-registry", "the Distribution binary")
	fs.IntVar(&cfg.blobSize, "blob-size", 8<<20, "blob size in bytes")
	fs.IntVar(&cfg.blobCount, "blobs", 96, "blobs to push (each pushed once)")
	fs.IntVar(&cfg.pullRounds, "pull-rounds", 2, "times each pushed blob is pulled")
	fs.IntVar(&cfg.concurrency, "concurrency", 8, "concurrent clients")
	fs.DurationVar(&cfg.duration, "duration", 3*time.Second, "duration of each manifest phase")
	fs.IntVar(&cfg.manifestMax, "manifests", 50000, "upper bound of manifests pushed")
	fs.StringVar(&cfg.serve, "serve", "", "")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of this process")
	fs.BoolVar(&cfg.tls, "tls", false, "measure the in-process registry over TLS (a local CA, as --tls self-signed) against itself over plain HTTP, instead of against Distribution")
	fs.BoolVar(&cfg.limit, "limit", false, "also measure this machine's limit: a minimal blob server (stream to a file while hashing, check, rename; serve files back) in the same run, and report gantry's blob push and pull as a fraction of it")
	fs.BoolVar(&cfg.http2, "http2", false, "with --tls: speak HTTP/2 to the TLS registry (one multiplexed connection) instead of HTTP/1.1")
	fs.Int64Var(&cfg.prefaultMiB, "prefault", 4096, "MiB of memory to touch and release before measuring each registry (0: measure a cold VM; see prefault.go)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: gantry-bench [flags]")
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name == "serve" {
				return // hidden
			}
			fmt.Fprintf(fs.Output(), "  --%s\t%s (default %q)\n", f.Name, f.Usage, f.DefValue)
		})
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if cfg.serve != "" {
		p, err := serveInProcess(ctx, cfg.serve)
		if err != nil {
			return err
		}
		defer p.close()
		fmt.Fprintln(out, p.url)
		<-ctx.Done()
		return nil
	}

	var targets []*target
	gantryURL := strings.TrimSuffix(cfg.gantry, "/")
	if gantryURL == "" {
		p, err := serveInProcess(ctx, "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer p.close()
		gantryURL = p.url
	}
	var tlsServer *inProcess
	if cfg.tls {
		p, err := serveInProcessTLS(ctx, "127.0.0.1:0", true)
		if err != nil {
			return err
		}
		defer p.close()
		tlsServer = p
		targets = append(targets, &target{name: "gantry-tls", base: p.url, client: newTLSClient(cfg, p)})
	}
	targets = append(targets, &target{name: "gantry", base: gantryURL, client: newClient(cfg, cfg.username, cfg.password)})
	if cfg.distribution && !cfg.tls {
		if _, err := exec.LookPath(cfg.distBin); err != nil {
			return fmt.Errorf("distribution binary: %w (use --distribution=false to skip)", err)
		}
		p, err := startDistribution(ctx, cfg.distBin)
		if err != nil {
			return err
		}
		defer p.stop()
		targets = append(targets, &target{name: "distribution", base: p.URL(), client: newClient(cfg, "", "")})
	}

	if cfg.limit {
		p, err := startLimit(nil)
		if err != nil {
			return err
		}
		defer p.close()
		targets = append(targets, &target{name: "limit", base: p.url, client: newClient(cfg, "", "")})
	}
	if cfg.limit && tlsServer != nil {
		// The machine's limit over TLS: the same minimal server, the same
		// certificate and client settings as gantry-tls.
		p, err := startLimit(tlsServer.tlsConfig)
		if err != nil {
			return err
		}
		defer p.close()
		targets = append(targets, &target{name: "limit-tls", base: p.url, client: newTLSClient(cfg, tlsServer)})
	}

	all := make([]results, len(targets))
	for i, t := range targets {
		start := time.Now()
		if err := prefault(cfg.prefaultMiB << 20); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "gantry-bench: prefaulted %d MiB in %s; measuring %s at %s\n", cfg.prefaultMiB, time.Since(start).Round(time.Millisecond), t.name, t.base)
		r, err := run(ctx, t, cfg)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		all[i] = r
	}
	report(out, cfg, targets, all)
	return nil
}

// newTLSClient is newClient trusting p's certificate: HTTP/1.1, a
// connection per concurrent client, as the plain HTTP targets; --http2
// multiplexes them over one connection.
func newTLSClient(cfg config, p *inProcess) *http.Client {
	c := newClient(cfg, "", "")
	tr := c.Transport.(*authTransport).base.(*http.Transport)
	tr.TLSClientConfig = &tls.Config{RootCAs: p.roots}
	tr.ForceAttemptHTTP2 = cfg.http2
	if !cfg.http2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return c
}

func newClient(cfg config, user, pass string) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = cfg.concurrency * 4
	tr.MaxIdleConnsPerHost = cfg.concurrency * 4
	tr.DisableCompression = true
	tr.WriteBufferSize = 256 << 10
	tr.ReadBufferSize = 256 << 10
	return &http.Client{Transport: newAuthTransport(tr, user, pass), Timeout: 5 * time.Minute}
}

func report(out io.Writer, cfg config, targets []*target, all []results) {
	fmt.Fprintf(out, "blobs: %d x %d MiB, concurrency %d; manifests: %s per phase\n\n",
		cfg.blobCount, cfg.blobSize>>20, cfg.concurrency, cfg.duration)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	header := "metric\t"
	for _, t := range targets {
		header += t.name + "\t"
	}
	if len(targets) >= 2 && !isLimit(targets[1]) {
		header += "ratio\t"
	}
	fmt.Fprintln(tw, header)
	rows := []struct {
		name string
		get  func(results) float64
	}{
		{"blob push (MB/s)", func(r results) float64 { return r.BlobPush }},
		{"blob pull (MB/s)", func(r results) float64 { return r.BlobPull }},
		{"manifest PUT (req/s)", func(r results) float64 { return r.ManifestPut }},
		{"manifest GET (req/s)", func(r results) float64 { return r.ManifestGet }},
	}
	for _, row := range rows {
		line := row.name + "\t"
		for _, r := range all {
			line += fmt.Sprintf("%.0f\t", row.get(r))
		}
		if len(all) >= 2 && !isLimit(targets[1]) && row.get(all[1]) > 0 {
			line += fmt.Sprintf("%.2fx\t", row.get(all[0])/row.get(all[1]))
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	fmt.Fprintln(out)
	for i, t := range targets {
		switch {
		case t.name == "limit" && i > 0:
			fraction(out, targets[0].name, "this machine's limit", all[0], all[i])
			if targets[0].name == "gantry-tls" && targets[1].name == "gantry" {
				fraction(out, "gantry", "this machine's limit", all[1], all[i])
			}
		case t.name == "limit-tls" && i > 0:
			fraction(out, targets[0].name, "this machine's limit over TLS", all[0], all[i])
		}
	}
}

func isLimit(t *target) bool { return strings.HasPrefix(t.name, "limit") }

// fraction prints a target's blob figures as a fraction of a limit's.
func fraction(out io.Writer, name, limit string, r, l results) {
	fmt.Fprintf(out, "%s as a fraction of %s: blob push %.0f%%, blob pull %.0f%%\n", name, limit, 100*r.BlobPush/l.BlobPush, 100*r.BlobPull/l.BlobPull)
}
