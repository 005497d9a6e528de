package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/httpapi"
	"github.com/gantryhq/gantry/internal/importer"
	"github.com/gantryhq/gantry/internal/testenv/stack"
)

// importerFake answers imports with the error named by the source, after
// one progress step when the source starts with "late-".
type importerFake struct {
	importer.Service // unused methods would panic; the test calls only these
	rules            []importer.CacheRule
}

var importFailures = map[string]error{
	"throttled":  fmt.Errorf("upstream: %w", importer.ErrRateLimited),
	"down":       fmt.Errorf("upstream: %w", importer.ErrUnavailable),
	"bad":        fmt.Errorf("upstream: %w", importer.ErrUpstream),
	"invalid":    fmt.Errorf("source: %w", importer.ErrInvalid),
	"tag-exists": fmt.Errorf("tag x: use --force: %w", importer.ErrTagExists),
	"reserved":   fmt.Errorf("repo x: %w", importer.ErrCacheTarget),
	"missing":    fmt.Errorf("x: %w", importer.ErrSourceUnknown),
	"refused":    fmt.Errorf("x: %w", importer.ErrUpstreamAuth),
	"policy":     fmt.Errorf("import from x: %w", importer.ErrRefused),
}

func (f *importerFake) Import(_ context.Context, _ auth.Identity, _ string, req importer.ImportRequest, progress func(importer.Progress)) (importer.ImportResult, error) {
	src := req.Source
	if len(src) > 5 && src[:5] == "late-" {
		src = src[5:]
		if progress != nil {
			progress(importer.Progress{Action: importer.ActionStarted, Kind: "image", Message: "Importing"})
		}
	}
	if err := importFailures[src]; err != nil {
		return importer.ImportResult{}, err
	}
	return importer.ImportResult{Source: src, Digest: digest.Digest("sha256:" + fmt.Sprintf("%064d", 1)), Manifests: 1, RateLimitRemaining: -1}, nil
}

func (f *importerFake) ListCacheRules(context.Context, string) ([]importer.CacheRule, error) {
	return f.rules, nil
}

func (f *importerFake) CreateCacheRule(_ context.Context, r importer.CacheRule) (importer.CacheRule, error) {
	f.rules = append(f.rules, r)
	return r, nil
}

// TestImporterErrors: importer errors get their API codes, before and
// after the progress stream has started; cache-rule writes need the
// registry's owner.
func TestImporterErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newServices(t, "admin-password")
	st, au, vlt := svc.Store, svc.Auth, svc.Vault
	fake := &importerFake{}
	srv := httptest.NewServer(httpapi.New(st, au, vlt, stack.NoRegistries{}, httpapi.WithImporter(fake)))
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL, client.WithBasicAuth(auth.AdminUsername, "admin-password"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*api.Error{
		"throttled": api.ErrTooManyRequests, "down": api.ErrUnavailable, "bad": api.ErrUnavailable,
		"invalid": api.ErrInvalid, "tag-exists": api.ErrConflict, "reserved": api.ErrDenied,
		"missing": api.ErrNotFound, "refused": api.ErrDenied, "policy": api.ErrDenied,
	}
	for src, code := range want {
		for _, streamed := range []bool{false, true} {
			var progress func(api.ImportProgress)
			var steps int
			if streamed {
				progress = func(api.ImportProgress) { steps++ }
			}
			_, err := c.Import(ctx, "contoso", api.ImportRequest{Source: "late-" + src}, progress)
			if !errors.Is(err, code) {
				t.Errorf("%s (streamed %v): %v, want %s", src, streamed, err, code.Code)
			}
			if streamed && steps != 1 {
				t.Errorf("%s: %d progress steps", src, steps)
			}
		}
	}
	res, err := c.Import(ctx, "contoso", api.ImportRequest{Source: "ok"}, func(api.ImportProgress) {})
	if err != nil || res.Manifests != 1 || res.RateLimitRemaining != nil {
		t.Fatalf("import: %+v %v", res, err)
	}
	if _, err := c.Import(ctx, "contoso", api.ImportRequest{}, nil); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("no source: %v", err)
	}

	// A token may pull and push but not manage cache rules.
	tok, err := au.CreateToken(ctx, auth.TokenSpec{Registry: "contoso", Name: "pusher", ScopeMap: "_repositories_push"})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := client.New(srv.URL, client.WithBasicAuth("pusher", tok.Passwords[0].Value))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc.CreateCacheRule(ctx, "contoso", api.CreateCacheRuleRequest{Name: "rule-1", SourceRepository: "up.example/a", TargetRepository: "a"}); !errors.Is(err, api.ErrDenied) {
		t.Fatalf("token creating a cache rule: %v", err)
	}
	if _, err := c.CreateCacheRule(ctx, "contoso", api.CreateCacheRuleRequest{Name: "rule-1", SourceRepository: "up.example/a", TargetRepository: "a"}); err != nil {
		t.Fatal(err)
	}
	if rules, err := c.ListCacheRules(ctx, "contoso"); err != nil || len(rules) != 1 {
		t.Fatalf("list: %+v %v", rules, err)
	}
	anon, _ := client.New(srv.URL)
	if _, err := anon.ListCacheRules(ctx, "contoso"); !errors.Is(err, api.ErrUnauthenticated) {
		t.Fatalf("anonymous: %v", err)
	}
}
