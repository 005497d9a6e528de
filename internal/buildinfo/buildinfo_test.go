package buildinfo

import (
	"regexp"
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	t.Parallel()
	const rev = "1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d"
	vcs := func(modified string) *debug.BuildInfo {
		return &debug.BuildInfo{
			Main: debug.Module{Path: "github.com/gantryhq/gantry", Version: "v0.0.0-20261204190000-1a2b3c4d5e6f"},
			Settings: []debug.BuildSetting{
				{Key: "vcs", Value: "git"},
				{Key: "vcs.revision", Value: rev},
				{Key: "vcs.time", Value: "2026-12-04T19:00:00Z"},
				{Key: "vcs.modified", Value: modified},
			},
		}
	}
	for _, tc := range []struct {
		name                      string
		ldVersion, ldCommit, date string
		bi                        *debug.BuildInfo
		want                      Info
	}{
		{
			name:      "ldflags win",
			ldVersion: "v0.14.0", ldCommit: "0123456789abcdef0123456789abcdef01234567", date: "2026-12-05T08:00:00Z",
			bi:   vcs("true"),
			want: Info{Version: "0.14.0", Commit: "0123456789abcdef0123456789abcdef01234567", Date: "2026-12-05T08:00:00Z"},
		},
		{
			name:      "ldflags version only",
			ldVersion: "0.14.0-3-g1a2b3c4-dirty",
			bi:        vcs("true"),
			want:      Info{Version: "0.14.0-3-g1a2b3c4-dirty", Commit: rev + "-dirty", Date: "2026-12-04T19:00:00Z"},
		},
		{
			name: "toolchain record of a clean tree",
			bi:   vcs("false"),
			want: Info{Version: "0.0.0-20261204190000-1a2b3c4d5e6f", Commit: rev, Date: "2026-12-04T19:00:00Z"},
		},
		{
			name: "go install module@version",
			bi:   &debug.BuildInfo{Main: debug.Module{Version: "v0.14.0"}},
			want: Info{Version: "0.14.0", Commit: Unknown, Date: Unknown},
		},
		{
			name: "no VCS information (-buildvcs=false, a worktree)",
			bi:   &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			want: Info{Version: DevVersion, Commit: Unknown, Date: Unknown},
		},
		{
			name: "no build information",
			want: Info{Version: DevVersion, Commit: Unknown, Date: Unknown},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := resolve(tc.ldVersion, tc.ldCommit, tc.date, tc.bi); got != tc.want {
				t.Errorf("resolve = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		info Info
		want string
	}{
		{
			Info{Version: "0.14.0", Commit: "1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d", Date: "2026-12-04T19:00:00Z"},
			"gantry 0.14.0 (commit 1a2b3c4d5e6f, built 2026-12-04T19:00:00Z)",
		},
		{
			Info{Version: "0.14.0", Commit: "1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d-dirty", Date: "2026-12-04T19:00:00Z"},
			"gantry 0.14.0 (commit 1a2b3c4d5e6f-dirty, built 2026-12-04T19:00:00Z)",
		},
		{
			Info{Version: DevVersion, Commit: Unknown, Date: Unknown},
			"gantry 0.0.0-dev (commit unknown, built unknown)",
		},
	} {
		if got := tc.info.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.info, got, tc.want)
		}
	}
}

// semver is the grammar of semver.org, without the leading "v".
var semver = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// TestGet: a test binary has no -ldflags; its version is still semver.
// cmd/gantry's TestVersionLdflags builds gantry with them.
func TestGet(t *testing.T) {
	t.Parallel()
	info := Get()
	if !semver.MatchString(info.Version) {
		t.Errorf("Version = %q, not a semantic version", info.Version)
	}
	if info.Commit == "" || info.Date == "" {
		t.Errorf("Get() = %+v: empty fields", info)
	}
	for _, v := range []string{DevVersion, "0.14.0", "0.14.0-3-g1a2b3c4-dirty", "0.0.0-20261204190000-1a2b3c4d5e6f+dirty"} {
		if !semver.MatchString(v) {
			t.Errorf("%q: the semver pattern is wrong", v)
		}
	}
}
