package cli

import "testing"

func TestRegistryHost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"127.0.0.1:5001", "127.0.0.1:5001"},
		{" 127.0.0.1:5001\n", "127.0.0.1:5001"},
		{"http://127.0.0.1:5001", "127.0.0.1:5001"},
		{"https://127.0.0.1:5001/", "127.0.0.1:5001"},
		{"https://127.0.0.1:5001/v2/", "127.0.0.1:5001"},
		{"localhost:5001", "localhost:5001"},
		{"LocalHost:5001", "localhost:5001"},
		{"[::1]:5001", "[::1]:5001"},
		{"https://[::1]:443/v2/", "[::1]"},
		{"registry.example.com", "registry.example.com"},
		{"https://registry.example.com:443", "registry.example.com"},
		{"http://registry.example.com:80/", "registry.example.com"},
		{"https://registry.example.com:80", "registry.example.com:80"},
		{"https://index.docker.io/v1/", "index.docker.io"},
		// Not login servers: a bare word would name a registry on the
		// control API; no host; credentials in the URL.
		{"contoso", ""},
		{"https://contoso/", ""},
		{"", ""},
		{"https://", ""},
		{":5001", ""},
		{"https://user:pw@registry.example.com", ""},
	} {
		if got := registryHost(tc.in); got != tc.want {
			t.Errorf("registryHost(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
