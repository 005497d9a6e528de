package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// target is one registry under test.
type target struct {
	name   string
	base   string // http://host:port
	client *http.Client
}

// results of one target, in MB/s (10^6 bytes) and requests/s.
type results struct {
	BlobPush    float64
	BlobPull    float64
	ManifestPut float64
	ManifestGet float64
}

// blobSet generates distinct blobs cheaply: every blob is the same random
// body followed by a unique 64-byte suffix. The body's length is a multiple
// of the hash block size, so the digest of each blob continues from one
// saved hash state and costs the client almost nothing, while the registry
// still receives, hashes and stores every byte.
type blobSet struct {
	body  []byte
	state []byte
	nonce string
}

const suffixLen = 64

func newBlobSet(size int) (*blobSet, error) {
	if size < suffixLen || (size-suffixLen)%64 != 0 {
		return nil, fmt.Errorf("blob size %d must be 64 more than a multiple of 64", size)
	}
	b := &blobSet{body: make([]byte, size-suffixLen)}
	if _, err := rand.Read(b.body); err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write(b.body)
	state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, err
	}
	b.state = state
	var n [8]byte
	rand.Read(n[:])
	b.nonce = hex.EncodeToString(n[:])
	return b, nil
}

func (b *blobSet) suffix(i int) []byte {
	s := make([]byte, suffixLen)
	copy(s, fmt.Sprintf("gantry-bench %s %d", b.nonce, i))
	return s
}

func (b *blobSet) digest(i int) digest.Digest {
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(b.state); err != nil {
		panic(err)
	}
	h.Write(b.suffix(i))
	return digest.NewDigest(digest.SHA256, h)
}

func (b *blobSet) size() int64 { return int64(len(b.body) + suffixLen) }

// parallel runs fn(i) for i in [0, n) on c workers, stopping at the first
// error or when ctx is done. It returns how many calls succeeded.
func parallel(ctx context.Context, c, n int, fn func(i int) error) (int64, error) {
	var next, done atomic.Int64
	var once sync.Once
	var first error
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if n >= 0 && i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return done.Load(), first
}

func (t *target) url(path string) string { return t.base + path }

func (t *target) do(req *http.Request, want int) (*http.Response, error) {
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, strings.TrimSpace(string(b)))
	}
	return resp, nil
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// pushBlob uploads one blob with POST then a monolithic PUT, which every
// registry supports.
func (t *target) pushBlob(ctx context.Context, repo string, d digest.Digest, size int64, body func() io.Reader) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, t.url("/v2/"+repo+"/blobs/uploads/"), nil)
	resp, err := t.do(req, http.StatusAccepted)
	if err != nil {
		return err
	}
	drain(resp)
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("upload location: %w", err)
	}
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	req, _ = http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), body())
	req.ContentLength = size
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(body()), nil }
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = t.do(req, http.StatusCreated)
	if err != nil {
		return err
	}
	drain(resp)
	return nil
}

var pullBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

func (t *target) pullBlob(ctx context.Context, repo string, d digest.Digest, size int64) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, t.url("/v2/"+repo+"/blobs/"+d.String()), nil)
	resp, err := t.do(req, http.StatusOK)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	bp := pullBufs.Get().(*[]byte)
	defer pullBufs.Put(bp)
	var n int64
	for {
		m, err := resp.Body.Read(*bp)
		n += int64(m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading blob %s: %w", d, err)
		}
	}
	if n != size {
		return fmt.Errorf("blob %s: read %d bytes, want %d", d, n, size)
	}
	return nil
}

// run measures one target.
func run(ctx context.Context, t *target, cfg config) (results, error) {
	var res results
	blobs, err := newBlobSet(cfg.blobSize)
	if err != nil {
		return res, err
	}
	repo := "bench/" + blobs.nonce[:8]
	size := blobs.size()
	body := func(i int) func() io.Reader {
		s := blobs.suffix(i)
		return func() io.Reader { return io.MultiReader(bytes.NewReader(blobs.body), bytes.NewReader(s)) }
	}
	digests := make([]digest.Digest, cfg.blobCount)
	for i := range digests {
		digests[i] = blobs.digest(i)
	}

	start := time.Now()
	n, err := parallel(ctx, cfg.concurrency, cfg.blobCount, func(i int) error {
		return t.pushBlob(ctx, repo, digests[i], size, body(i))
	})
	if err != nil {
		return res, fmt.Errorf("blob push: %w", err)
	}
	res.BlobPush = mbps(n*size, time.Since(start))

	start = time.Now()
	total := cfg.blobCount * cfg.pullRounds
	n, err = parallel(ctx, cfg.concurrency, total, func(i int) error {
		return t.pullBlob(ctx, repo, digests[i%cfg.blobCount], size)
	})
	if err != nil {
		return res, fmt.Errorf("blob pull: %w", err)
	}
	res.BlobPull = mbps(n*size, time.Since(start))

	// Small manifests: a config blob and one of the layers pushed above.
	cfgBlob := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	cfgDigest := digest.FromBytes(cfgBlob)
	if err := t.pushBlob(ctx, repo, cfgDigest, int64(len(cfgBlob)), func() io.Reader { return bytes.NewReader(cfgBlob) }); err != nil {
		return res, fmt.Errorf("config push: %w", err)
	}
	manifest := func(i int) []byte {
		b, _ := json.Marshal(ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			Config:      ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cfgDigest, Size: int64(len(cfgBlob))},
			Layers:      []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digests[0], Size: size}},
			Annotations: map[string]string{"org.gantry.bench": fmt.Sprintf("%s-%d", blobs.nonce, i)},
		})
		return b
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.duration)
	start = time.Now()
	puts, err := parallel(pctx, cfg.concurrency, cfg.manifestMax, func(i int) error {
		b := manifest(i)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, t.url(fmt.Sprintf("/v2/%s/manifests/m%d", repo, i)), bytes.NewReader(b))
		req.Header.Set("Content-Type", ocispec.MediaTypeImageManifest)
		resp, err := t.do(req, http.StatusCreated)
		if err != nil {
			return err
		}
		drain(resp)
		return nil
	})
	elapsed := time.Since(start)
	cancel()
	if err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
		return res, fmt.Errorf("manifest put: %w", err)
	}
	res.ManifestPut = float64(puts) / elapsed.Seconds()
	if puts == 0 {
		return res, errors.New("manifest put: none completed")
	}

	pctx, cancel = context.WithTimeout(ctx, cfg.duration)
	start = time.Now()
	gets, err := parallel(pctx, cfg.concurrency, -1, func(i int) error {
		req, _ := http.NewRequestWithContext(pctx, http.MethodGet, t.url(fmt.Sprintf("/v2/%s/manifests/m%d", repo, int64(i)%puts)), nil)
		req.Header.Set("Accept", ocispec.MediaTypeImageManifest)
		resp, err := t.do(req, http.StatusOK)
		if err != nil {
			return err
		}
		drain(resp)
		return nil
	})
	elapsed = time.Since(start)
	cancel()
	if err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
		return res, fmt.Errorf("manifest get: %w", err)
	}
	res.ManifestGet = float64(gets) / elapsed.Seconds()
	return res, nil
}

func mbps(bytes int64, d time.Duration) float64 { return float64(bytes) / 1e6 / d.Seconds() }
