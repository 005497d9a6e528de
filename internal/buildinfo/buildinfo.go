// Package buildinfo reports the version of the running gantry binary.
package buildinfo

import "runtime/debug"

// Version is the module version stamped by the Go toolchain, or the VCS
// revision for development builds.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "devel-" + s.Value[:12]
		}
	}
	return "devel"
}
