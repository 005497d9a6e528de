package source

import "testing"

func TestLocalContextPath(t *testing.T) {
	for in, want := range map[string]string{
		"":                                      "",
		"/srv/ctx":                              "/srv/ctx",
		"file:///srv/repo.git#main":             "/srv/repo.git",
		"/srv/repo.git#main:sub":                "/srv/repo.git",
		"https://github.com/contoso/app.git":    "",
		"git@github.com:contoso/app.git":        "",
		"user@host:repo.git":                    "",
		"https://github.com/contoso/app#main:x": "",
	} {
		if got := LocalPath(in); got != want {
			t.Errorf("LocalPath(%q) = %q, want %q", in, got, want)
		}
	}
}
