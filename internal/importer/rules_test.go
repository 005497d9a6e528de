package importer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/vault"
)

func mustCompile(t *testing.T, name, source, target string) compiledRule {
	t.Helper()
	c, err := compileRule(CacheRule{Registry: "r", Name: name, SourceRepository: source, TargetRepository: target})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestOverlapRules is ACR's table: wildcard rules may not overlap each
// other (the same or a nested prefix, or "*"), static rules may not share a
// target, and a static rule may overlap a wildcard one.
func TestOverlapRules(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		existing [][2]string // source, target
		source   string
		target   string
		conflict bool
	}{
		{"first rule", nil, "up.example/library/node", "node", false},
		{"static same target", [][2]string{{"up.example/library/node", "node"}}, "other.example/node", "node", true},
		{"static different target", [][2]string{{"up.example/library/node", "node"}}, "up.example/library/node", "node2", false},
		{"static under wildcard", [][2]string{{"up.example/library/*", "library/*"}}, "other.example/node", "library/node", false},
		{"wildcard over static", [][2]string{{"other.example/node", "library/node"}}, "up.example/library/*", "library/*", false},
		{"same wildcard", [][2]string{{"up.example/library/*", "library/*"}}, "other.example/*", "library/*", true},
		{"nested wildcard below", [][2]string{{"up.example/library/*", "library/*"}}, "up.example/library/x/*", "library/x/*", true},
		{"nested wildcard above", [][2]string{{"up.example/library/x/*", "library/x/*"}}, "up.example/library/*", "library/*", true},
		{"registry wildcard over prefix", [][2]string{{"up.example/library/*", "library/*"}}, "up.example/*", "*", true},
		{"prefix under registry wildcard", [][2]string{{"up.example/*", "*"}}, "up.example/a/*", "a/*", true},
		{"sibling wildcards", [][2]string{{"up.example/library/*", "library/*"}}, "up.example/libraryx/*", "libraryx/*", false},
		{"static under registry wildcard", [][2]string{{"up.example/*", "*"}}, "mcr.example/dotnet/sdk", "dotnet/sdk", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var others []compiledRule
			for i, e := range c.existing {
				others = append(others, mustCompile(t, fmt.Sprintf("rule-%d", i), e[0], e[1]))
			}
			err := checkOverlap(mustCompile(t, "new-rule", c.source, c.target), others)
			if (err != nil) != c.conflict {
				t.Fatalf("conflict %v, got %v", c.conflict, err)
			}
			if err != nil && !errors.Is(err, ErrConflict) {
				t.Fatalf("error %v does not match ErrConflict", err)
			}
		})
	}
}

// TestRuleMatching: the most specific rule wins; wildcards map the rest of
// the path; Docker Hub names get library/.
func TestRuleMatching(t *testing.T) {
	t.Parallel()
	rs := newRuleSet([]compiledRule{
		mustCompile(t, "hub-all", "docker.io/*", "*"),
		mustCompile(t, "node-pin", "mirror.example/library/node", "library/node"),
		mustCompile(t, "static", "up.example/team/app", "app"),
	})
	cases := []struct{ repo, rule, upstream string }{
		{"app", "static", "team/app"},
		{"library/node", "node-pin", "library/node"},
		{"ubuntu", "hub-all", "library/ubuntu"},
		{"bitnami/redis", "hub-all", "bitnami/redis"},
	}
	for _, c := range cases {
		r, up, ok := rs.match(c.repo)
		if !ok || r.Name != c.rule || up != c.upstream {
			t.Errorf("%s: got %v %q %q, want %s %s", c.repo, ok, nameOf(r), up, c.rule, c.upstream)
		}
	}
	rs = newRuleSet([]compiledRule{mustCompile(t, "lib-rule", "up.example/library/*", "library/*")})
	if _, _, ok := rs.match("library"); ok {
		t.Error("library/* matched library")
	}
	if _, up, ok := rs.match("library/a/b"); !ok || up != "library/a/b" {
		t.Errorf("nested path: %v %s", ok, up)
	}
}

func nameOf(r *compiledRule) string {
	if r == nil {
		return ""
	}
	return r.Name
}

func TestRuleValidation(t *testing.T) {
	t.Parallel()
	bad := []CacheRule{
		{Name: "abc", SourceRepository: "up.example/a", TargetRepository: "a"},      // short name
		{Name: "bad_name", SourceRepository: "up.example/a", TargetRepository: "a"}, // underscore
		{Name: strings.Repeat("a", 51), SourceRepository: "up.example/a", TargetRepository: "a"},
		{Name: "valid", SourceRepository: "up.example/a/*", TargetRepository: "a"}, // wildcard on one side
		{Name: "valid", SourceRepository: "up.example/a", TargetRepository: "a/*"},
		{Name: "valid", SourceRepository: "up.example", TargetRepository: "a"},      // no repository
		{Name: "valid", SourceRepository: "up.example/a*b", TargetRepository: "ab"}, // inner wildcard
		{Name: "valid", SourceRepository: "up.example/A", TargetRepository: "a"},    // upper case
		{Name: "valid", SourceRepository: "up.example/a", TargetRepository: "../a"},
		{Name: "valid", SourceRepository: "up example/a", TargetRepository: "a"},
	}
	for _, r := range bad {
		if _, err := compileRule(r); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", r, err)
		}
	}
	c, err := compileRule(CacheRule{Name: "Hub-Ubuntu", SourceRepository: "Index.Docker.IO/ubuntu", TargetRepository: "ubuntu"})
	if err != nil || c.SourceRepository != "docker.io/ubuntu" || c.source.upstream("") != "library/ubuntu" {
		t.Fatalf("docker hub rule: %+v %v", c, err)
	}
}

// TestCacheRuleLifecycle goes through the service: create, the overlap
// and existing-target checks, credential-set matching, update, delete, the
// rule limit, and credential sets in use.
func TestCacheRuleLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.registry(t, "contoso", nil)
	pushStore(t, e.st, "contoso", "existing", artifact("application/x-test", []byte("x"), nil), "1")

	userURI := e.secret(t, "rules-kv", "user", "u")
	passURI := e.secret(t, "rules-kv", "pass", "p")
	if _, err := e.im.CreateCredentialSet(ctx, CredentialSet{Registry: "contoso", Name: "hub-creds", LoginServer: "docker.io",
		UsernameSecret: userURI, PasswordSecret: "literal-password"}); !errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), "literal-password") {
		t.Fatalf("literal password: %v", err)
	}
	cs, err := e.im.CreateCredentialSet(ctx, CredentialSet{Registry: "contoso", Name: "hub-creds", LoginServer: "https://index.docker.io/",
		UsernameSecret: userURI, PasswordSecret: passURI})
	if err != nil {
		t.Fatal(err)
	}
	if cs.LoginServer != "docker.io" || cs.PrincipalID == "" || cs.Health.ErrorCode != "AccessDenied" ||
		!strings.Contains(cs.Health.ErrorMessage, cs.PrincipalID) {
		t.Fatalf("credential set: %+v", cs)
	}
	if _, err := e.vlt.SetPolicy(ctx, e.admin, "rules-kv", cs.PrincipalID, []vault.Permission{vault.PermGet}); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.im.GetCredentialSet(ctx, "contoso", "hub-creds"); got.Health.Status != HealthHealthy {
		t.Fatalf("health after the policy: %+v", got.Health)
	}

	create := func(name, src, dst, cred string) error {
		_, err := e.im.CreateCacheRule(ctx, CacheRule{Registry: "contoso", Name: name, SourceRepository: src, TargetRepository: dst, CredentialSet: cred})
		return err
	}
	if err := create("hub-rule", "docker.io/library/*", "library/*", "hub-creds"); err != nil {
		t.Fatal(err)
	}
	if err := create("hub-rule", "docker.io/x", "x", ""); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate name: %v", err)
	}
	if err := create("nested-rule", "docker.io/library/x/*", "library/x/*", ""); !errors.Is(err, ErrConflict) {
		t.Fatalf("nested wildcard: %v", err)
	}
	if err := create("existing-rule", "docker.io/existing", "existing", ""); !errors.Is(err, ErrConflict) {
		t.Fatalf("existing target repository: %v", err)
	}
	if err := create("mcr-rule", "mcr.example/dotnet", "dotnet", "hub-creds"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("credential set of another login server: %v", err)
	}
	if err := create("ghost-rule", "docker.io/ghost", "ghost", "no-such-set"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing credential set: %v", err)
	}
	if err := e.im.CheckPush(ctx, "contoso", "library/node"); !errors.Is(err, auth.ErrDenied) {
		t.Fatalf("push guard: %v", err)
	}
	if err := e.im.CheckPush(ctx, "contoso", "other"); err != nil {
		t.Fatalf("push guard outside rules: %v", err)
	}
	if err := e.im.DeleteCredentialSet(ctx, "contoso", "hub-creds"); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "hub-rule") {
		t.Fatalf("deleting a used credential set: %v", err)
	}
	none := ""
	r, err := e.im.UpdateCacheRule(ctx, "contoso", "hub-rule", CacheRuleUpdate{CredentialSet: &none})
	if err != nil || r.CredentialSet != "" {
		t.Fatalf("removing the credential set: %+v %v", r, err)
	}
	if err := e.im.DeleteCredentialSet(ctx, "contoso", "hub-creds"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.au.Principal(ctx, cs.PrincipalID); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("credential-set identity left behind: %v", err)
	}
	rules, err := e.im.ListCacheRules(ctx, "contoso")
	if err != nil || len(rules) != 1 {
		t.Fatalf("list: %+v %v", rules, err)
	}
	if err := e.im.DeleteCacheRule(ctx, "contoso", "hub-rule"); err != nil {
		t.Fatal(err)
	}
	if err := e.im.CheckPush(ctx, "contoso", "library/node"); err != nil {
		t.Fatalf("push guard after delete: %v", err)
	}
	if err := e.im.DeleteCacheRule(ctx, "contoso", "hub-rule"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}

	// The limit.
	tx, err := e.db.W.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range MaxCacheRules {
		if _, err := tx.ExecContext(ctx, `INSERT INTO cache_rules(`+ruleCols+`) VALUES ('contoso', ?, ?, ?, '', '', '')`,
			fmt.Sprintf("rule-%04d", i), fmt.Sprintf("up.example/r%d", i), fmt.Sprintf("r%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := create("one-too-many", "up.example/x", "x", ""); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("rule limit: %v", err)
	}
}

func TestParseReference(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want Reference
	}{
		{"node:15", Reference{Host: "docker.io", Scheme: "https", Repository: "library/node", Tag: "15"}},
		{"docker.io/bitnami/redis", Reference{Host: "docker.io", Scheme: "https", Repository: "bitnami/redis", Tag: "latest"}},
		{"127.0.0.1:5000/a/b:v1", Reference{Host: "127.0.0.1:5000", Scheme: "http", Repository: "a/b", Tag: "v1"}},
		{"localhost:5000/a@sha256:" + strings.Repeat("a", 64), Reference{Host: "localhost:5000", Scheme: "http", Repository: "a", Digest: digest.Digest("sha256:" + strings.Repeat("a", 64))}},
		{"https://127.0.0.1:5000/a:1", Reference{Host: "127.0.0.1:5000", Scheme: "https", Repository: "a", Tag: "1"}},
		{"mcr.microsoft.com/dotnet/sdk:8.0@sha256:" + strings.Repeat("b", 64), Reference{Host: "mcr.microsoft.com", Scheme: "https", Repository: "dotnet/sdk", Tag: "8.0", Digest: digest.Digest("sha256:" + strings.Repeat("b", 64))}},
		{"gantry://publicregistry/node:15-alpine", Reference{Local: "publicregistry", Repository: "node", Tag: "15-alpine"}},
	}
	for _, c := range cases {
		got, err := ParseReference(c.in, nil)
		if err != nil || got != c.want {
			t.Errorf("%s: got %+v %v, want %+v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "http://registry.example/a:1", "ftp://x/a", "up.example/A:1", "up.example/a:b:c", "up.example/a@sha256:zz", "gantry://Bad_Name/a"} {
		if _, err := ParseReference(in, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v", in, err)
		}
	}
	if r, err := ParseReference("registry.lan:5000/a:1", func(h string) bool { return h == "registry.lan:5000" }); err != nil || r.Scheme != "http" {
		t.Errorf("insecure registry: %+v %v", r, err)
	}
}
