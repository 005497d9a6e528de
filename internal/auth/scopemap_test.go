package auth

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
)

func TestValidatePattern(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern string
		ok      bool
	}{
		{"*", true},
		{"hello-world", true},
		{"samples/hello-world", true},
		{"samples/*", true},
		{"sample/teamA/*", false}, // uppercase is not a repository name
		{"sample/team-a/*", true},
		{"a.b_c__d--e/f", true},
		{"", false},
		{"sample/*/teamA", false},
		{"sample/teamA*", false},
		{"sample/team*", false},
		{"sample/teamA/*/projectB/*", false},
		{"*/*", false},
		{"/*", false},
		{"**", false},
		{"sample/", false},
		{"Sample", false},
		{"-sample", false},
		{"sample//x", false},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			t.Parallel()
			err := ValidatePattern(tc.pattern)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidatePattern(%q) = %v, want ok=%v", tc.pattern, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestScopeMapActions(t *testing.T) {
	t.Parallel()
	// The additive example of the ACR documentation.
	additive := ScopeMap{Rules: []RepositoryRule{
		{Repository: "sample/*", Actions: []string{ContentRead}},
		{Repository: "sample/teama/*", Actions: []string{ContentWrite}},
		{Repository: "sample/teama/projectb", Actions: []string{ContentDelete}},
	}}
	for _, tc := range []struct {
		name string
		m    ScopeMap
		repo string
		want []string
	}{
		{"additive all three", additive, "sample/teama/projectb", []string{ContentDelete, ContentRead, ContentWrite}},
		{"additive two", additive, "sample/teama/projectc", []string{ContentRead, ContentWrite}},
		{"additive nested read", additive, "sample/teamb/x/y", []string{ContentRead}},
		{"prefix does not match itself", additive, "sample", nil},
		{"prefix needs a separator", additive, "samplex/a", nil},
		{"unrelated", additive, "other", nil},
		{"root wildcard", systemScopeMaps[ScopeMapPull], "any/thing", []string{ContentRead, MetadataRead}},
		{"exact only", ScopeMap{Rules: []RepositoryRule{{Repository: "node", Actions: []string{ContentRead}}}}, "node/x", nil},
		{"exact", ScopeMap{Rules: []RepositoryRule{{Repository: "node", Actions: []string{ContentRead}}}}, "node", []string{ContentRead}},
		{"admin map", systemScopeMaps[ScopeMapAdmin], "x", ScopeActions()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.m.Actions(tc.repo); !slices.Equal(got, tc.want) {
				t.Fatalf("Actions(%q) = %v, want %v", tc.repo, got, tc.want)
			}
		})
	}
}

func TestScopeMapCRUD(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	s := e.s

	m, err := s.CreateScopeMap(ctx, "reg1", "readers", "read stuff", []RepositoryRule{
		{Repository: "samples/*", Actions: []string{ContentRead, MetadataRead}},
		{Repository: "node", Actions: []string{ContentRead}},
		{Repository: "node", Actions: []string{ContentRead, MetadataRead}}, // merged
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []RepositoryRule{
		{Repository: "node", Actions: []string{ContentRead, MetadataRead}},
		{Repository: "samples/*", Actions: []string{ContentRead, MetadataRead}},
	}
	if !rulesEqual(m.Rules, want) {
		t.Fatalf("rules = %+v, want %+v", m.Rules, want)
	}

	for _, tc := range []struct {
		name     string
		registry string
		map_     string
		rules    []RepositoryRule
		want     error
	}{
		{"duplicate", "reg1", "readers", want, ErrExists},
		{"same name other registry", "reg2", "readers", want, nil},
		{"unknown registry", "nope", "readers", want, ErrNotFound},
		{"invalid pattern", "reg1", "bad-pattern", []RepositoryRule{{Repository: "sample/*/teama", Actions: []string{ContentRead}}}, ErrInvalid},
		{"invalid pattern 2", "reg1", "bad-pattern", []RepositoryRule{{Repository: "sample/teama*", Actions: []string{ContentRead}}}, ErrInvalid},
		{"invalid action", "reg1", "bad-action", []RepositoryRule{{Repository: "x", Actions: []string{"content/execute"}}}, ErrInvalid},
		{"no actions", "reg1", "no-actions", []RepositoryRule{{Repository: "x"}}, ErrInvalid},
		{"no rules", "reg1", "no-rules", nil, ErrInvalid},
		{"system name", "reg1", ScopeMapPull, want, ErrInvalid},
		{"short name", "reg1", "abc", want, ErrInvalid},
	} {
		_, err := s.CreateScopeMap(ctx, tc.registry, tc.map_, "", tc.rules)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: CreateScopeMap = %v, want %v", tc.name, err, tc.want)
		}
	}

	// Update: add and remove rules, change the description.
	desc := "new"
	m, err = s.UpdateScopeMap(ctx, "reg1", "readers", ScopeMapUpdate{
		Description: &desc,
		Add:         []RepositoryRule{{Repository: "node", Actions: []string{ContentWrite}}, {Repository: "*", Actions: []string{MetadataRead}}},
		Remove:      []RepositoryRule{{Repository: "samples/*"}, {Repository: "node", Actions: []string{MetadataRead}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want = []RepositoryRule{
		{Repository: "*", Actions: []string{MetadataRead}},
		{Repository: "node", Actions: []string{ContentRead, ContentWrite}},
	}
	if m.Description != "new" || !rulesEqual(m.Rules, want) {
		t.Fatalf("after update: %+v", m)
	}
	got, err := s.GetScopeMap(ctx, "reg1", "readers")
	if err != nil || !rulesEqual(got.Rules, want) {
		t.Fatalf("GetScopeMap = %+v, %v", got, err)
	}

	// System maps are listed, shown, and immutable.
	list, err := s.ListScopeMaps(ctx, "reg1")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range list {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{ScopeMapAdmin, ScopeMapPull, ScopeMapPush, "readers"}) {
		t.Fatalf("ListScopeMaps = %v", names)
	}
	sys, err := s.GetScopeMap(ctx, "reg1", ScopeMapPush)
	if err != nil || !sys.System || !slices.Equal(sys.Actions("x"), []string{ContentRead, ContentWrite, MetadataRead, MetadataWrite}) {
		t.Fatalf("GetScopeMap(push) = %+v, %v", sys, err)
	}
	if _, err := s.UpdateScopeMap(ctx, "reg1", ScopeMapPull, ScopeMapUpdate{Add: want}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("updating a system map: %v", err)
	}
	if err := s.DeleteScopeMap(ctx, "reg1", ScopeMapAdmin); !errors.Is(err, ErrInvalid) {
		t.Fatalf("deleting a system map: %v", err)
	}
	if _, err := s.GetScopeMap(ctx, "nope", ScopeMapPull); !errors.Is(err, ErrNotFound) {
		t.Fatalf("system map of unknown registry: %v", err)
	}
	if _, err := s.UpdateScopeMap(ctx, "reg1", "missing-map", ScopeMapUpdate{Add: want}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("updating a missing map: %v", err)
	}

	// A map in use cannot be deleted.
	mustToken(t, s, TokenSpec{Registry: "reg1", Name: "reader-token", ScopeMap: "readers"})
	if err := s.DeleteScopeMap(ctx, "reg1", "readers"); !errors.Is(err, ErrConflict) {
		t.Fatalf("deleting a map in use: %v", err)
	}
	if err := s.DeleteToken(ctx, "reg1", "reader-token"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteScopeMap(ctx, "reg1", "readers"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetScopeMap(ctx, "reg1", "readers"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted map: %v", err)
	}
	if err := s.DeleteScopeMap(ctx, "reg1", "readers"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
}

// TestScopeMapUpdateAppliesAtOnce checks that a scope map change reaches a
// token's Basic logins and its already-issued bearer tokens on the next
// request.
func TestScopeMapUpdateAppliesAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	s := e.s
	if _, err := s.CreateScopeMap(ctx, "reg1", "app-map", "", []RepositoryRule{{Repository: "app", Actions: []string{ContentRead}}}); err != nil {
		t.Fatal(err)
	}
	tok := mustToken(t, s, TokenSpec{Registry: "reg1", Name: "app-token", ScopeMap: "app-map"})
	pw := tok.Passwords[0].Value
	bearerTok := fetchToken(t, s, "reg1", basic("app-token", pw), "repository:app:pull,push")

	check := func(step string, how func(*http.Request), need []Access, want outcome) {
		t.Helper()
		r := request("GET", "/v2/")
		how(r)
		_, err := s.Authorize(r, "reg1", need)
		if got := classify(err); got != want {
			t.Fatalf("%s: got %s (%v), want %s", step, got, err, want)
		}
	}
	check("basic pull before", basic("app-token", pw), pull("app"), allow)
	check("bearer pull before", bearer(bearerTok), pull("app"), allow)
	check("basic push before", basic("app-token", pw), push("app"), deny)

	if _, err := s.UpdateScopeMap(ctx, "reg1", "app-map", ScopeMapUpdate{Remove: []RepositoryRule{{Repository: "app"}}}); err != nil {
		t.Fatal(err)
	}
	check("basic pull after removal", basic("app-token", pw), pull("app"), deny)
	check("bearer pull after removal", bearer(bearerTok), pull("app"), deny)

	if _, err := s.UpdateScopeMap(ctx, "reg1", "app-map", ScopeMapUpdate{Add: []RepositoryRule{{Repository: "app", Actions: []string{ContentRead, ContentWrite}}}}); err != nil {
		t.Fatal(err)
	}
	check("basic push after grant", basic("app-token", pw), push("app"), allow)
	// The bearer token was issued without push (not granted then): the client
	// is sent back to the token endpoint.
	check("bearer push after grant", bearer(bearerTok), push("app"), unauth)
	check("bearer pull after grant", bearer(bearerTok), pull("app"), allow)

	// Switching the token to another map applies at once too.
	m := ScopeMapPull
	if _, err := s.UpdateToken(ctx, "reg1", "app-token", TokenUpdate{ScopeMap: &m}); err != nil {
		t.Fatal(err)
	}
	check("basic push after map switch", basic("app-token", pw), push("app"), deny)
	check("basic pull elsewhere after map switch", basic("app-token", pw), pull("other"), allow)
}

func rulesEqual(a, b []RepositoryRule) bool {
	return slices.EqualFunc(a, b, func(x, y RepositoryRule) bool {
		return x.Repository == y.Repository && slices.Equal(x.Actions, y.Actions)
	})
}
