package cli

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
)

func toRepositoryActions(vals []string, flag string) ([]api.RepositoryActions, error) {
	pairs, err := repoActions(vals, flag)
	if err != nil {
		return nil, err
	}
	out := make([]api.RepositoryActions, 0, len(pairs))
	for _, p := range pairs {
		out = append(out, api.RepositoryActions{Repository: p.repo, Actions: p.actions})
	}
	return out, nil
}

var scopeMapView = tableView{{"NAME", "name", nil}, {"TYPE", "type", nil}, {"CREATION DATE", "creationDate", nil}, {"DESCRIPTION", "description", nil}}

func newScopeMapCmd(o *rootOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "scope-map", Short: "Manage scope maps: sets of repository permissions for tokens"}
	var registry, name, description string
	var repos, addRepos, removeRepos []string
	common := func(c *cobra.Command, needName bool) {
		c.Flags().StringVarP(&registry, "registry", "r", "", "registry name")
		_ = c.MarkFlagRequired("registry")
		if needName {
			c.Flags().StringVarP(&name, "name", "n", "", "scope map name")
			_ = c.MarkFlagRequired("name")
		}
	}
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a scope map: --repository REPO ACTION... (repeatable)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ras, err := toRepositoryActions(repos, "--repository")
			if err != nil {
				return err
			}
			return o.call(func(c *client.Client) (any, error) {
				return c.CreateScopeMap(cmd.Context(), registry, api.CreateScopeMapRequest{Name: name, Description: description, Repositories: ras})
			}, scopeMapView)
		},
	}
	common(create, true)
	create.Flags().StringArrayVar(&repos, "repository", nil, "repository (name, name/* or *) followed by actions: content/read content/write content/delete metadata/read metadata/write")
	create.Flags().StringVar(&description, "description", "", "description")

	update := &cobra.Command{
		Use:   "update",
		Short: "Add or remove repository permissions of a scope map",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			add, err := toRepositoryActions(addRepos, "--add-repository")
			if err != nil {
				return err
			}
			remove, err := toRepositoryActions(removeRepos, "--remove-repository")
			if err != nil {
				return err
			}
			req := api.UpdateScopeMapRequest{Add: add, Remove: remove}
			if cmd.Flags().Changed("description") {
				req.Description = &description
			}
			return o.call(func(c *client.Client) (any, error) {
				return c.UpdateScopeMap(cmd.Context(), registry, name, req)
			}, scopeMapView)
		},
	}
	common(update, true)
	update.Flags().StringArrayVar(&addRepos, "add-repository", nil, "repository followed by actions to add")
	update.Flags().StringArrayVar(&removeRepos, "remove-repository", nil, "repository followed by actions to remove")
	update.Flags().StringVar(&description, "description", "", "new description")

	show := &cobra.Command{
		Use: "show", Short: "Show a scope map", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.GetScopeMap(cmd.Context(), registry, name) }, scopeMapView)
		},
	}
	common(show, true)
	list := &cobra.Command{
		Use: "list", Short: "List scope maps", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.ListScopeMaps(cmd.Context(), registry) }, scopeMapView)
		},
	}
	common(list, false)
	del := &cobra.Command{
		Use: "delete", Short: "Delete a scope map", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return nil, c.DeleteScopeMap(cmd.Context(), registry, name) }, nil)
		},
	}
	common(del, true)
	cmd.AddCommand(create, update, show, list, del)
	return cmd
}

var tokenView = tableView{
	{"NAME", "name", nil}, {"SCOPE MAP", "scopeMapId", nil},
	{"PASSWORD1 EXPIRY", "credentials.passwords[?name=='password1'] | [0].expiry", nil},
	{"PASSWORD2 EXPIRY", "credentials.passwords[?name=='password2'] | [0].expiry", nil},
	{"STATUS", "status", nil}, {"CREATION DATE", "creationDate", nil},
}

func newTokenCmd(o *rootOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage repository-scoped tokens of a registry"}
	var registry, name, scopeMap, status string
	var repos []string
	var days int
	var noPasswords, pw1, pw2 bool
	common := func(c *cobra.Command, needName bool) {
		c.Flags().StringVarP(&registry, "registry", "r", "", "registry name")
		_ = c.MarkFlagRequired("registry")
		if needName {
			c.Flags().StringVarP(&name, "name", "n", "", "token name (the user name to log in with)")
			_ = c.MarkFlagRequired("name")
		}
	}
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a token with --scope-map, or --repository REPO ACTION... (creates NAME-scope-map); passwords are shown once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ras, err := toRepositoryActions(repos, "--repository")
			if err != nil {
				return err
			}
			req := api.CreateTokenRequest{Name: name, ScopeMap: scopeMap, Repositories: ras, Status: status,
				ExpirationInDays: days, NoPasswords: noPasswords}
			return o.call(func(c *client.Client) (any, error) { return c.CreateToken(cmd.Context(), registry, req) }, tokenView)
		},
	}
	common(create, true)
	create.Flags().StringVar(&scopeMap, "scope-map", "", "scope map to use, e.g. _repositories_pull")
	create.Flags().StringArrayVar(&repos, "repository", nil, "repository followed by actions")
	create.Flags().StringVar(&status, "status", "", "enabled (default) or disabled")
	create.Flags().IntVar(&days, "expiration-in-days", 0, "passwords expire after this many days (default never)")
	create.Flags().BoolVar(&noPasswords, "no-passwords", false, "create without passwords")

	update := &cobra.Command{
		Use: "update", Short: "Change a token's status or scope map", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var req api.UpdateTokenRequest
			if cmd.Flags().Changed("status") {
				req.Status = &status
			}
			if cmd.Flags().Changed("scope-map") {
				req.ScopeMap = &scopeMap
			}
			return o.call(func(c *client.Client) (any, error) { return c.UpdateToken(cmd.Context(), registry, name, req) }, tokenView)
		},
	}
	common(update, true)
	update.Flags().StringVar(&status, "status", "", "enabled or disabled")
	update.Flags().StringVar(&scopeMap, "scope-map", "", "new scope map")

	show := &cobra.Command{
		Use: "show", Short: "Show a token", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.GetToken(cmd.Context(), registry, name) }, tokenView)
		},
	}
	common(show, true)
	list := &cobra.Command{
		Use: "list", Short: "List tokens", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.ListTokens(cmd.Context(), registry) }, tokenView)
		},
	}
	common(list, false)
	del := &cobra.Command{
		Use: "delete", Short: "Delete a token", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return nil, c.DeleteToken(cmd.Context(), registry, name) }, nil)
		},
	}
	common(del, true)

	cred := &cobra.Command{Use: "credential", Short: "Manage token passwords"}
	gen := &cobra.Command{
		Use: "generate", Short: "Generate new passwords (both unless --password1 or --password2); shown once", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := api.GenerateCredentialRequest{Password1: pw1, Password2: pw2, ExpirationInDays: days}
			return o.call(func(c *client.Client) (any, error) { return c.GenerateCredential(cmd.Context(), registry, name, req) }, tokenView)
		},
	}
	common(gen, true)
	gen.Flags().BoolVar(&pw1, "password1", false, "regenerate password1")
	gen.Flags().BoolVar(&pw2, "password2", false, "regenerate password2")
	gen.Flags().IntVar(&days, "expiration-in-days", 0, "the new passwords expire after this many days")
	cred.AddCommand(gen)

	cmd.AddCommand(create, update, show, list, del, cred)
	return cmd
}

var roleView = tableView{{"PRINCIPAL", "principalId", nil}, {"ROLE", "roleDefinitionName", nil}, {"SCOPE", "scope", nil}}

func newRoleCmd(o *rootOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "role", Short: "Manage role assignments of identities"}
	asg := &cobra.Command{Use: "assignment", Short: "Grant acrpull, acrpush or owner at a scope"}
	var f client.RoleFilter
	create := &cobra.Command{
		Use:   "create",
		Short: "Grant a role: --scope /registries/NAME[/repositories/REPO] | /containers[/NAME]",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := api.CreateRoleAssignmentRequest{Assignee: f.Assignee, Role: f.Role, Scope: f.Scope}
			return o.call(func(c *client.Client) (any, error) { return c.CreateRoleAssignment(cmd.Context(), req) }, roleView)
		},
	}
	create.Flags().StringVar(&f.Assignee, "assignee", "", "principal ID (e.g. a task's identity.principalId)")
	create.Flags().StringVar(&f.Role, "role", "", "acrpull, acrpush or owner")
	create.Flags().StringVar(&f.Scope, "scope", "", "scope path")
	for _, n := range []string{"assignee", "role", "scope"} {
		_ = create.MarkFlagRequired(n)
	}
	list := &cobra.Command{
		Use: "list", Short: "List role assignments", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.ListRoleAssignments(cmd.Context(), f) }, roleView)
		},
	}
	del := &cobra.Command{
		Use: "delete", Short: "Delete role assignments by --ids, --assignee, --role and/or --scope", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) {
				n, err := c.DeleteRoleAssignments(cmd.Context(), f)
				return map[string]int{"deleted": n}, err
			}, nil)
		},
	}
	for _, c := range []*cobra.Command{list, del} {
		c.Flags().StringVar(&f.Assignee, "assignee", "", "principal ID")
		c.Flags().StringVar(&f.Role, "role", "", "role")
		c.Flags().StringVar(&f.Scope, "scope", "", "scope path")
	}
	del.Flags().StringVar(&f.ID, "ids", "", "role assignment ID")
	asg.AddCommand(create, list, del)
	cmd.AddCommand(asg)
	return cmd
}

var vaultView = tableView{{"NAME", "name", nil}, {"URI", "vaultUri", nil}, {"CREATED", "createdOn", nil}}
var secretView = tableView{{"NAME", "name", nil}, {"ID", "id", nil}, {"UPDATED", "updated", nil}}

func newKeyVaultCmd(o *rootOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "keyvault", Short: "Manage key vaults, their secrets and access policies"}
	var name, vaultName, value, objectID string
	var perms []string
	nameFlag := func(c *cobra.Command) {
		c.Flags().StringVarP(&name, "name", "n", "", "vault name")
		_ = c.MarkFlagRequired("name")
	}
	create := &cobra.Command{
		Use: "create", Short: "Create a vault", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.CreateKeyVault(cmd.Context(), name) }, vaultView)
		},
	}
	nameFlag(create)
	show := &cobra.Command{
		Use: "show", Short: "Show a vault", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.GetKeyVault(cmd.Context(), name) }, vaultView)
		},
	}
	nameFlag(show)
	list := &cobra.Command{
		Use: "list", Short: "List vaults", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.ListKeyVaults(cmd.Context()) }, vaultView)
		},
	}
	del := &cobra.Command{
		Use: "delete", Short: "Delete a vault and its secrets", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return nil, c.DeleteKeyVault(cmd.Context(), name) }, nil)
		},
	}
	nameFlag(del)
	policy := &cobra.Command{
		Use: "set-policy", Short: "Give a principal secret permissions (get, list) on a vault", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ps []string
			for _, p := range perms {
				ps = append(ps, strings.Split(p, ",")...)
			}
			return o.call(func(c *client.Client) (any, error) {
				return c.SetPolicy(cmd.Context(), name, api.VaultPolicy{ObjectID: objectID, SecretPermissions: ps})
			}, nil)
		},
	}
	nameFlag(policy)
	policy.Flags().StringVar(&objectID, "object-id", "", "principal ID")
	policy.Flags().StringArrayVar(&perms, "secret-permissions", nil, "get and/or list")
	_ = policy.MarkFlagRequired("object-id")
	_ = policy.MarkFlagRequired("secret-permissions")

	secret := &cobra.Command{Use: "secret", Short: "Manage secrets"}
	vaultFlag := func(c *cobra.Command, needName bool) {
		c.Flags().StringVar(&vaultName, "vault-name", "", "vault name")
		_ = c.MarkFlagRequired("vault-name")
		if needName {
			c.Flags().StringVarP(&name, "name", "n", "", "secret name")
			_ = c.MarkFlagRequired("name")
		}
	}
	set := &cobra.Command{
		Use: "set", Short: "Set a secret (a new version); the value is not echoed", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.SetSecret(cmd.Context(), vaultName, name, value) }, secretView)
		},
	}
	vaultFlag(set, true)
	set.Flags().StringVar(&value, "value", "", "secret value")
	_ = set.MarkFlagRequired("value")
	sshow := &cobra.Command{
		Use: "show", Short: "Show a secret with its value", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.GetSecret(cmd.Context(), vaultName, name) }, secretView)
		},
	}
	vaultFlag(sshow, true)
	slist := &cobra.Command{
		Use: "list", Short: "List secrets (names only)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.ListSecrets(cmd.Context(), vaultName) }, secretView)
		},
	}
	vaultFlag(slist, false)
	sdel := &cobra.Command{
		Use: "delete", Short: "Delete a secret", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return nil, c.DeleteSecret(cmd.Context(), vaultName, name) }, nil)
		},
	}
	vaultFlag(sdel, true)
	secret.AddCommand(set, sshow, slist, sdel)
	cmd.AddCommand(create, show, list, del, policy, secret)
	return cmd
}
