package cli

import (
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/api"
)

// newRepositoryCmd is `gantry repository ...`; rf is the flag that names the
// registry (-r, or az acr's -n).
func newRepositoryCmd(o *rootOpts, rf registryFlag) *cobra.Command {
	cmd := &cobra.Command{Use: "repository", Short: "Inspect and delete repositories, tags and manifests"}
	var registry, repo, image string
	var top int
	regFlag := func(c *cobra.Command) { rf.add(c, &registry) }

	history := &cobra.Command{
		Use:   "show-tag-history",
		Short: "Show every digest a tag has pointed to, who pushed it and from which run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			r, t, err := splitImageTag(image)
			if err != nil {
				return err
			}
			es, err := c.TagHistory(cmd.Context(), registry, r, t)
			if err != nil {
				return hint(err)
			}
			return o.print(es, tableView{{"TIME", "time", nil}, {"DIGEST", "digest", nil}, {"PREVIOUS", "previousDigest", nil}, {"PUSHED BY", "pushedByName || pushedBy", nil}, {"RUN ID", "runId", nil}})
		},
	}
	regFlag(history)
	history.Flags().StringVar(&image, "image", "", "repository:tag")
	_ = history.MarkFlagRequired("image")

	showManifests := &cobra.Command{
		Use:   "show-manifests",
		Short: "List the manifests of a repository",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			ms, err := c.ListManifests(cmd.Context(), registry, repo)
			if err != nil {
				return hint(err)
			}
			if top > 0 && len(ms) > top {
				ms = ms[:top]
			}
			return o.print(ms, tableView{{"DIGEST", "digest", nil}, {"TAGS", "join(', ', tags)", nil}, {"MEDIA TYPE", "mediaType", nil}, {"SIZE", "imageSize", nil}, {"CREATED", "createdTime", nil}})
		},
	}
	regFlag(showManifests)
	showManifests.Flags().StringVar(&repo, "repository", "", "repository name")
	showManifests.Flags().IntVar(&top, "top", 0, "show at most this many")
	_ = showManifests.MarkFlagRequired("repository")

	del := &cobra.Command{
		Use:   "delete",
		Short: "Delete a repository, or one manifest with --image repo:tag|repo@digest",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			switch {
			case repo != "" && image != "":
				return fmt.Errorf("give --repository or --image, not both")
			case repo != "":
				return hint(c.DeleteRepository(cmd.Context(), registry, repo))
			case image != "":
				return hint(c.DeleteManifest(cmd.Context(), registry, image))
			default:
				return fmt.Errorf("give --repository (the whole repository) or --image (one manifest)")
			}
		},
	}
	regFlag(del)
	del.Flags().StringVar(&repo, "repository", "", "repository to delete")
	del.Flags().StringVar(&image, "image", "", "manifest to delete: repo:tag or repo@digest")

	untag := &cobra.Command{
		Use:   "untag",
		Short: "Remove a tag; the manifest stays",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			return hint(c.Untag(cmd.Context(), registry, image))
		},
	}
	regFlag(untag)
	untag.Flags().StringVar(&image, "image", "", "repository:tag")
	_ = untag.MarkFlagRequired("image")

	cmd.AddCommand(newRepositoryListCmd(o, rf), newRepositoryShowTagsCmd(o, rf),
		history, showManifests, del, untag)
	return cmd
}

func newRepositoryListCmd(o *rootOpts, rf registryFlag) *cobra.Command {
	var registry string
	var detail bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the repositories of a registry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			rs, err := c.ListRepositories(cmd.Context(), registry)
			if err != nil {
				return hint(err)
			}
			if detail {
				return o.print(rs, tableView{{"NAME", "name", nil}, {"TAGS", "tagCount", nil}, {"MANIFESTS", "manifestCount", nil}, {"LAST UPDATE", "lastUpdateTime", nil}})
			}
			names := make([]string, len(rs))
			for i, r := range rs {
				names[i] = r.Name
			}
			return o.print(names, nil)
		},
	}
	rf.add(list, &registry)
	list.Flags().BoolVar(&detail, "detail", false, "show counts and times, not only names")
	return list
}

func newRepositoryShowTagsCmd(o *rootOpts, rf registryFlag) *cobra.Command {
	var registry, repo, orderBy string
	var detail bool
	var top int
	showTags := &cobra.Command{
		Use:   "show-tags",
		Short: "List the tags of a repository",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			ts, err := c.ListTags(cmd.Context(), registry, repo)
			if err != nil {
				return hint(err)
			}
			if err := orderTags(ts, orderBy); err != nil {
				return err
			}
			if top > 0 && len(ts) > top {
				ts = ts[:top]
			}
			if detail {
				return o.print(ts, tableView{{"NAME", "name", nil}, {"DIGEST", "digest", nil}, {"LAST UPDATE", "lastUpdateTime", nil}})
			}
			names := make([]string, len(ts))
			for i, t := range ts {
				names[i] = t.Name
			}
			return o.print(names, nil)
		},
	}
	rf.add(showTags, &registry)
	showTags.Flags().StringVar(&repo, "repository", "", "repository name")
	showTags.Flags().BoolVar(&detail, "detail", false, "show digests and times, not only names")
	showTags.Flags().StringVar(&orderBy, "orderby", "", "time_asc or time_desc (default: by name)")
	showTags.Flags().IntVar(&top, "top", 0, "show at most this many")
	_ = showTags.MarkFlagRequired("repository")
	return showTags
}

func orderTags(ts []api.Tag, orderBy string) error {
	switch orderBy {
	case "":
		sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
	case "time_asc":
		sort.SliceStable(ts, func(i, j int) bool { return ts[i].UpdatedAt.Before(ts[j].UpdatedAt) })
	case "time_desc":
		sort.SliceStable(ts, func(i, j int) bool { return ts[i].UpdatedAt.After(ts[j].UpdatedAt) })
	default:
		return fmt.Errorf("--orderby %q: want time_asc or time_desc", orderBy)
	}
	return nil
}

// splitImageTag splits "repo:tag" (the repository may contain a host-like
// first segment with a port, so the last colon after the last slash counts).
func splitImageTag(image string) (repo, tag string, err error) {
	slash := -1
	for i := len(image) - 1; i >= 0; i-- {
		if image[i] == '/' {
			slash = i
			break
		}
	}
	for i := len(image) - 1; i > slash; i-- {
		if image[i] == ':' {
			if i == 0 || i == len(image)-1 {
				break
			}
			return image[:i], image[i+1:], nil
		}
	}
	return "", "", fmt.Errorf("--image %q: want repository:tag", image)
}
