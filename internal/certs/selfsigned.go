package certs

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/keyfile"
)

// The local CA's files in the keys directory.
const (
	// CAKeyFile is the CA's private key (PKCS #8 PEM, 0600).
	CAKeyFile = "tls-ca.key"
	// CACertFile is the CA's certificate (PEM), what clients trust.
	CACertFile = "tls-ca.pem"
)

const (
	caCommonName = "Gantry local CA"
	caLifetime   = 10 * 365 * 24 * time.Hour
	// maxLeaves bounds the leaves kept in memory (names matching a
	// *.DOMAIN pattern are many); past it, one is dropped and minted
	// again when asked for.
	maxLeaves = 1024
)

// SelfSigned issues certificates from a local CA of the server's own. The
// CA is created in the keys directory on first use and reused after. Leaf
// certificates are minted in memory on the first handshake asking for a
// name, and minted again once two thirds of their lifetime have passed.
//
// A handshake without a server name (a client connecting to an IP
// address) gets the default leaf, which covers every hostname and IP
// address SelfSigned was made with. One with a server name gets a leaf for
// that name if the name is allowed: one of the names given (to
// NewSelfSigned or Manage), a name one label deep under a *.DOMAIN pattern
// given, or a name WithAllow's policy accepts. Other names are refused (the
// handshake fails): no certificate is minted for an arbitrary name.
type SelfSigned struct {
	dir      string
	log      *slog.Logger
	now      func() time.Time
	lifetime time.Duration
	allow    func(string) bool
	caCert   *x509.Certificate
	caKey    crypto.Signer
	caPEM    []byte

	mu       sync.Mutex
	defaults []string // hostnames and IPs of the default leaf
	names    map[string]bool
	patterns []string // ".DOMAIN" of each *.DOMAIN
	leaves   map[string]*tls.Certificate
}

// NewSelfSigned loads the local CA from keysDir (creating it, and keysDir
// 0700, when there is none) and serves names: hostnames, IP addresses and
// *.DOMAIN patterns.
func NewSelfSigned(keysDir string, names []string, opts ...Option) (*SelfSigned, error) {
	o := makeOptions(opts)
	if keysDir == "" {
		return nil, fmt.Errorf("self-signed certificates: no keys directory%.0w", ErrInvalid)
	}
	s := &SelfSigned{dir: keysDir, log: o.log, now: o.now, lifetime: o.leafLifetime, allow: o.allow,
		names: map[string]bool{}, leaves: map[string]*tls.Certificate{}}
	if err := s.add(names); err != nil {
		return nil, err
	}
	for _, n := range names {
		if n := normalizeName(n); !strings.HasPrefix(n, "*.") && !slices.Contains(s.defaults, n) {
			s.defaults = append(s.defaults, n)
		}
	}
	if err := s.loadCA(); err != nil {
		return nil, err
	}
	return s, nil
}

var _ Source = (*SelfSigned)(nil)

// add allows names (hostnames, IPs, *.DOMAIN).
func (s *SelfSigned) add(names []string) error {
	for _, raw := range names {
		n := normalizeName(raw)
		if err := checkName(n); err != nil {
			return err
		}
		if d, ok := strings.CutPrefix(n, "*"); ok {
			if !slices.Contains(s.patterns, d) {
				s.patterns = append(s.patterns, d)
			}
			continue
		}
		s.names[n] = true
	}
	return nil
}

// checkName checks a hostname, IP address or *.DOMAIN pattern.
func checkName(n string) error {
	if isIP(n) {
		return nil
	}
	host := strings.TrimPrefix(n, "*.")
	bad := host == "" || len(host) > 253 || strings.Contains(host, "*")
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			bad = true
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				bad = true
			}
		}
	}
	if bad {
		return fmt.Errorf("%q is not a hostname, IP address or *.DOMAIN pattern%.0w", n, ErrInvalid)
	}
	return nil
}

// Manage allows more names (hostnames, IPs, *.DOMAIN patterns), e.g. the
// host of a registry just created. Their leaves are minted on the first
// handshake asking for them.
func (s *SelfSigned) Manage(_ context.Context, names ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.add(names)
}

// allowed reports whether a leaf may be minted for the server name n.
// s.mu is held.
func (s *SelfSigned) allowed(n string) bool {
	if s.names[n] {
		return true
	}
	for _, d := range s.patterns {
		if label, ok := strings.CutSuffix(n, d); ok && label != "" && !strings.Contains(label, ".") && checkName(n) == nil {
			return true
		}
	}
	return s.allow != nil && checkName(n) == nil && s.allow(n)
}

// GetCertificate returns the leaf for the handshake's server name (the
// default leaf without one), minting it when there is none or it is due
// for renewal.
func (s *SelfSigned) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := normalizeName(hello.ServerName)
	s.mu.Lock()
	defer s.mu.Unlock()
	var sans []string
	switch {
	case name == "":
		sans = s.defaults
		if len(sans) == 0 {
			return nil, fmt.Errorf("no default certificate: a server name is needed%.0w", ErrNotAllowed)
		}
	case s.allowed(name):
		sans = []string{name}
	default:
		return nil, fmt.Errorf("server name %q: %w", name, ErrNotAllowed)
	}
	now := s.now()
	if c := s.leaves[name]; c != nil && !dueForRenewal(c.Leaf, now) {
		return c, nil
	}
	c, err := s.mint(sans, now)
	if err != nil {
		return nil, err
	}
	if len(s.leaves) >= maxLeaves {
		for k := range s.leaves {
			delete(s.leaves, k)
			break
		}
	}
	s.leaves[name] = c
	s.log.Debug("TLS leaf certificate issued by the local CA", "names", sans, "expires", c.Leaf.NotAfter)
	return c, nil
}

// dueForRenewal reports whether two thirds of c's lifetime have passed at
// now (or it is not valid at now).
func dueForRenewal(c *x509.Certificate, now time.Time) bool {
	life := c.NotAfter.Sub(c.NotBefore)
	return now.Before(c.NotBefore) || !now.Before(c.NotBefore.Add(life*2/3))
}

// mint issues a leaf for sans (hostnames and IPs), valid from now.
func (s *SelfSigned) mint(sans []string, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: sans[0]},
		NotBefore:    now.Add(-5 * time.Minute), // some clock skew between server and clients
		NotAfter:     now.Add(s.lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if tmpl.NotAfter.After(s.caCert.NotAfter) {
		tmpl.NotAfter = s.caCert.NotAfter
	}
	for _, n := range sans {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.caCert, &key.PublicKey, s.caKey)
	if err != nil {
		return nil, fmt.Errorf("issuing a certificate for %v: %w", sans, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der, s.caCert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// CAPEM returns the local CA's certificate, PEM-encoded: what clients
// trust (served at GET /v1/ca.pem).
func (s *SelfSigned) CAPEM() []byte { return slices.Clone(s.caPEM) }

// Certificates describes the local CA and the leaves minted so far.
func (s *SelfSigned) Certificates() []Info {
	infos := []Info{infoOf(s.caCert)}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.leaves {
		infos = append(infos, infoOf(c.Leaf))
	}
	return infos
}

// Expiry returns when the local CA expires (leaves are renewed before
// they expire, but not past it).
func (s *SelfSigned) Expiry() time.Time { return s.caCert.NotAfter }

// Close releases nothing: SelfSigned runs no goroutine. It is there so
// that every source can be closed alike.
func (s *SelfSigned) Close() error { return nil }

// Fingerprint returns the SHA-256 fingerprint of the first certificate of
// certPEM, as openssl prints it (colon-separated upper-case hex pairs), or
// "" when certPEM holds none: what a user compares before trusting a CA
// fetched over an unverified connection.
func Fingerprint(certPEM []byte) string {
	for rest := certPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return ""
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		sum := sha256.Sum256(b.Bytes)
		hexed := strings.ToUpper(hex.EncodeToString(sum[:]))
		pairs := make([]string, 0, len(sum))
		for i := 0; i < len(hexed); i += 2 {
			pairs = append(pairs, hexed[i:i+2])
		}
		return strings.Join(pairs, ":")
	}
}

// ReadCA returns the PEM certificate of the local CA kept in keysDir (for
// `gantry server ca`, without starting the server). Without one it returns
// an error matching ErrNoCA.
func ReadCA(keysDir string) ([]byte, error) {
	path := filepath.Join(keysDir, CACertFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist (the local CA is made on the first start with --tls self-signed): %w", path, ErrNoCA)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the local CA: %w", err)
	}
	if _, err := parseCACert(b, path); err != nil {
		return nil, err
	}
	return b, nil
}

// loadCA loads the CA from s.dir, creating it if there is none. A key
// without a certificate (a start stopped between the two writes) gets a
// new certificate; a certificate without its key is an error.
func (s *SelfSigned) loadCA() error {
	keyPath, certPath := filepath.Join(s.dir, CAKeyFile), filepath.Join(s.dir, CACertFile)
	for range 2 {
		keyPEM, err := os.ReadFile(keyPath)
		if errors.Is(err, fs.ErrNotExist) {
			if _, err := os.Stat(certPath); err == nil {
				return fmt.Errorf("local CA certificate %s has no key %s (remove both to make a new CA)%.0w", certPath, keyPath, ErrInvalid)
			}
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return err
			}
			der, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				return err
			}
			err = keyfile.WriteNewPerm(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
			if err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("creating the local CA key %s: %w", keyPath, err)
			}
			continue // read back what is there (ours, or another process's)
		}
		if err != nil {
			return fmt.Errorf("reading the local CA key: %w", err)
		}
		if fi, err := os.Stat(keyPath); err == nil && fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(keyPath, 0o600); err != nil {
				return fmt.Errorf("restricting the local CA key %s: %w", keyPath, err)
			}
		}
		key, err := parseKey(keyPEM, keyPath)
		if err != nil {
			return err
		}
		certPEM, err := os.ReadFile(certPath)
		if errors.Is(err, fs.ErrNotExist) {
			certPEM, err = newCACert(key, s.now())
			if err != nil {
				return err
			}
			if err := keyfile.WriteNewPerm(certPath, certPEM, 0o644); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("creating the local CA certificate %s: %w", certPath, err)
			}
			s.log.Info("local CA created", "cert", certPath, "sha256", Fingerprint(certPEM))
			certPEM, err = os.ReadFile(certPath)
		}
		if err != nil {
			return fmt.Errorf("reading the local CA certificate: %w", err)
		}
		cert, err := parseCACert(certPEM, certPath)
		if err != nil {
			return err
		}
		pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(cert.PublicKey) {
			return fmt.Errorf("local CA certificate %s does not match key %s%.0w", certPath, keyPath, ErrInvalid)
		}
		if now := s.now(); now.After(cert.NotAfter) {
			return fmt.Errorf("local CA certificate %s expired on %s (remove %s and %s to make a new CA, which clients must then trust)%.0w",
				certPath, cert.NotAfter.UTC().Format(time.RFC3339), certPath, keyPath, ErrInvalid)
		}
		s.caCert, s.caKey, s.caPEM = cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
		return nil
	}
	return fmt.Errorf("local CA key %s: could not create it", keyPath)
}

// parseCACert parses the CA certificate file.
func parseCACert(b []byte, path string) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("local CA certificate %s holds no CERTIFICATE block%.0w", path, ErrInvalid)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("local CA certificate %s: %w%.0w", path, err, ErrInvalid)
	}
	if !c.IsCA {
		return nil, fmt.Errorf("local CA certificate %s is not a CA certificate%.0w", path, ErrInvalid)
	}
	return c, nil
}

// newCACert makes the CA's self-signed certificate (PEM) for key.
func newCACert(key crypto.Signer, now time.Time) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	ski := sha1.Sum(spki)
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: caCommonName, Organization: []string{"Gantry"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		SubjectKeyId:          ski[:],
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("making the local CA certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// randomSerial returns a random 128-bit serial number.
func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n.Add(n, big.NewInt(1))
}
