package engine

import (
	"bytes"
	"slices"
	"testing"
	"time"
)

// TestAliasStepsConfined: the container of a gantry or az alias step has a
// read-only root with a private /tmp and a HOME volume of its own; other
// steps write their root and share the run's HOME volume. Both drop every
// capability but the step list and run with no-new-privileges.
func TestAliasStepsConfined(t *testing.T) {
	r := newRun(New(nil), Job{RunID: "ca1", RegistryName: "contoso", GantryEnv: map[string]string{"GANTRY_TOKEN": "t"}},
		newRunLog(&bytes.Buffer{}, time.Now))
	r.plan = testPlan(t, "steps:\n  - cmd: busybox true\n")
	s := &r.plan.Steps[0]
	for _, tc := range []struct {
		cli      bool
		readOnly bool
		home     string
	}{
		{cli: true, readOnly: true, home: r.names.cliHome},
		{cli: false, readOnly: false, home: r.names.home},
	} {
		cfg, host := r.containerConfig(s, &stepState{image: "sha256:x", cli: tc.cli})
		var homes, tmp []string
		for _, m := range host.Mounts {
			switch m.Target {
			case HomeDir:
				homes = append(homes, m.Source)
			case "/tmp":
				tmp = append(tmp, m.Type)
			}
		}
		if host.ReadonlyRootfs != tc.readOnly || (tc.readOnly && !slices.Equal(tmp, []string{"tmpfs"})) {
			t.Errorf("cli=%v: read-only root %v, /tmp %v", tc.cli, host.ReadonlyRootfs, tmp)
		}
		if len(homes) != 1 || homes[0] != tc.home {
			t.Errorf("cli=%v: HOME volumes %v, want %s", tc.cli, homes, tc.home)
		}
		if !slices.Equal(host.CapDrop, []string{"ALL"}) || !slices.Equal(host.CapAdd, stepCapabilities) || !slices.Contains(host.SecurityOpt, "no-new-privileges") {
			t.Errorf("cli=%v: caps -%v +%v, security %v", tc.cli, host.CapDrop, host.CapAdd, host.SecurityOpt)
		}
		if hasToken := slices.Contains(cfg.Env, "GANTRY_TOKEN=t"); hasToken != tc.cli {
			t.Errorf("cli=%v: GANTRY_TOKEN in the environment: %v", tc.cli, hasToken)
		}
	}
}
