package cli

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/auth"
)

// newACRCmd is `gantry acr ...`: the registry commands under az acr's
// names and flags, so that the Azure CLI command lines of ACR's documents
// run with gantry in place of az. `gantry acr create` is `gantry registry
// create`, `gantry acr task create` is `gantry task create`, and so on;
// repository commands name their registry with -n/--name, as az acr's do.
// Every acr command accepts (and ignores) -g/--resource-group.
func newACRCmd(o *rootOpts) *cobra.Command {
	acr := &cobra.Command{
		Use:   "acr",
		Short: "The registry commands under az acr's names (gantry acr task create = gantry task create)",
		Long: `The registry commands under az acr's names and flags, so that az acr command
lines run with gantry in place of az: gantry acr create|show|list|update|delete|
login|show-usage are the gantry registry commands; gantry acr task, repository,
token, scope-map, import, build, run, cache and credential-set are the top-level
gantry commands of those names (repository takes the registry as -n/--name, as
in az acr). -g/--resource-group is accepted and ignored: gantry has no resource
groups (see gantry group --help); --sku is accepted and ignored: every registry
has every feature.`,
	}
	reg := newRegistryCmd(o)
	for _, c := range reg.Commands() {
		reg.RemoveCommand(c)
		if c.Name() == "create" {
			c.Flags().String("sku", "", "accepted for compatibility with az (Basic, Standard, Premium); ignored")
			c.Flags().StringP("location", "l", "", "accepted for compatibility with az; ignored")
		}
		acr.AddCommand(c)
	}
	acr.AddCommand(
		newTaskCmd(o),
		newRepositoryCmd(o, azRegistry),
		newTokenCmd(o),
		newScopeMapCmd(o),
		newImportCmd(o, azRegistry),
		newBuildCmd(o),
		newQuickRunCmd(o),
		newCacheCmd(o),
		newCredentialSetCmd(o),
	)
	acceptResourceGroup(acr)
	return acr
}

// acceptResourceGroup adds -g/--resource-group, accepted and ignored, to
// every command below c that has no such flag.
func acceptResourceGroup(c *cobra.Command) {
	for _, s := range c.Commands() {
		acceptResourceGroup(s)
	}
	if !c.Runnable() || c.Flags().Lookup("resource-group") != nil {
		return
	}
	if c.Flags().ShorthandLookup("g") != nil {
		c.Flags().String("resource-group", "", "accepted for compatibility with az; ignored")
		return
	}
	ignoreResourceGroup(c)
}

// resourceGroup is what gantry answers for a resource group: gantry has
// none, and every container instance lives in the one container scope, so
// a group's id is that scope (what a role assignment on the group grants).
type resourceGroup struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Location   string            `json:"location"`
	Properties map[string]string `json:"properties"`
}

var resourceGroupView = tableView{{"NAME", "name", nil}, {"LOCATION", "location", nil}, {"ID", "id", nil}}

// newGroupCmd is `gantry group create|show|exists|delete`, az's resource
// groups as far as gantry has them: one, the server's container scope.
func newGroupCmd(o *rootOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "group",
		Short: "Resource groups, as az group: gantry has one, the container scope /containers",
		Long: `gantry has no resource groups: registries, key vaults and container instances
are named on the server directly, and every container instance is in the one
container scope, /containers. So that az command lines which create a group and
use its id run unchanged, gantry group create and gantry group show answer for
any name with that scope as the group's id (a role assignment on
$(gantry group show -n RG --query id -o tsv) is one on /containers), and
--location is accepted and ignored. gantry group delete deletes nothing and
fails: delete registries, vaults and container instances by name.`,
	}
	var name string
	show := func(use, short string) *cobra.Command {
		c := &cobra.Command{
			Use: use, Short: short, Args: cobra.NoArgs,
			RunE: func(*cobra.Command, []string) error {
				return o.print(resourceGroup{ID: auth.ContainersScope, Name: name, Location: "local",
					Properties: map[string]string{"provisioningState": "Succeeded"}}, resourceGroupView)
			},
		}
		c.Flags().StringVarP(&name, "name", "n", "", "resource group name")
		_ = c.MarkFlagRequired("name")
		return c
	}
	create := show("create", "Answer as az group create does, with the container scope as the id (nothing is created)")
	create.Flags().StringP("location", "l", "", "accepted for compatibility with az; ignored")
	create.Flags().StringArray("tags", nil, "accepted for compatibility with az; ignored")
	exists := &cobra.Command{
		Use: "exists", Short: "Print true: every name is the one container scope", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return o.print(true, nil) },
	}
	exists.Flags().StringVarP(&name, "name", "n", "", "resource group name")
	_ = exists.MarkFlagRequired("name")
	del := &cobra.Command{
		Use: "delete", Short: "Fail: gantry has no resource groups to delete", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("gantry has no resource groups, so nothing was deleted: delete registries (gantry acr delete -n NAME), " +
				"key vaults (gantry keyvault delete -n NAME) and container instances (gantry container delete -n NAME) by name")
		},
	}
	del.Flags().StringVarP(&name, "name", "n", "", "resource group name")
	del.Flags().Bool("no-wait", false, "accepted for compatibility with az")
	del.Flags().BoolP("yes", "y", false, "accepted for compatibility with az")
	_ = del.MarkFlagRequired("name")
	cmd.AddCommand(create, show("show", "Show a resource group: the container scope"), exists, del)
	return cmd
}

// withResourceGroup is acceptResourceGroup returning c, for az's keyvault
// and role commands, which take -g/--resource-group.
func withResourceGroup(c *cobra.Command) *cobra.Command {
	acceptResourceGroup(c)
	return c
}
