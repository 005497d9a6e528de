package taskfile

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// AliasNotice is the line ACR's runner logs when a file's version enables aliases.
const AliasNotice = "Alias support enabled for version >= 1.1.0, please see https://aka.ms/acr/tasks/task-aliases for more information."

// GantryImage is the default value of the gantry image alias; executors that build
// the gantry CLI image locally point the alias at it through Options.ImageAliases.
const GantryImage = "gantry-cli:latest"

// AzImage is the default value of the az alias: gantry's implementation of the
// Azure CLI subset the tutorials' task files use (az login --identity, az
// container create, ...), run with the task's identity. Executors that build it
// locally point the alias at it through Options.ImageAliases.
const AzImage = "gantry-az:latest"

// runAliases are the predefined $ aliases: each expands to the matching run variable.
// ($TaskName is not an alias, as in ACR.)
var runAliases = map[string]string{
	"ID":           "{{.Run.ID}}",
	"SharedVolume": "{{.Run.SharedVolume}}",
	"Registry":     "{{.Run.Registry}}",
	"RegistryName": "{{.Run.RegistryName}}",
	"Date":         "{{.Run.Date}}",
	"OS":           "{{.Run.OS}}",
	"Architecture": "{{.Run.Architecture}}",
	"Commit":       "{{.Run.Commit}}",
	"Branch":       "{{.Run.Branch}}",
}

// DefaultImageAliases returns a new map of the image aliases ACR defines on Linux
// (usable as the first word of cmd, or with $ anywhere), plus gantry. az names
// gantry's own az image (AzImage) instead of ACR's azure-cli image.
func DefaultImageAliases() map[string]string {
	return map[string]string{
		"acr":    "mcr.microsoft.com/acr/acr-cli:0.19",
		"az":     AzImage,
		"bash":   "mcr.microsoft.com/acr/bash:2ff604c",
		"curl":   "mcr.microsoft.com/acr/curl:2ff604c",
		"cssc":   "mcr.microsoft.com/acr/cssc:2ff604c",
		"gantry": GantryImage,
	}
}

var (
	aliasKeyRE      = regexp.MustCompile(`^[a-zA-Z0-9]+$`)
	aliasStartRE    = regexp.MustCompile(`^alias\s*:.*$`)
	topLevelKeyRE   = regexp.MustCompile(`^[^\s:]+[^:]*:.*$`)
	versionLineRE   = regexp.MustCompile(`^version\s*:(.*)$`)
	fullCommentRE   = regexp.MustCompile(`^\s*#`)
	trailingComment = regexp.MustCompile(`\s+#.*$`)
)

// blankComments replaces every full-line comment with an empty line, so that
// template actions in comments are never executed while line numbers are kept.
// (ACR drops these lines for v1.1.0 files.)
func blankComments(lines []string) {
	for i, l := range lines {
		if fullCommentRE.MatchString(l) {
			lines[i] = ""
		}
	}
}

// findVersion returns the value of the first top-level "version:" line, unquoted.
func findVersion(lines []string) string {
	for _, l := range lines {
		if m := versionLineRE.FindStringSubmatch(l); m != nil {
			v := strings.TrimSpace(trailingComment.ReplaceAllString(m[1], ""))
			if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
				v = v[1 : len(v)-1]
			}
			return v
		}
	}
	return ""
}

// splitAlias separates the alias block (from a line "alias:" at column 0 up to the
// next top-level key, as ACR does) from the rest. Both results have the same number
// of lines as the input: lines belonging to the other part are blank.
func splitAlias(lines []string) (alias, rest []string, found bool) {
	alias = make([]string, len(lines))
	rest = make([]string, len(lines))
	inside := false
	for i, l := range lines {
		if aliasStartRE.MatchString(l) && !inside {
			inside, found = true, true
		} else if inside && topLevelKeyRE.MatchString(l) {
			inside = false
		}
		if inside {
			alias[i] = l
		} else {
			rest[i] = l
		}
	}
	return alias, rest, found
}

// alias decodes the rendered alias block.
func (d *decoder) alias(root *yaml.Node) *Alias {
	a := &Alias{Values: map[string]string{}}
	for _, p := range d.mapping(root, "") {
		if p.key.Value != "alias" {
			continue
		}
		if p.val.Kind == yaml.ScalarNode && p.val.Tag == "!!null" {
			return a
		}
		if !d.expectMapping(p.val, "alias", "values, src, directive") {
			return a
		}
		for _, q := range d.mapping(p.val, "alias") {
			f := join("alias", q.key.Value)
			switch q.key.Value {
			case "values":
				if q.val.Kind == yaml.ScalarNode && q.val.Tag == "!!null" {
					continue
				}
				if !d.expectMapping(q.val, f, "alias names to values") {
					continue
				}
				for _, kv := range d.mapping(q.val, f) {
					if !aliasKeyRE.MatchString(kv.key.Value) {
						d.ps.add(at(kv.key), f, "alias name %q may only contain letters and digits", kv.key.Value)
						continue
					}
					a.Values[kv.key.Value] = d.str(kv.val, join(f, kv.key.Value))
				}
			case "src":
				a.Src = d.strList(q.val, f, "src")
			case "directive":
				a.Directive = d.str(q.val, f)
				switch r := []rune(a.Directive); {
				case len(r) == 0:
				case len(r) != 1:
					d.ps.add(at(q.val), f, "%q must be a single character", a.Directive)
				case unicode.IsLetter(r[0]) || unicode.IsDigit(r[0]):
					d.ps.add(at(q.val), f, "%q must not be a letter or digit", a.Directive)
				}
			default:
				d.unknown(q.key, "alias", aliasKeys, "")
			}
		}
	}
	return a
}

// aliasSet is the resolved alias map of a run.
type aliasSet struct {
	values    map[string]string
	directive rune
	// images are the aliases that may replace the first word of a cmd: all but the
	// predefined run aliases, whose values are templates.
	images map[string]string
}

// resolveAliases merges the alias sources by precedence: inline values, then src
// files (later ones first), then the predefined run aliases, then the image aliases.
func resolveAliases(ctx context.Context, d *decoder, a *Alias, opts *Options) (*aliasSet, error) {
	set := &aliasSet{values: maps.Clone(a.Values), directive: '$', images: map[string]string{}}
	if set.values == nil {
		set.values = map[string]string{}
	}
	if r := []rune(a.Directive); len(r) == 1 {
		set.directive = r[0]
	}
	for i := len(a.Src) - 1; i >= 0; i-- {
		src := a.Src[i]
		if opts.ReadAliasSource == nil {
			return nil, fmt.Errorf("alias.src[%d] %q: %w: no alias source reader is configured", i, src, ErrAliasSource)
		}
		data, err := opts.ReadAliasSource(ctx, src)
		if err != nil {
			return nil, fmt.Errorf("alias.src[%d] %q: %w: %w", i, src, ErrAliasSource, err)
		}
		var m map[string]string
		if err := yaml.Unmarshal(data, &m); err != nil {
			d.ps.add(Pos{}, index("alias.src", i), "%q is not a YAML mapping of alias names to values: %v", src, err)
			continue
		}
		for k, v := range m {
			if !aliasKeyRE.MatchString(k) {
				d.ps.add(Pos{}, index("alias.src", i), "%q: alias name %q may only contain letters and digits", src, k)
				continue
			}
			if _, ok := set.values[k]; !ok {
				set.values[k] = v
			}
		}
	}
	for k, v := range set.values {
		set.images[k] = v
	}
	for k, v := range runAliases {
		if _, ok := set.values[k]; !ok {
			set.values[k] = v
		}
	}
	images := opts.ImageAliases
	if images == nil {
		images = DefaultImageAliases()
	}
	for k, v := range images {
		if _, ok := set.values[k]; !ok {
			set.values[k] = v
			set.images[k] = v
		}
	}
	return set, nil
}

func isAlnum(r rune) bool {
	return (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
}

// substitute replaces $name with the alias value, $$ with $, and leaves unknown
// names untouched, exactly as ACR's preprocessor does.
func (set *aliasSet) substitute(s string) string {
	var out, name strings.Builder
	pending := false
	flush := func() {
		if v, ok := set.values[name.String()]; ok {
			out.WriteString(v)
		} else {
			out.WriteRune(set.directive)
			out.WriteString(name.String())
		}
		name.Reset()
	}
	for _, c := range s {
		switch {
		case pending && c == set.directive && name.Len() == 0: // $$ → $
			out.WriteRune(c)
			pending = false
		case pending && !isAlnum(c):
			v, known := set.values[name.String()]
			if !known {
				out.WriteRune(set.directive)
				out.WriteString(name.String())
				out.WriteRune(c)
				pending = false
			} else {
				out.WriteString(v)
				if c != set.directive { // "$a$b" resolves back to back
					out.WriteRune(c)
					pending = false
				}
			}
			name.Reset()
		case pending:
			name.WriteRune(c)
		case c == set.directive:
			pending = true
		default:
			out.WriteRune(c)
		}
	}
	if pending {
		flush()
	}
	return out.String()
}

// expandImage replaces the first word of a cmd with its image alias, if any.
func (set *aliasSet) expandImage(cmd string) string {
	cmd = strings.TrimSpace(cmd)
	first, rest := cmd, ""
	if i := strings.IndexFunc(cmd, unicode.IsSpace); i >= 0 {
		first, rest = cmd[:i], cmd[i:]
	}
	if v, ok := set.images[first]; ok {
		return v + rest
	}
	return cmd
}
