package egress

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestParseRule(t *testing.T) {
	t.Parallel()
	good := []struct {
		in   string
		want rule
	}{
		{"registry.example.com", rule{name: "registry.example.com"}},
		{"Registry.Example.COM.", rule{name: "registry.example.com"}},
		{"registry.example.com:5000", rule{name: "registry.example.com", port: "5000"}},
		{"*.example.com", rule{suffix: ".example.com"}},
		{"*.example.com:443", rule{suffix: ".example.com", port: "443"}},
		{"10.1.2.3", rule{prefix: netip.MustParsePrefix("10.1.2.3/32")}},
		{"10.1.2.3:5000", rule{prefix: netip.MustParsePrefix("10.1.2.3/32"), port: "5000"}},
		{"::1", rule{prefix: netip.MustParsePrefix("::1/128")}},
		{"[::1]:5000", rule{prefix: netip.MustParsePrefix("::1/128"), port: "5000"}},
		{"10.0.0.0/8", rule{prefix: netip.MustParsePrefix("10.0.0.0/8")}},
		{"10.9.9.9/8", rule{prefix: netip.MustParsePrefix("10.0.0.0/8")}},
	}
	for _, tc := range good {
		got, err := parseRule(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseRule(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", " ", "10.0.0.0/33", "host:0", "host:99999", "host:x", "a..b", "bad host", "http://x", "*.", "*"} {
		if r, err := parseRule(in); err == nil {
			t.Errorf("parseRule(%q) = %+v, want an error", in, r)
		}
	}
}

func TestNewNamesBadEntries(t *testing.T) {
	t.Parallel()
	_, err := New(WithAllow("ok.example.com", "10.0.0.0/99"), WithDeny("a b"), WithControlAddr("nonsense"))
	if err == nil {
		t.Fatal("New accepted malformed entries")
	}
	for _, want := range []string{`--upstream-allow entry "10.0.0.0/99"`, `--upstream-deny entry "a b"`, `control API address "nonsense"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	open := newPolicy(t, WithControlAddr("127.0.0.1:7000"))
	wildControl := newPolicy(t, WithControlAddr("[::]:7100"))
	lists := newPolicy(t,
		WithAllow("registry.example.com", "*.mirror.example", "10.0.0.0/8", "ports.example:5000"),
		WithDeny("evil.mirror.example", "10.6.6.0/24"))
	denyOnly := newPolicy(t, WithDeny("evil.example", "203.0.113.0/24", "*.internal.example"))

	tests := []struct {
		name   string
		p      *Policy
		url    string
		reach  Reach
		reason string // "" for allowed
	}{
		{"control API", open, "http://127.0.0.1:7000/v2/", Local, ReasonControlAPI},
		{"control API as localhost", open, "http://localhost:7000/v2/", Local, ReasonControlAPI},
		{"control API mapped", open, "http://[::ffff:127.0.0.1]:7000/v2/", Local, ReasonControlAPI},
		{"control API via 0.0.0.0", open, "http://0.0.0.0:7000/", Local, ReasonControlAPI},
		{"control API on every address", wildControl, "http://127.0.0.1:7100/", Local, ReasonControlAPI},
		{"control API on every address, ::1", wildControl, "http://[::1]:7100/", Local, ReasonControlAPI},
		{"another loopback port, local", open, "http://127.0.0.1:7001/v2/", Local, ""},
		{"another loopback port, external", open, "http://127.0.0.1:7001/v2/", External, ReasonLoopback},
		{"localhost, external", open, "http://localhost:5000/", External, ReasonLoopback},
		{"sub.localhost, external", open, "http://x.localhost:5000/", External, ReasonLoopback},
		{"127.8.8.8, external", open, "http://127.8.8.8:5000/", External, ReasonLoopback},
		{"::1, external", open, "http://[::1]:5000/", External, ReasonLoopback},
		{"unspecified, external", open, "http://0.0.0.0:5000/", External, ReasonLoopback},
		{"metadata IP", open, "http://169.254.169.254/latest/meta-data/", Local, ReasonMetadata},
		{"link-local", open, "https://169.254.1.1/", Local, ReasonMetadata},
		{"link-local v6", open, "http://[fe80::1]:80/", Local, ReasonMetadata},
		{"link-local v6 with zone", open, "http://[fe80::1%25eth0]:80/", Local, ReasonMetadata},
		{"mapped metadata", open, "http://[::ffff:169.254.169.254]/", Local, ReasonMetadata},
		{"NAT64 metadata", open, "http://[64:ff9b::a9fe:a9fe]/", Local, ReasonMetadata},
		{"AWS v6 metadata", open, "http://[fd00:ec2::254]/", Local, ReasonMetadata},
		{"metadata name", open, "http://metadata.google.internal/computeMetadata/v1/", Local, ReasonMetadata},
		{"metadata name, trailing dot", open, "http://Metadata.Google.Internal./", Local, ReasonMetadata},
		{"public name", open, "https://registry-1.docker.io/v2/", External, ""},
		{"public address", open, "https://203.0.113.7/v2/", External, ""},
		{"scheme", open, "ftp://registry.example.com/", Local, ReasonScheme},

		{"allowed name", lists, "https://registry.example.com/v2/", External, ""},
		{"allowed subdomain", lists, "https://eu.mirror.example/v2/", External, ""},
		{"allow suffix is not the domain", lists, "https://mirror.example/v2/", External, ""}, // left to the dial: 10.0.0.0/8 may match
		{"denied within allowed suffix", lists, "https://evil.mirror.example/v2/", External, ReasonDenied},
		{"allowed CIDR", lists, "http://10.1.2.3:5000/v2/", External, ""},
		{"denied CIDR inside allowed", lists, "http://10.6.6.6:5000/v2/", External, ReasonDenied},
		{"address outside allow", lists, "https://203.0.113.7/", External, ReasonNotAllowed},
		{"allowed port", lists, "https://ports.example:5000/", External, ""},
		{"admin obeys the allow list", lists, "http://127.0.0.1:5000/", Local, ReasonNotAllowed},

		{"denied name", denyOnly, "https://evil.example/v2/", Local, ReasonDenied},
		{"denied name, any case", denyOnly, "https://EVIL.example./v2/", Local, ReasonDenied},
		{"denied subdomain", denyOnly, "https://a.internal.example/", Local, ReasonDenied},
		{"denied CIDR", denyOnly, "https://203.0.113.9/", Local, ReasonDenied},
		{"not denied", denyOnly, "https://good.example/", External, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.CheckURL(mustParse(t, tc.url), tc.reach)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("CheckURL(%s, %s) = %v, want allowed", tc.url, tc.reach, err)
				}
				return
			}
			var re *RefusedError
			if !errors.As(err, &re) || !errors.Is(err, ErrRefused) || re.Reason != tc.reason {
				t.Fatalf("CheckURL(%s, %s) = %v, want refused: %s", tc.url, tc.reach, err, tc.reason)
			}
			if !strings.Contains(err.Error(), tc.reason+" (refused)") {
				t.Errorf("message %q", err)
			}
		})
	}
}

// TestMessages pins the wording operators and API callers see.
func TestMessages(t *testing.T) {
	t.Parallel()
	p := newPolicy(t, WithControlAddr("127.0.0.1:7000"), WithAllow("registry.example.com"))
	for raw, want := range map[string]string{
		"http://127.0.0.1:7000/v2/":       "upstream 127.0.0.1:7000 is the gantry control API (refused)",
		"http://169.254.169.254/":         "upstream 169.254.169.254:80 is link-local/metadata (refused)",
		"https://other.example.com/v2/":   "upstream other.example.com:443 is not in --upstream-allow (refused)",
		"http://localhost:7000/v2/x/tags": "upstream localhost:7000 (address 127.0.0.1:7000) is the gantry control API (refused)",
	} {
		if err := p.CheckURL(mustParse(t, raw), Local); err == nil || err.Error() != want {
			t.Errorf("CheckURL(%s) = %v, want %q", raw, err, want)
		}
	}
}

// TestDialChecksResolvedAddress: names that resolve to forbidden addresses
// are refused when dialed, whatever the name looks like; an IP entry of the
// allow list admits a name that resolves into it.
func TestDialChecksResolvedAddress(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(srv.Close)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	dns := startDNS(t, map[string]string{
		"loop.test.":     "127.0.0.1",
		"metadata.test.": "169.254.169.254",
		"control.test.":  "127.0.0.1",
	})

	p := newPolicy(t, WithControlAddr("127.0.0.1:7000"))
	p.resolver = dns
	get := func(p *Policy, reach Reach, u string) error {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
		resp, err := p.Client(reach).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	target := func(name string, port int) string { return "http://" + net.JoinHostPort(name, itoa(port)) + "/" }

	if err := get(p, External, target("loop.test", port)); !isRefused(err, ReasonLoopback) {
		t.Errorf("external fetch of a name resolving to loopback: %v", err)
	}
	if !strings.Contains(errString(get(p, External, target("loop.test", port))), "upstream loop.test:"+itoa(port)+" (address 127.0.0.1:"+itoa(port)+")") {
		t.Errorf("the refusal does not name the name and the address dialed")
	}
	if err := get(p, Local, target("loop.test", port)); err != nil {
		t.Errorf("local fetch of a name resolving to loopback: %v", err)
	}
	if err := get(p, Local, target("metadata.test", 80)); !isRefused(err, ReasonMetadata) {
		t.Errorf("fetch of a name resolving to the metadata address: %v", err)
	}
	if err := get(p, Local, target("control.test", 7000)); !isRefused(err, ReasonControlAPI) {
		t.Errorf("fetch of a name resolving to the control API: %v", err)
	}

	// The allow list names addresses: a name resolving into it passes, a
	// name resolving elsewhere does not.
	allowLoop := newPolicy(t, WithAllow("127.0.0.0/8"))
	allowLoop.resolver = dns
	if err := get(allowLoop, Local, target("loop.test", port)); err != nil {
		t.Errorf("a name resolving into an allowed CIDR: %v", err)
	}
	allowOther := newPolicy(t, WithAllow("10.0.0.0/8"))
	allowOther.resolver = dns
	if err := get(allowOther, Local, target("loop.test", port)); !isRefused(err, ReasonNotAllowed) {
		t.Errorf("a name resolving outside the allowed CIDR: %v", err)
	}
	denyLoop := newPolicy(t, WithDeny("127.0.0.0/8"))
	denyLoop.resolver = dns
	if err := get(denyLoop, Local, target("loop.test", port)); !isRefused(err, ReasonDenied) {
		t.Errorf("a name resolving into a denied CIDR: %v", err)
	}
}

// TestRedirectDropsAuthorization: net/http keeps Authorization on a
// redirect to another port of the same host; the policy's clients drop it
// on any change of scheme, host or port, and keep it within one origin.
func TestRedirectDropsAuthorization(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]string{}
	record := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen[name+r.URL.Path] = r.Header.Get("Authorization")
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		})
	}
	other := httptest.NewServer(record("other"))
	t.Cleanup(other.Close)
	mux := http.NewServeMux()
	mux.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/landed", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/here", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/landed", http.StatusTemporaryRedirect)
	})
	mux.Handle("/landed", record("first"))
	first := httptest.NewServer(mux)
	t.Cleanup(first.Close)

	send := func(c *http.Client, path string) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, first.URL+path, nil)
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	get := func(k string) string {
		mu.Lock()
		defer mu.Unlock()
		return seen[k]
	}

	// What this package guards against: the standard client forwards it.
	send(&http.Client{}, "/away")
	if get("other/landed") != "Bearer s3cret" {
		t.Fatalf("net/http no longer forwards Authorization to another port of the same host (got %q); revisit the package comment", get("other/landed"))
	}
	delete(seen, "other/landed")

	p := newPolicy(t)
	send(p.Client(Local), "/away")
	if got := get("other/landed"); got != "" {
		t.Errorf("a redirect to another port carried Authorization %q", got)
	}
	send(p.Client(Local), "/here")
	if got := get("first/landed"); got != "Bearer s3cret" {
		t.Errorf("a redirect within the origin lost Authorization (%q)", got)
	}
}

func TestOrigin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ a, b string }{
		{"https://r.example/v2/", "https://R.example:443/x"},
		{"http://127.0.0.1/", "http://127.0.0.1:80/"},
	} {
		a, b := mustParse(t, tc.a), mustParse(t, tc.b)
		if origin(a) != origin(b) {
			t.Errorf("%s and %s: different origins %s, %s", tc.a, tc.b, origin(a), origin(b))
		}
	}
	for _, tc := range []struct{ a, b string }{
		{"https://r.example/", "http://r.example/"},
		{"http://127.0.0.1:5000/", "http://127.0.0.1:5001/"},
		{"https://r.example/", "https://s.r.example/"},
	} {
		a, b := mustParse(t, tc.a), mustParse(t, tc.b)
		if origin(a) == origin(b) {
			t.Errorf("%s and %s: same origin %s", tc.a, tc.b, origin(a))
		}
	}
}

func newPolicy(t *testing.T, opts ...Option) *Policy {
	t.Helper()
	p, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// mustParse parses the URL raw.
func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func isRefused(err error, reason string) bool {
	var re *RefusedError
	return errors.As(err, &re) && re.Reason == reason
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func itoa(n int) string { return strconv.Itoa(n) }

// startDNS serves A records for names (fully qualified, lower case) on a
// UDP port of 127.0.0.1 and returns a resolver that asks only it. Other
// questions get an empty answer.
func startDNS(t *testing.T, names map[string]string) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := dnsAnswer(buf[:n], names); resp != nil {
				_, _ = pc.WriteTo(resp, from)
			}
		}
	}()
	addr := pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
}

// dnsAnswer answers one DNS query: its question with one A record when the
// name is known and the type is A, no records otherwise.
func dnsAnswer(q []byte, names map[string]string) []byte {
	if len(q) < 12 {
		return nil
	}
	// The question: labels, then type and class.
	i := 12
	var labels []string
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if i+1+l > len(q) {
			return nil
		}
		labels = append(labels, strings.ToLower(string(q[i+1:i+1+l])))
		i += 1 + l
	}
	if i+5 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i+1:])
	question := q[12 : i+5]
	name := strings.Join(labels, ".") + "."
	ip, known := names[name]
	answer := known && qtype == 1
	resp := make([]byte, 12, 64)
	copy(resp, q[:2])                            // ID
	binary.BigEndian.PutUint16(resp[2:], 0x8180) // response, recursion desired and available
	binary.BigEndian.PutUint16(resp[4:], 1)      // one question
	if answer {
		binary.BigEndian.PutUint16(resp[6:], 1) // one answer
	}
	resp = append(resp, question...)
	if answer {
		a := netip.MustParseAddr(ip).As4()
		resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
		resp = append(resp, a[:]...)
	}
	return resp
}
