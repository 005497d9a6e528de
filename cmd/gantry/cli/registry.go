package cli

import (
	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/api"
)

var registryView = tableView{
	{"NAME", "name", nil},
	{"LOGIN SERVER", "loginServer", nil},
	{"ANONYMOUS PULL", "anonymousPullEnabled", nil},
	{"RUNNING", "running", nil},
	{"CREATION DATE", "creationDate", nil},
}

func newRegistryCmd(o *rootOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "registry", Short: "Manage registries (each is its own login server)"}
	var name, listen string
	var anon bool
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a registry and start serving it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			r, err := c.CreateRegistry(cmd.Context(), api.CreateRegistryRequest{Name: name, Listen: listen, AnonymousPull: anon})
			if err != nil {
				return hint(err)
			}
			return o.print(r, registryView)
		},
	}
	create.Flags().StringVarP(&name, "name", "n", "", "registry name")
	create.Flags().StringVar(&listen, "listen", "", "host:port the registry serves on, e.g. 127.0.0.1:5001 (default: a free loopback port)")
	create.Flags().BoolVar(&anon, "anonymous-pull", false, "let anyone pull without credentials")
	_ = create.MarkFlagRequired("name")

	show := &cobra.Command{
		Use:   "show",
		Short: "Show a registry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			r, err := c.GetRegistry(cmd.Context(), name)
			if err != nil {
				return hint(err)
			}
			return o.print(r, registryView)
		},
	}
	show.Flags().StringVarP(&name, "name", "n", "", "registry name")
	_ = show.MarkFlagRequired("name")

	list := &cobra.Command{
		Use:   "list",
		Short: "List registries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			rs, err := c.ListRegistries(cmd.Context())
			if err != nil {
				return hint(err)
			}
			return o.print(rs, registryView)
		},
	}

	del := &cobra.Command{
		Use:   "delete",
		Short: "Delete a registry with its repositories, tokens and tasks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			return hint(c.DeleteRegistry(cmd.Context(), name))
		},
	}
	del.Flags().StringVarP(&name, "name", "n", "", "registry name")
	_ = del.MarkFlagRequired("name")

	cmd.AddCommand(create, show, list, del)
	return cmd
}
