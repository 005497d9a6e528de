package store_test

import (
	"context"
	"slices"
	"testing"

	"github.com/gantryhq/gantry/internal/store"
)

// TestAddressing checks the login servers of registries with and without a
// domain, and that LocalRegistry recognises every one of them.
func TestAddressing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name   string
		a      store.Addressing
		listen string
		login  string
		all    []string
		local  []string // hosts LocalRegistry maps to the registry
		other  []string // hosts it does not
	}{
		{
			name: "own port", listen: "127.0.0.1:5101", login: "127.0.0.1:5101", all: []string{"127.0.0.1:5101"},
			local: []string{"127.0.0.1:5101", "localhost:5101"}, other: []string{"127.0.0.1:5102", "reg.gantry.test"},
		},
		{
			name: "all interfaces advertise 127.0.0.1", listen: "0.0.0.0:5101", login: "127.0.0.1:5101", all: []string{"127.0.0.1:5101"},
			local: []string{"127.0.0.1:5101"},
		},
		{
			name: "all interfaces advertise the external host", a: store.Addressing{Host: "gantry.example.com"}, listen: "[::]:5101",
			login: "gantry.example.com:5101", all: []string{"gantry.example.com:5101"},
			local: []string{"gantry.example.com:5101", "127.0.0.1:5101"}, other: []string{"other.example.com:5101"},
		},
		{
			name: "domain, default port", a: store.Addressing{Domain: "gantry.test"}, login: "reg.gantry.test", all: []string{"reg.gantry.test"},
			local: []string{"reg.gantry.test", "REG.Gantry.Test:443", "reg.gantry.test:8443"}, other: []string{"nope.gantry.test", "reg.other.test", "x.reg.gantry.test"},
		},
		{
			name: "domain and own port", a: store.Addressing{Domain: "gantry.test", Port: "8443"}, listen: "127.0.0.1:5101",
			login: "reg.gantry.test:8443", all: []string{"reg.gantry.test:8443", "127.0.0.1:5101"},
			local: []string{"reg.gantry.test:8443", "127.0.0.1:5101"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, store.WithAddressing(tt.a))
			r, err := f.st.GetRegistry(ctx, "reg")
			if err != nil {
				t.Fatal(err)
			}
			r.Listen = tt.listen
			if r, err = f.st.UpdateRegistry(ctx, r); err != nil {
				t.Fatal(err)
			}
			if got := f.st.LoginServer(r); got != tt.login {
				t.Errorf("LoginServer = %q, want %q", got, tt.login)
			}
			if got := f.st.LoginServers(r); !slices.Equal(got, tt.all) {
				t.Errorf("LoginServers = %q, want %q", got, tt.all)
			}
			for _, h := range tt.local {
				if got, ok, err := f.st.LocalRegistry(ctx, h); err != nil || !ok || got.Name != "reg" {
					t.Errorf("LocalRegistry(%q) = %q, %v, %v; want reg", h, got.Name, ok, err)
				}
			}
			for _, h := range tt.other {
				if got, ok, err := f.st.LocalRegistry(ctx, h); err != nil || ok {
					t.Errorf("LocalRegistry(%q) = %q, %v, %v; want none", h, got.Name, ok, err)
				}
			}
		})
	}
}
