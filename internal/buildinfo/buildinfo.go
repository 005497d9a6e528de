// Package buildinfo reports the version, commit and build date of the
// running gantry binary.
//
// scripts/build.sh stamps all three with the linker:
//
//	go build -ldflags "-X github.com/gantryhq/gantry/internal/buildinfo.version=0.14.0 \
//	  -X github.com/gantryhq/gantry/internal/buildinfo.commit=<git rev-parse HEAD> \
//	  -X github.com/gantryhq/gantry/internal/buildinfo.date=2026-12-04T19:00:00Z"
//
// A field the linker did not set falls back to what the Go toolchain
// records (debug.ReadBuildInfo): the module version (go install
// module@v0.14.0, or the pseudo-version a build in a git clone gets), the
// vcs.revision ("-dirty" appended when vcs.modified) and the vcs.time, which
// is the commit's time (the toolchain does not record when it built). The
// toolchain records no VCS information under -buildvcs=false or in a git
// worktree; the version is then DevVersion and the commit and date unknown.
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Set with -ldflags -X (see the package comment); empty otherwise.
var (
	version string
	commit  string
	date    string
)

// DevVersion is the version of a build that carries no version: a
// semver pre-release below every release.
const DevVersion = "0.0.0-dev"

// Unknown is the commit or date of a build that records neither.
const Unknown = "unknown"

// Info describes one build.
type Info struct {
	// Version is a semantic version without the leading "v", e.g. 0.14.0,
	// 0.14.0-3-g1a2b3c4 (three commits after the tag v0.14.0) or DevVersion.
	Version string `json:"version"`
	// Commit is the full revision, with "-dirty" when the tree had
	// uncommitted changes, or Unknown.
	Commit string `json:"commit"`
	// Date is when the binary was built (RFC 3339, UTC) or, without
	// -ldflags, the commit's time; or Unknown.
	Date string `json:"date"`
}

// Get returns the running binary's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(version, commit, date, bi)
}

// Version is Get().Version.
func Version() string { return Get().Version }

// String is the one-line form: "gantry 0.14.0 (commit 1a2b3c4d5e6f, built
// 2026-12-04T19:00:00Z)".
func (i Info) String() string {
	return fmt.Sprintf("gantry %s (commit %s, built %s)", i.Version, i.ShortCommit(), i.Date)
}

// ShortCommit is the commit's first 12 hexadecimal digits, keeping a
// "-dirty" suffix.
func (i Info) ShortCommit() string {
	rev, dirty := strings.CutSuffix(i.Commit, "-dirty")
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// resolve combines the linker-set values with the toolchain's record bi
// (nil when the binary has none): a value set by the linker wins.
func resolve(ldVersion, ldCommit, ldDate string, bi *debug.BuildInfo) Info {
	info := Info{
		Version: strings.TrimPrefix(ldVersion, "v"),
		Commit:  ldCommit,
		Date:    ldDate,
	}
	var rev, when string
	var modified bool
	if bi != nil {
		if v := bi.Main.Version; info.Version == "" && v != "" && v != "(devel)" {
			// A pseudo-version of a modified tree ends in "+dirty"
			// already.
			info.Version = strings.TrimPrefix(v, "v")
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if info.Version == "" {
		info.Version = DevVersion
	}
	if info.Commit == "" && rev != "" {
		info.Commit = rev
		if modified {
			info.Commit += "-dirty"
		}
	}
	if info.Commit == "" {
		info.Commit = Unknown
	}
	if info.Date == "" {
		info.Date = when
	}
	if info.Date == "" {
		info.Date = Unknown
	}
	return info
}
