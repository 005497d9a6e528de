package cli

import (
	"strings"
	"testing"
)

// TestGroupCommands: gantry group answers for any name with the container
// scope and deletes nothing, saying so with exit code 1; az's flags are
// accepted, unknown ones are usage errors.
func TestGroupCommands(t *testing.T) {
	if got := must(t, "group", "create", "--name", "hello-world-aci-rg", "--location", "eastus", "--query", "id", "-o", "tsv"); got != "/containers\n" {
		t.Errorf("group create id = %q", got)
	}
	if got := must(t, "group", "show", "-n", "hello-world-aci-rg", "--query", "[name, location]", "-o", "tsv"); got != "hello-world-aci-rg\nlocal\n" {
		t.Errorf("group show = %q", got)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"group", "delete", "-n", "contoso-rg", "--no-wait", "-y"}, 1, "gantry has no resource groups, so nothing was deleted"},
		{[]string{"group", "create", "--location", "eastus"}, 2, `required flag(s) "name" not set`},
		{[]string{"group", "create", "-n", "rg", "--subscription", "x"}, 2, "unknown flag: --subscription"},
		{[]string{"group", "move"}, 2, `unknown command "move" for "gantry group"`},
		{[]string{"acr", "nosuch"}, 2, `unknown command "nosuch" for "gantry acr"`},
		{[]string{"acr", "create", "--resource-group", "rg", "--sku", "Premium"}, 2, `required flag(s) "name" not set`},
	} {
		code, _, errOut := gantry(t, "", tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("gantry %s: exit %d, %q; want %d, %q", strings.Join(tc.args, " "), code, errOut, tc.code, tc.want)
		}
	}
}
