package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
)

// severities, most severe first, as --fail-on and the API spell them.
var severities = []string{"critical", "high", "medium", "low"}

func severityRank(s string) int {
	for i, v := range severities {
		if v == s {
			return len(severities) - i
		}
	}
	return 0
}

var scanView = tableView{
	{"ID", "id", nil},
	{"SEVERITY", "severity", nil},
	{"PACKAGE", "package.name", nil},
	{"VERSION", "package.version", nil},
	{"FIXED", "fixedVersion", nil},
	{"ECOSYSTEM", "package.ecosystem", nil},
}

func newScanCmd(o *rootOpts) *cobra.Command {
	var req api.ScanRequest
	var image, failOn string
	cmd := &cobra.Command{
		Use:   "scan [IMAGE]",
		Short: "Scan an image for known vulnerabilities",
		Long: `Scan an image for packages with known vulnerabilities, against the
server's offline vulnerability database (gantry vulndb).

IMAGE is an image of a gantry registry (-r REG --image REPO:TAG, or its
login-server reference) or of any registry you have credentials for (read
from your Docker configuration, as docker pull reads them). A scan of a
gantry image is stored (gantry scan show) and its SBOM (SPDX 2.3) and
report are attached to the image through the OCI referrers API.

The packages come from the image's package databases (apk, dpkg, rpm), Go
binaries, npm, Python and Java packages; multi-platform images are scanned
per platform. An image in which no package could be identified is reported
as unscanned, never as clean.

--fail-on SEVERITY exits 1 when a finding at or above it (and not
allowlisted) is found, or when the image could not be scanned, printing a
one-line summary and the worst findings: a task step gates on it.

-o table lists the findings, -o json prints the whole report, -o sarif a
SARIF 2.1.0 log.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if failOn != "" && severityRank(failOn) == 0 {
				return usageError("--fail-on %q: want critical, high, medium or low", failOn)
			}
			switch {
			case len(args) == 1 && (req.Registry != "" || image != ""):
				return usageError("give IMAGE or -r REG --image REPO:TAG, not both")
			case len(args) == 1:
				req.Image = args[0]
				req.Credential = dockerCredential(args[0])
			case req.Registry != "" && image != "":
				repo, ref, err := splitImage(image)
				if err != nil {
					return err
				}
				req.Repository, req.Reference = repo, ref
			default:
				return usageError("give an IMAGE, or -r REG and --image REPO:TAG")
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			rep, err := c.Scan(cmd.Context(), req)
			if err != nil {
				return hint(err)
			}
			if err := o.printReport(rep); err != nil {
				return err
			}
			return failed(rep, failOn, o.errOut)
		},
	}
	cmd.Flags().StringVarP(&req.Registry, "registry", "r", "", "registry of the image (with --image)")
	cmd.Flags().StringVar(&image, "image", "", "REPO:TAG or REPO@DIGEST in the registry")
	cmd.Flags().StringVar(&failOn, "fail-on", "", "exit 1 on a finding at or above this severity: critical, high, medium, low")
	cmd.AddCommand(newScanShowCmd(o), newAllowlistCmd(o), newScanImpactCmd(o), newScanPolicyCmd(o))
	return cmd
}

// splitImage cuts REPO:TAG or REPO@DIGEST.
func splitImage(image string) (repo, ref string, err error) {
	if r, d, ok := strings.Cut(image, "@"); ok {
		return r, d, nil
	}
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return image, "latest", nil
	}
	if image[:i] == "" || image[i+1:] == "" {
		return "", "", usageError("--image %q: want REPO:TAG or REPO@DIGEST", image)
	}
	return image[:i], image[i+1:], nil
}

// dockerCredential is the login the Docker configuration holds for the
// image's registry, if any (sent for an image of another registry only,
// for that scan).
func dockerCredential(image string) *api.ScanCredential {
	ref, err := name.ParseReference(image)
	if err != nil {
		return nil
	}
	a, err := authn.DefaultKeychain.Resolve(ref.Context().Registry)
	if err != nil || a == authn.Anonymous {
		return nil
	}
	cfg, err := a.Authorization()
	if err != nil || (cfg.Username == "" && cfg.Password == "" && cfg.IdentityToken == "") {
		return nil
	}
	return &api.ScanCredential{Username: cfg.Username, Password: cfg.Password, IdentityToken: cfg.IdentityToken}
}

// printReport prints a report in the -o format: table (the findings and a
// summary line), sarif, or the global formats.
func (o *rootOpts) printReport(rep *api.ScanReport) error {
	switch o.output {
	case "table":
		if err := render(o.out, "table", o.query, rep.Vulnerabilities, scanView); err != nil {
			return err
		}
		_, err := fmt.Fprintln(o.out, summaryLine(rep))
		return err
	case "sarif":
		return writeSARIF(o.out, rep)
	}
	return o.print(rep, nil)
}

func summaryLine(rep *api.ScanReport) string {
	s := rep.Summary
	line := fmt.Sprintf("%s (%s): %d packages; %d critical, %d high, %d medium, %d low, %d unknown",
		rep.Image, rep.Digest, rep.Packages, s.Critical, s.High, s.Medium, s.Low, s.Unknown)
	if s.Allowlisted > 0 {
		line += fmt.Sprintf("; %d allowlisted", s.Allowlisted)
	}
	if rep.Status != "scanned" {
		line += "; UNSCANNED: no package could be identified"
	}
	return line
}

// failed applies --fail-on: a one-line summary and the worst findings on
// stderr, and exit code 1.
func failed(rep *api.ScanReport, failOn string, errOut io.Writer) error {
	if failOn == "" {
		return nil
	}
	if rep.Status != "scanned" {
		return exitCode{code: 1, msg: fmt.Sprintf("%s: no package could be identified, so the image cannot be shown to be free of %s findings", rep.Image, failOn)}
	}
	min := severityRank(failOn)
	var worst []api.ScanVulnerability
	n := 0
	for _, v := range rep.Vulnerabilities {
		if v.Allowlisted || severityRank(v.Severity) < min {
			continue
		}
		n++
		if len(worst) < 5 {
			worst = append(worst, v)
		}
	}
	if n == 0 {
		return nil
	}
	fmt.Fprintf(errOut, "%s: %d %s at or above %s\n", rep.Image, n, plural(n, "finding", "findings"), failOn)
	for _, v := range worst {
		fixed := "no fix"
		if v.FixedVersion != "" {
			fixed = "fixed in " + v.FixedVersion
		}
		fmt.Fprintf(errOut, "  %-8s %s %s %s (%s)\n", v.Severity, v.ID, v.Package.Name, v.Package.Version, fixed)
	}
	return exitCode{code: 1, msg: fmt.Sprintf("scan failed: %d %s at or above %s", n, plural(n, "finding", "findings"), failOn)}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func newScanShowCmd(o *rootOpts) *cobra.Command {
	var reg, image, failOn string
	c := &cobra.Command{
		Use:   "show",
		Short: "Show the latest scan report of an image, rescans included",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if failOn != "" && severityRank(failOn) == 0 {
				return usageError("--fail-on %q: want critical, high, medium or low", failOn)
			}
			repo, ref, err := splitImage(image)
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			rep, err := c.LatestScan(cmd.Context(), reg, repo, ref)
			if err != nil {
				return hint(err)
			}
			if err := o.printReport(rep); err != nil {
				return err
			}
			return failed(rep, failOn, o.errOut)
		},
	}
	gantryRegistry.add(c, &reg)
	c.Flags().StringVar(&image, "image", "", "REPO:TAG or REPO@DIGEST")
	c.Flags().StringVar(&failOn, "fail-on", "", "exit 1 on a finding at or above this severity")
	_ = c.MarkFlagRequired("image")
	return c
}

var allowlistView = tableView{
	{"ID", "id", nil},
	{"REGISTRY", "registry", nil},
	{"EXPIRES", "expires", nil},
	{"EXPIRED", "expired", nil},
	{"REASON", "reason", nil},
	{"CREATED BY", "createdBy", nil},
}

func newAllowlistCmd(o *rootOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "allowlist",
		Short: "Advisories accepted until an expiry date",
		Long: `Advisories on the allowlist neither fail gantry scan --fail-on nor
quarantine an image until they expire. An entry covers one registry (-r) or
all of them (admin only); it matches an advisory's ID or any of its aliases
(a CVE ID, say).`,
	}
	var reg, id, expires, reason string
	add := &cobra.Command{
		Use:   "add",
		Short: "Allowlist an advisory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e := api.AllowlistEntry{Registry: reg, ID: id, Reason: reason}
			if expires != "" {
				t, err := parseExpiry(expires)
				if err != nil {
					return err
				}
				e.Expires = &t
			}
			return o.call(func(c *client.Client) (any, error) { return c.Allow(cmd.Context(), e) }, allowlistView)
		},
	}
	add.Flags().StringVar(&id, "id", "", "advisory ID or alias, e.g. GO-2024-2687 or CVE-2023-45288")
	add.Flags().StringVarP(&reg, "registry", "r", "", "registry the entry covers (default: all, admin only)")
	add.Flags().StringVar(&expires, "expires", "", "expiry: a date (2027-01-31), an RFC 3339 time, or a duration from now (720h)")
	add.Flags().StringVar(&reason, "reason", "", "why the advisory is accepted")
	_ = add.MarkFlagRequired("id")

	list := &cobra.Command{
		Use:   "list",
		Short: "List allowlisted advisories",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.Allowlist(cmd.Context(), reg) }, allowlistView)
		},
	}
	list.Flags().StringVarP(&reg, "registry", "r", "", "only the entries of this registry and the global ones")

	remove := &cobra.Command{
		Use:   "remove",
		Short: "Remove an advisory from an allowlist",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return nil, c.Disallow(cmd.Context(), reg, id) }, nil)
		},
	}
	remove.Flags().StringVar(&id, "id", "", "advisory ID")
	remove.Flags().StringVarP(&reg, "registry", "r", "", "registry of the entry (default: the global entry)")
	_ = remove.MarkFlagRequired("id")
	cmd.AddCommand(add, list, remove)
	return cmd
}

func parseExpiry(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return time.Now().Add(d), nil
	}
	return time.Time{}, usageError("--expires %q: want a date (2027-01-31), an RFC 3339 time or a positive duration (720h)", s)
}

// writeSARIF writes a report as a SARIF 2.1.0 log: one rule per advisory,
// one result per finding.
func writeSARIF(w io.Writer, rep *api.ScanReport) error {
	type text struct {
		Text string `json:"text"`
	}
	type rule struct {
		ID               string         `json:"id"`
		ShortDescription text           `json:"shortDescription"`
		Properties       map[string]any `json:"properties,omitempty"`
	}
	type location struct {
		PhysicalLocation struct {
			ArtifactLocation struct {
				URI string `json:"uri"`
			} `json:"artifactLocation"`
		} `json:"physicalLocation"`
	}
	type result struct {
		RuleID    string     `json:"ruleId"`
		Level     string     `json:"level"`
		Message   text       `json:"message"`
		Locations []location `json:"locations"`
	}
	var rules []rule
	var results []result
	seen := map[string]bool{}
	for _, v := range rep.Vulnerabilities {
		if !seen[v.ID] {
			seen[v.ID] = true
			rules = append(rules, rule{ID: v.ID, ShortDescription: text{cmp.Or(v.Summary, v.ID)},
				Properties: map[string]any{"security-severity": fmt.Sprintf("%.1f", v.Score), "severity": v.Severity}})
		}
		level := "warning"
		switch v.Severity {
		case "critical", "high":
			level = "error"
		case "low", "unknown":
			level = "note"
		}
		var loc location
		loc.PhysicalLocation.ArtifactLocation.URI = cmp.Or(strings.TrimPrefix(v.Package.Path, "/"), rep.Image)
		fixed := ""
		if v.FixedVersion != "" {
			fixed = "; fixed in " + v.FixedVersion
		}
		results = append(results, result{RuleID: v.ID, Level: level, Locations: []location{loc},
			Message: text{fmt.Sprintf("%s %s (%s) is affected by %s (%s)%s", v.Package.Name, v.Package.Version, v.Package.Ecosystem, v.ID, v.Severity, fixed)}})
	}
	doc := map[string]any{
		"$schema": "https://json.schemastore.org/sarif-2.1.0.json",
		"version": "2.1.0",
		"runs": []any{map[string]any{
			"tool": map[string]any{"driver": map[string]any{
				"name": "gantry scan", "informationUri": "https://github.com/gantryhq/gantry", "rules": orEmpty(rules),
			}},
			"results":    orEmpty(results),
			"properties": map[string]any{"image": rep.Image, "digest": rep.Digest, "status": rep.Status},
		}},
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// orEmpty is s, or an empty (not null) list.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

var impactView = tableView{
	{"REGISTRY", "registry", nil},
	{"REPOSITORY", "repository", nil},
	{"DIGEST", "digest", nil},
	{"PACKAGES", "packages", nil},
}

func newScanImpactCmd(o *rootOpts) *cobra.Command {
	var id string
	c := &cobra.Command{
		Use:   "impact",
		Short: "List what an advisory affects: images, what was built on them, what runs them (admin only)",
		Long: `List the scanned images an advisory (by ID or alias, e.g. a CVE ID)
affects as their latest scan or rescan found, and, through the base-image
dependency graph that base-image triggers use, every task whose last build
used one of them (or an image built on one) as a base, with the images it
pushed, and every container instance running one of those images.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			im, err := c.ScanImpact(cmd.Context(), id)
			if err != nil {
				return hint(err)
			}
			if o.output != "table" {
				return o.print(im, nil)
			}
			fmt.Fprintf(o.out, "%s (%s) %s\n", im.ID, strings.Join(im.Aliases, ", "), im.Summary)
			if err := render(o.out, "table", "", im.Images, impactView); err != nil {
				return err
			}
			for _, b := range im.Built {
				fmt.Fprintf(o.out, "built on it: task %s/%s (run %s, base %s): %s\n", b.Registry, b.Task, b.Run, b.Base, strings.Join(b.Images, ", "))
			}
			for _, ci := range im.Containers {
				fmt.Fprintf(o.out, "running: container %s (%s)\n", ci.Name, ci.Image)
			}
			return nil
		},
	}
	c.Flags().StringVar(&id, "id", "", "advisory ID or alias")
	_ = c.MarkFlagRequired("id")
	return c
}

var scanPolicyView = tableView{
	{"REGISTRY", "registry", nil},
	{"REPOSITORY", "repository", nil},
	{"SCAN ON PUSH", "scanOnPush", nil},
	{"QUARANTINE", "quarantineSeverity", nil},
	{"INHERITED", "inherited", nil},
}

func newScanPolicyCmd(o *rootOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "A repository's own scan policy (a registry's: gantry registry update)",
		Long: `A repository can have a scan policy of its own, which replaces its
registry's there (gantry registry update --scan-on-push --quarantine-severity
sets the registry's). Setting and removing one is admin only.`,
	}
	var reg, repo, quarantine string
	var onPush bool
	set := &cobra.Command{
		Use:   "set",
		Short: "Set a repository's own scan policy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch quarantine {
			case "", "critical", "high", "medium", "low", "none":
			default:
				return usageError("--quarantine-severity %q: want critical, high, medium, low or none", quarantine)
			}
			p := api.ScanPolicy{Registry: reg, Repository: repo, ScanOnPush: onPush, QuarantineSeverity: quarantine}
			return o.call(func(c *client.Client) (any, error) { return c.SetScanPolicy(cmd.Context(), p) }, scanPolicyView)
		},
	}
	set.Flags().BoolVar(&onPush, "scan-on-push", false, "scan every image pushed to the repository")
	set.Flags().StringVar(&quarantine, "quarantine-severity", "", "refuse pulls of images with a finding at or above this severity, or not scanned: critical, high, medium, low, none")
	show := &cobra.Command{
		Use:   "show",
		Short: "Show the scan policy that applies to a repository",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return c.ScanPolicy(cmd.Context(), reg, repo) }, scanPolicyView)
		},
	}
	remove := &cobra.Command{
		Use:   "remove",
		Short: "Remove a repository's own scan policy (its registry's applies again)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(func(c *client.Client) (any, error) { return nil, c.RemoveScanPolicy(cmd.Context(), reg, repo) }, nil)
		},
	}
	for _, c := range []*cobra.Command{set, show, remove} {
		gantryRegistry.add(c, &reg)
		c.Flags().StringVar(&repo, "repository", "", "repository")
		_ = c.MarkFlagRequired("repository")
	}
	cmd.AddCommand(set, show, remove)
	return cmd
}
