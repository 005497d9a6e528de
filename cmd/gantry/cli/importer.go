package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
)

var importView = tableView{
	{"SOURCE", "source", nil}, {"DIGEST", "digest", nil}, {"MANIFESTS", "manifests", nil},
	{"BLOBS COPIED", "blobsCopied", nil}, {"LINKED", "blobsLinked", nil}, {"SKIPPED", "blobsSkipped", nil},
	{"BYTES", "bytesCopied", func(v any) string { return humanBytes(toInt64(v)) }},
	{"DURATION", "durationSeconds", func(v any) string { return fmt.Sprintf("%.2fs", toFloat(v)) }},
}

func newImportCmd(o *rootOpts, rf registryFlag) *cobra.Command {
	var registry string
	var req api.ImportRequest
	var noProgress bool
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Copy an image, index or artifact (with its referrers) into a registry, server-side",
		Long: `Copy an image, a multi-platform index or an OCI artifact, with every platform and its
referrers (signatures, SBOMs), into a registry without a local engine.

The source is host[:port]/repository[:tag][@digest] of any registry (https, or plain http
for loopback hosts), a Docker Hub short name (node:15), or a registry of this server: its
login server, or gantry://<registry>/<repository>:<tag> (nothing is copied then, the
content is shared). Only blobs the target lacks are transferred.

Without --image or --repository the target is the source's repository and tag. An
existing target tag is only moved with --force. --username and --password may be key
vault secret URIs (vault://<vault>/secrets/<name>), read with your permissions.`,
		Example: `  gantry import -r contoso --source 127.0.0.1:5000/library/node:15-alpine --image node:15-alpine
  gantry import -r contoso --source registry.example/app@sha256:... --repository app
  gantry import -r contosobaseartifacts --source gantry://publicregistry/node:15-alpine --force`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var progress func(api.ImportProgress)
			if !noProgress {
				progress = func(p api.ImportProgress) { printProgress(o.errOut, p) }
			}
			return o.call(func(c *client.Client) (any, error) {
				res, err := c.Import(cmd.Context(), registry, req, progress)
				if err == nil && progress != nil {
					printSummary(o.errOut, res)
				}
				return res, err
			}, importView)
		},
	}
	f := cmd.Flags()
	rf.add(cmd, &registry)
	f.StringVar(&req.Source, "source", "", "source image: host[:port]/repo[:tag][@digest] or gantry://<registry>/<repo>[:tag]")
	_ = cmd.MarkFlagRequired("source")
	f.StringArrayVarP(&req.TargetTags, "image", "t", nil, "target repo[:tag] (repeatable; the tag defaults to the source's)")
	f.StringSliceVar(&req.UntaggedTargetRepositories, "repository", nil, "target repository to import into by digest only, untagged (repeatable)")
	f.StringVarP(&req.Username, "username", "u", "", "user name for the source registry, or a vault secret URI")
	f.StringVarP(&req.Password, "password", "p", "", "password or token for the source registry, or a vault secret URI")
	f.BoolVar(&req.Force, "force", false, "overwrite existing target tags")
	f.BoolVar(&noProgress, "no-progress", false, "do not print progress lines on stderr")
	return cmd
}

// printProgress writes one progress line to stderr.
func printProgress(w io.Writer, p api.ImportProgress) {
	short := p.Digest
	if i := strings.IndexByte(short, ':'); i >= 0 && len(short) > i+13 {
		short = short[:i+13]
	}
	switch {
	case p.Action == "started":
		fmt.Fprintln(w, p.Message)
	case p.Kind == "blob" && p.Action == "copying":
		fmt.Fprintf(w, "Copying blob %s  %s\n", short, humanBytes(p.Size))
	case p.Kind == "blob" && p.Action == "copied":
		rate := ""
		if p.ElapsedSeconds > 0 {
			rate = fmt.Sprintf(", %s/s", humanBytes(int64(float64(p.Size)/p.ElapsedSeconds)))
		}
		fmt.Fprintf(w, "Copied  blob %s  %s in %.2fs%s\n", short, humanBytes(p.Size), p.ElapsedSeconds, rate)
	case p.Kind == "blob" && p.Action == "linked":
		fmt.Fprintf(w, "Linked  blob %s  %s (already on this server, no bytes moved)\n", short, humanBytes(p.Size))
	case p.Kind == "blob" && p.Action == "skipped":
		fmt.Fprintf(w, "Skipped blob %s  %s (already in %s)\n", short, humanBytes(p.Size), p.Repository)
	case p.Kind == "manifest":
		fmt.Fprintf(w, "Stored manifest %s  %s in %s\n", short, p.MediaType, p.Repository)
	}
}

func printSummary(w io.Writer, r *api.ImportResult) {
	fmt.Fprintf(w, "Imported %s (%s): %d manifest(s), %d blob(s) copied (%s), %d linked, %d skipped in %s\n",
		r.Source, r.Digest, r.Manifests, r.BlobsCopied, humanBytes(r.BytesCopied), r.BlobsLinked, r.BlobsSkipped,
		(time.Duration(r.DurationSeconds * float64(time.Second))).Round(time.Millisecond))
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func toInt64(v any) int64 {
	if f, ok := v.(float64); ok {
		return int64(f)
	}
	return 0
}

func toFloat(v any) float64 {
	f, _ := v.(float64)
	return f
}

var cacheRuleView = tableView{
	{"NAME", "name", nil}, {"SOURCE REPO", "sourceRepository", nil}, {"TARGET REPO", "targetRepository", nil},
	{"CREDENTIAL SET", "credentialSetName", nil}, {"CREATION DATE", "creationDate", nil},
}

func newCacheCmd(o *rootOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "cache", Short: "Manage cache rules: pull-through caching of upstream repositories"}
	var registry, name, source, target, credSet string
	var removeCredSet bool
	common := func(c *cobra.Command, needName bool) {
		c.Flags().StringVarP(&registry, "registry", "r", "", "registry name")
		_ = c.MarkFlagRequired("registry")
		if needName {
			c.Flags().StringVarP(&name, "name", "n", "", "cache rule name (5-50 letters, digits and dashes)")
			_ = c.MarkFlagRequired("name")
		}
	}
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a cache rule: pulls of the target that miss are fetched from the source",
		Long: `Create a cache rule. Pulls of the target repository that miss are fetched from the
source repository, stored and served; tags are revalidated after the server's cache.tagTTL.
Wildcards map whole prefixes: --source-repo upstream.example/library/* --target-repo library/*,
or upstream.example/* to *. Wildcard rules may not overlap; a static rule may sit under a
wildcard one and wins. The target refuses pushes and imports while the rule exists.`,
		Example: `  gantry cache create -r contoso -n node-rule --source-repo docker.io/library/node --target-repo node --cred-set hub-creds
  gantry cache create -r contoso -n mirror-all --source-repo 127.0.0.1:5000/* --target-repo '*'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := api.CreateCacheRuleRequest{Name: name, SourceRepository: source, TargetRepository: target, CredentialSet: credSet}
			return o.call(func(c *client.Client) (any, error) { return c.CreateCacheRule(cmd.Context(), registry, req) }, cacheRuleView)
		},
	}
	common(create, true)
	create.Flags().StringVarP(&source, "source-repo", "s", "", "upstream login-server/repository (or .../prefix/*, login-server/*)")
	create.Flags().StringVarP(&target, "target-repo", "t", "", "target repository (or prefix/*, *)")
	create.Flags().StringVarP(&credSet, "cred-set", "c", "", "credential set to log in to the upstream")
	_ = create.MarkFlagRequired("source-repo")
	_ = create.MarkFlagRequired("target-repo")

	update := &cobra.Command{
		Use: "update", Short: "Change or remove a cache rule's credential set", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var req api.UpdateCacheRuleRequest
			switch {
			case removeCredSet && cmd.Flags().Changed("cred-set"):
				return fmt.Errorf("give --cred-set or --remove-cred-set, not both")
			case removeCredSet:
				none := ""
				req.CredentialSet = &none
			case cmd.Flags().Changed("cred-set"):
				req.CredentialSet = &credSet
			default:
				return fmt.Errorf("nothing to update: give --cred-set or --remove-cred-set")
			}
			return o.call(func(c *client.Client) (any, error) { return c.UpdateCacheRule(cmd.Context(), registry, name, req) }, cacheRuleView)
		},
	}
	common(update, true)
	update.Flags().StringVarP(&credSet, "cred-set", "c", "", "new credential set")
	update.Flags().BoolVar(&removeCredSet, "remove-cred-set", false, "pull anonymously from now on")

	show := &cobra.Command{
		Use: "show", Short: "Show a cache rule", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.GetCacheRule(cmd.Context(), registry, name) }, cacheRuleView)
		},
	}
	common(show, true)
	list := &cobra.Command{
		Use: "list", Short: "List cache rules", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.ListCacheRules(cmd.Context(), registry) }, cacheRuleView)
		},
	}
	common(list, false)
	del := &cobra.Command{
		Use: "delete", Short: "Delete a cache rule (cached content stays)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return nil, c.DeleteCacheRule(cmd.Context(), registry, name) }, nil)
		},
	}
	common(del, true)
	cmd.AddCommand(create, update, show, list, del)
	return cmd
}

var credentialSetView = tableView{
	{"NAME", "name", nil}, {"LOGIN SERVER", "loginServer", nil},
	{"USERNAME SECRET", "authCredentials[0].usernameSecretIdentifier", nil},
	{"HEALTH", "authCredentials[0].credentialHealth.status", nil},
	{"PRINCIPAL ID", "identity.principalId", nil}, {"CREATION DATE", "creationDate", nil},
}

func newCredentialSetCmd(o *rootOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "credential-set",
		Short: "Manage credential sets: vault secrets to log in to upstream registries of cache rules",
		Long: `Manage credential sets. A credential set names the key vault secrets holding the user
name and password of an upstream login server. It has its own identity (identity.principalId):
grant it read access with
  gantry keyvault set-policy -n <vault> --object-id <principalId> --secret-permissions get
Its health says whether the secrets can be read now.`,
	}
	var registry, name, login, userURI, passURI string
	common := func(c *cobra.Command, needName bool) {
		c.Flags().StringVarP(&registry, "registry", "r", "", "registry name")
		_ = c.MarkFlagRequired("registry")
		if needName {
			c.Flags().StringVarP(&name, "name", "n", "", "credential set name (5-50 letters, digits and dashes)")
			_ = c.MarkFlagRequired("name")
		}
	}
	create := &cobra.Command{
		Use:     "create",
		Short:   "Create a credential set",
		Example: `  gantry credential-set create -r contoso -n hub-creds -l docker.io -u vault://kv/secrets/hub-user -p vault://kv/secrets/hub-token`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := api.CreateCredentialSetRequest{Name: name, LoginServer: login, UsernameSecretIdentifier: userURI, PasswordSecretIdentifier: passURI}
			return o.call(func(c *client.Client) (any, error) { return c.CreateCredentialSet(cmd.Context(), registry, req) }, credentialSetView)
		},
	}
	common(create, true)
	create.Flags().StringVarP(&login, "login-server", "l", "", "upstream login server, e.g. docker.io or 127.0.0.1:5000")
	create.Flags().StringVarP(&userURI, "username-id", "u", "", "secret URI of the user name")
	create.Flags().StringVarP(&passURI, "password-id", "p", "", "secret URI of the password")
	_ = create.MarkFlagRequired("login-server")
	_ = create.MarkFlagRequired("username-id")
	_ = create.MarkFlagRequired("password-id")

	update := &cobra.Command{
		Use: "update", Short: "Replace the secret URIs of a credential set", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var req api.UpdateCredentialSetRequest
			if cmd.Flags().Changed("username-id") {
				req.UsernameSecretIdentifier = &userURI
			}
			if cmd.Flags().Changed("password-id") {
				req.PasswordSecretIdentifier = &passURI
			}
			if req.UsernameSecretIdentifier == nil && req.PasswordSecretIdentifier == nil {
				return fmt.Errorf("nothing to update: give --username-id and/or --password-id")
			}
			return o.call(func(c *client.Client) (any, error) { return c.UpdateCredentialSet(cmd.Context(), registry, name, req) }, credentialSetView)
		},
	}
	common(update, true)
	update.Flags().StringVarP(&userURI, "username-id", "u", "", "new secret URI of the user name")
	update.Flags().StringVarP(&passURI, "password-id", "p", "", "new secret URI of the password")

	show := &cobra.Command{
		Use: "show", Short: "Show a credential set and its health", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.GetCredentialSet(cmd.Context(), registry, name) }, credentialSetView)
		},
	}
	common(show, true)
	list := &cobra.Command{
		Use: "list", Short: "List credential sets", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.ListCredentialSets(cmd.Context(), registry) }, credentialSetView)
		},
	}
	common(list, false)
	del := &cobra.Command{
		Use: "delete", Short: "Delete a credential set no cache rule uses (and its identity)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return nil, c.DeleteCredentialSet(cmd.Context(), registry, name) }, nil)
		},
	}
	common(del, true)
	cmd.AddCommand(create, update, show, list, del)
	return cmd
}
