package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestTrustedProxies checks that X-Forwarded-For is believed only from a
// trusted proxy, and then only its right-most untrusted entry.
func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	p := newProxies([]string{"10.0.0.0/8", "192.0.2.7"})
	tests := []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"no proxy, header ignored", "198.51.100.9:4000", []string{"203.0.113.5"}, "198.51.100.9:4000"},
		{"trusted proxy", "10.1.2.3:4000", []string{"203.0.113.5"}, "203.0.113.5:0"},
		{"spoofed left entries ignored", "192.0.2.7:4000", []string{"1.2.3.4, 203.0.113.5"}, "203.0.113.5:0"},
		{"chain of trusted proxies", "10.1.2.3:4000", []string{"203.0.113.5", "10.9.9.9"}, "203.0.113.5:0"},
		{"malformed entry keeps the proxy", "10.1.2.3:4000", []string{"203.0.113.5, nonsense"}, "10.1.2.3:4000"},
		{"only proxies keeps the proxy", "10.1.2.3:4000", []string{"10.2.2.2"}, "10.1.2.3:4000"},
		{"no header", "10.1.2.3:4000", nil, "10.1.2.3:4000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got string
			h := p.wrap(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r.RemoteAddr }))
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.peer
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			h.ServeHTTP(httptest.NewRecorder(), r)
			if got != tt.want {
				t.Errorf("RemoteAddr = %q, want %q", got, tt.want)
			}
		})
	}
}
