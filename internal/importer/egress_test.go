package importer

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/egress"
	"github.com/gantryhq/gantry/internal/store"
)

// TestImportReach: an upstream on this machine is fetched from for the
// admin and for an owner of the target registry, and refused, before any
// request, for a caller that may only push; the control API's address is
// refused for everyone, and so are cache rules naming it.
func TestImportReach(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var hits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		http.NotFound(w, nil)
	}))
	t.Cleanup(up.Close)
	control := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		t.Error("the control API was fetched from")
	}))
	t.Cleanup(control.Close)
	upHost, controlHost := strings.TrimPrefix(up.URL, "http://"), strings.TrimPrefix(control.URL, "http://")
	p, err := egress.New(egress.WithControlAddr(controlHost))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, WithEgress(p))
	if _, err := e.st.CreateRegistry(ctx, store.Registry{Name: "contoso"}); err != nil {
		t.Fatal(err)
	}
	identity := func(role auth.Role) auth.Identity {
		t.Helper()
		pr, err := e.au.CreateIdentity(ctx, "reach-"+string(role))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.au.CreateRoleAssignment(ctx, pr.ID, role, auth.RegistryScope("contoso")); err != nil {
			t.Fatal(err)
		}
		return auth.Identity{Principal: pr.ID, Name: pr.Name, Kind: auth.KindIdentity}
	}
	importAs := func(id auth.Identity, host string) error {
		_, err := e.im.Import(ctx, id, "contoso", ImportRequest{Source: host + "/app:1", Targets: []string{"app:1"}}, nil)
		return err
	}

	for name, id := range map[string]auth.Identity{"admin": e.admin, "owner": identity(auth.RoleOwner)} {
		before := hits.Load()
		if err := importAs(id, upHost); !errors.Is(err, ErrSourceUnknown) || hits.Load() == before {
			t.Errorf("%s: import from loopback: %v (upstream hits %d), want it fetched (not found)", name, err, hits.Load()-before)
		}
		if err := importAs(id, controlHost); !errors.Is(err, ErrRefused) || !errors.Is(err, auth.ErrDenied) ||
			!strings.Contains(err.Error(), "import from "+controlHost+"/app:1: upstream "+controlHost+" is the gantry control API (refused)") {
			t.Errorf("%s: import from the control API: %v", name, err)
		}
	}
	pusher := identity(auth.RoleAcrPush)
	before := hits.Load()
	err = importAs(pusher, upHost)
	var re *egress.RefusedError
	if !errors.Is(err, ErrRefused) || !errors.As(err, &re) || re.Reason != egress.ReasonLoopback {
		t.Errorf("acrpush identity: import from loopback: %v, want refused as loopback", err)
	}
	if hits.Load() != before {
		t.Errorf("the refused import reached the upstream")
	}

	if _, err := e.im.CreateCacheRule(ctx, CacheRule{Registry: "contoso", Name: "to-control", SourceRepository: controlHost + "/x/*", TargetRepository: "x/*"}); !errors.Is(err, ErrRefused) {
		t.Errorf("cache rule to the control API: %v", err)
	}
	if _, err := e.im.CreateCacheRule(ctx, CacheRule{Registry: "contoso", Name: "to-metadata", SourceRepository: "169.254.169.254/x/*", TargetRepository: "y/*"}); !errors.Is(err, ErrRefused) ||
		!strings.Contains(err.Error(), "is link-local/metadata (refused)") {
		t.Errorf("cache rule to the metadata address: %v", err)
	}
}
