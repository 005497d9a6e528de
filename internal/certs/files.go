package certs

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// Files serves a certificate and key from PEM files the operator provides
// (--tls-cert, --tls-key). The certificate file holds the leaf first, then
// any intermediates of its chain.
//
// The files are reloaded when their content changes (checked every poll
// interval) and on Reload. A reload that fails validation keeps the
// certificate in use (the change is logged at Error level, once per
// content).
type Files struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	loaded  [32]byte // hash of the files the certificate came from
	refused [32]byte // hash of the last content refused by a poll

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// NewFiles loads and validates certFile and keyFile, and starts watching
// them (stopped by Close). Its errors name the file and what is wrong with
// it, and match ErrInvalid.
func NewFiles(certFile, keyFile string, opts ...Option) (*Files, error) {
	o := makeOptions(opts)
	f := &Files{certFile: certFile, keyFile: keyFile, log: o.log, now: o.now,
		stop: make(chan struct{}), done: make(chan struct{})}
	cert, sum, err := f.load()
	if err != nil {
		return nil, err
	}
	f.cert, f.loaded = cert, sum
	if o.poll > 0 {
		go f.watch(o.poll)
	} else {
		close(f.done)
	}
	return f, nil
}

var _ Source = (*Files)(nil)

// GetCertificate returns the current certificate, whatever the name asked
// for (the operator chose the certificate's names).
func (f *Files) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cert, nil
}

// Reload reads and validates the files again and serves them from the next
// handshake on; when they are not valid it returns why and keeps the
// certificate in use.
func (f *Files) Reload(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cert, sum, err := f.load()
	if err != nil {
		return err
	}
	f.swap(cert, sum)
	return nil
}

// swap makes cert (from files of hash sum) the current certificate.
func (f *Files) swap(cert *tls.Certificate, sum [32]byte) {
	f.mu.Lock()
	changed := sum != f.loaded
	f.cert, f.loaded, f.refused = cert, sum, [32]byte{}
	f.mu.Unlock()
	if changed {
		i := infoOf(cert.Leaf)
		f.log.Info("TLS certificate reloaded", "file", f.certFile, "names", i.Names, "expires", i.NotAfter)
	}
}

// Certificates describes the certificate in use.
func (f *Files) Certificates() []Info {
	f.mu.Lock()
	defer f.mu.Unlock()
	return []Info{infoOf(f.cert.Leaf)}
}

// Expiry returns when the certificate in use expires.
func (f *Files) Expiry() time.Time { return earliest(f.Certificates()) }

// Close stops watching the files. The certificate is still served.
func (f *Files) Close() error {
	f.stopOnce.Do(func() { close(f.stop) })
	<-f.done
	return nil
}

// watch reloads the files when their content changes, until Close.
func (f *Files) watch(every time.Duration) {
	defer close(f.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		sum, err := f.sum()
		if err != nil {
			sum = [32]byte{1} // unreadable: tried once, then refused until it changes
		}
		f.mu.Lock()
		same := sum == f.loaded || sum == f.refused
		f.mu.Unlock()
		if same {
			continue
		}
		cert, sum, err := f.load()
		if err != nil {
			f.mu.Lock()
			f.refused = sum
			f.mu.Unlock()
			f.log.Error("TLS certificate files changed but are not usable; still serving the previous certificate",
				"cert", f.certFile, "key", f.keyFile, "err", err)
			continue
		}
		f.swap(cert, sum)
	}
}

// sum hashes the content of both files.
func (f *Files) sum() ([32]byte, error) {
	c, err := os.ReadFile(f.certFile)
	if err != nil {
		return [32]byte{}, err
	}
	k, err := os.ReadFile(f.keyFile)
	if err != nil {
		return [32]byte{}, err
	}
	return hashPair(c, k), nil
}

func hashPair(c, k []byte) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%d:", len(c))
	h.Write(c)
	h.Write(k)
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// load reads and validates the pair. The hash is of what was read, also
// when it is refused (unreadable files hash to a fixed non-zero value).
func (f *Files) load() (*tls.Certificate, [32]byte, error) {
	certPEM, err := readFile("certificate", f.certFile)
	if err != nil {
		return nil, [32]byte{1}, err
	}
	keyPEM, err := readFile("key", f.keyFile)
	if err != nil {
		return nil, [32]byte{1}, err
	}
	sum := hashPair(certPEM, keyPEM)
	cert, err := parsePair(certPEM, keyPEM, f.certFile, f.keyFile, f.now())
	return cert, sum, err
}

// parsePair validates a certificate chain and key (PEM) read from the
// named files, at time now.
func parsePair(certPEM, keyPEM []byte, certFile, keyFile string, now time.Time) (*tls.Certificate, error) {
	var ders [][]byte
	sawPEM := false
	for rest := certPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		sawPEM = true
		if b.Type == "CERTIFICATE" {
			ders = append(ders, b.Bytes)
		}
	}
	switch {
	case !sawPEM:
		return nil, fmt.Errorf("certificate %s is not PEM%.0w", certFile, ErrInvalid)
	case len(ders) == 0:
		return nil, fmt.Errorf("certificate %s holds no CERTIFICATE block%.0w", certFile, ErrInvalid)
	}
	leaf, err := x509.ParseCertificate(ders[0])
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w%.0w", certFile, err, ErrInvalid)
	}
	for i, der := range ders[1:] {
		if _, err := x509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("certificate %s, chain certificate %d: %w%.0w", certFile, i+2, err, ErrInvalid)
		}
	}
	key, err := parseKey(keyPEM, keyFile)
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("certificate %s does not match key %s%.0w", certFile, keyFile, ErrInvalid)
	}
	switch {
	case now.After(leaf.NotAfter):
		return nil, fmt.Errorf("certificate %s expired on %s%.0w", certFile, leaf.NotAfter.UTC().Format(time.RFC3339), ErrInvalid)
	case now.Before(leaf.NotBefore):
		return nil, fmt.Errorf("certificate %s is not valid before %s%.0w", certFile, leaf.NotBefore.UTC().Format(time.RFC3339), ErrInvalid)
	}
	return &tls.Certificate{Certificate: ders, PrivateKey: key, Leaf: leaf}, nil
}

// parseKey returns the first private key of keyPEM (PKCS #8, PKCS #1 or
// SEC 1).
func parseKey(keyPEM []byte, keyFile string) (crypto.Signer, error) {
	sawPEM := false
	for rest := keyPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		sawPEM = true
		if !strings.HasSuffix(b.Type, "PRIVATE KEY") {
			continue
		}
		if b.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, fmt.Errorf("key %s is encrypted (an unencrypted key is needed)%.0w", keyFile, ErrInvalid)
		}
		var key any
		var err error
		switch b.Type {
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		}
		if err != nil {
			return nil, fmt.Errorf("key %s: %w%.0w", keyFile, err, ErrInvalid)
		}
		switch k := key.(type) {
		case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			return k.(crypto.Signer), nil
		}
		return nil, fmt.Errorf("key %s: unsupported key type %T%.0w", keyFile, key, ErrInvalid)
	}
	if !sawPEM {
		return nil, fmt.Errorf("key %s is not PEM%.0w", keyFile, ErrInvalid)
	}
	return nil, fmt.Errorf("key %s holds no PRIVATE KEY block%.0w", keyFile, ErrInvalid)
}

// readFile reads a file named in errors as "what path" ("certificate
// /x/c.pem: no such file or directory").
func readFile(what, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s %s: %w%.0w", what, path, err, ErrInvalid)
	}
	return b, nil
}
