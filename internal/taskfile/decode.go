package taskfile

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

var (
	taskKeys = []string{"version", "stepTimeout", "workingDirectory", "env", "secrets", "volumes", "networks", "alias", "steps"}
	stepKeys = []string{
		"id", "cmd", "build", "push", "when", "env", "entryPoint", "workingDirectory",
		"disableWorkingDirectoryOverride", "timeout", "startDelay", "retries", "retryDelay",
		"retryOnErrors", "repeat", "detach", "keep", "ports", "expose", "privileged", "user",
		"network", "isolation", "cpus", "ignoreErrors", "pull", "downloadRetries",
		"cmdDownloadRetries", "downloadRetryDelay", "cmdDownloadRetryDelay", "volumeMounts",
		"cache", "exitedWith", "exitedWithout",
	}
	// pushKeys are the only properties a push step accepts.
	pushKeys     = []string{"id", "push", "when", "env", "ignoreErrors", "startDelay", "timeout"}
	secretKeys   = []string{"id", "keyvault", "clientID"}
	volumeKeys   = []string{"name", "secret"}
	networkKeys  = []string{"name", "driver", "ipv6", "skipCreation", "isDefault"}
	mountKeys    = []string{"name", "mountPath"}
	aliasKeys    = []string{"values", "src", "directive"}
	validVersion = []string{VersionPreview, Version100, Version110}

	stepIDRE     = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	volumeNameRE = regexp.MustCompile(`^[a-zA-Z0-9-_]+$`)
	fileNameRE   = regexp.MustCompile(`^[a-zA-Z0-9-_.]+$`)
	uuidRE       = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	decimalRE    = regexp.MustCompile(`^[-+]?[0-9]+$`)
	yamlLineRE   = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
)

// decoder turns yaml.Nodes into Task values, recording problems with positions.
type decoder struct {
	ps *problems
}

type pair struct{ key, val *yaml.Node }

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func at(n *yaml.Node) Pos {
	if n == nil {
		return Pos{}
	}
	return Pos{Line: n.Line, Column: n.Column}
}

func join(base, key string) string {
	if base == "" {
		return key
	}
	return base + "." + key
}

func index(base string, i int) string { return fmt.Sprintf("%s[%d]", base, i) }

// parse parses text as a single YAML document and returns its root node, or nil
// after recording a problem. An empty document yields an empty mapping.
func (d *decoder) parse(text string) *yaml.Node {
	dec := yaml.NewDecoder(strings.NewReader(text))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) {
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: 1, Column: 1}
	}
	if err != nil {
		d.yamlError(err)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		d.ps.add(at(&extra), "", "only one YAML document is allowed (remove the '---' separator)")
		return nil
	} else if !errors.Is(err, io.EOF) {
		d.yamlError(err)
		return nil
	}
	root := deref(doc.Content[0])
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: 1, Column: 1}
	}
	if root.Kind != yaml.MappingNode {
		d.ps.add(at(root), "", "the file must be a YAML mapping with keys such as version and steps, not a %s", kindName(root))
		return nil
	}
	return root
}

func (d *decoder) yamlError(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var p Pos
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	d.ps.add(p, "", "YAML syntax error: %s", msg)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "null"
		case "!!int", "!!float":
			return "number"
		case "!!bool":
			return "boolean"
		}
		return "string"
	}
	return "node"
}

// mapping returns the key/value pairs of a mapping node, resolving merge keys (<<)
// and reporting duplicate and non-scalar keys.
func (d *decoder) mapping(n *yaml.Node, field string) []pair {
	var out, merged []pair
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			d.ps.add(at(k), field, "keys must be plain strings")
			continue
		}
		if k.Tag == "!!merge" {
			switch v.Kind {
			case yaml.MappingNode:
				merged = append(merged, d.mapping(v, field)...)
			case yaml.SequenceNode:
				for _, m := range v.Content {
					if m = deref(m); m.Kind == yaml.MappingNode {
						merged = append(merged, d.mapping(m, field)...)
					}
				}
			}
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			d.ps.add(at(k), field, "key %q is already defined at line %d", k.Value, prev.Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, pair{k, v})
	}
	for _, m := range merged {
		if _, ok := seen[m.key.Value]; !ok {
			seen[m.key.Value] = m.key
			out = append(out, m)
		}
	}
	return out
}

// unknown reports a key that is not valid at this level, suggesting the closest one.
// It returns the suggested key, or "".
func (d *decoder) unknown(k *yaml.Node, field string, known []string, hint string) string {
	if s := closest(k.Value, known); s != "" {
		d.ps.add(at(k), field, "unknown key %q (did you mean %q?)", k.Value, s)
		return s
	}
	if hint != "" {
		d.ps.add(at(k), field, "unknown key %q (%s)", k.Value, hint)
		return ""
	}
	d.ps.add(at(k), field, "unknown key %q (valid keys: %s)", k.Value, strings.Join(known, ", "))
	return ""
}

func (d *decoder) expectMapping(n *yaml.Node, field, what string) bool {
	if n.Kind == yaml.MappingNode {
		return true
	}
	d.ps.add(at(n), field, "must be a mapping (%s), not a %s", what, kindName(n))
	return false
}

// scalar returns the text of a scalar node ("" for null).
func (d *decoder) scalar(n *yaml.Node, field, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.ps.add(at(n), field, "must be a %s, not a %s", want, kindName(n))
		return "", false
	}
	if n.Tag == "!!null" {
		return "", true
	}
	return n.Value, true
}

func (d *decoder) str(n *yaml.Node, field string) string {
	s, _ := d.scalar(n, field, "string")
	return s
}

func (d *decoder) integer(n *yaml.Node, field string) int {
	s, ok := d.scalar(n, field, "number")
	if !ok || s == "" {
		return 0
	}
	var v int64
	var err error
	switch {
	case n.Tag == "!!int":
		v, err = strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, 32)
	case decimalRE.MatchString(s):
		v, err = strconv.ParseInt(s, 10, 32)
	case n.Tag == "!!float":
		d.ps.add(at(n), field, "must be a whole number, not %s", s)
		return 0
	default:
		d.ps.add(at(n), field, "must be a number, not %q", s)
		return 0
	}
	if err != nil {
		d.ps.add(at(n), field, "%s is out of range", s)
		return 0
	}
	return int(v)
}

func (d *decoder) boolean(n *yaml.Node, field string) bool {
	s, ok := d.scalar(n, field, "boolean")
	if !ok || s == "" {
		return false
	}
	// YAML 1.1 spellings are accepted as ACR's yaml.v2 parser does.
	switch strings.ToLower(s) {
	case "true", "yes", "y", "on":
		return true
	case "false", "no", "n", "off":
		return false
	}
	d.ps.add(at(n), field, "must be true or false, not %q", s)
	return false
}

func (d *decoder) list(n *yaml.Node, field, example string) ([]*yaml.Node, bool) {
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		return nil, true
	case n.Kind == yaml.SequenceNode:
		out := make([]*yaml.Node, len(n.Content))
		for i, c := range n.Content {
			out[i] = deref(c)
		}
		return out, true
	case n.Kind == yaml.ScalarNode && example != "":
		d.ps.add(at(n), field, "must be a list, e.g. %s: [%q]", example, n.Value)
	default:
		d.ps.add(at(n), field, "must be a list, not a %s", kindName(n))
	}
	return nil, false
}

func (d *decoder) strList(n *yaml.Node, field, example string) []string {
	items, _ := d.list(n, field, example)
	var out []string
	for i, c := range items {
		if s, ok := d.scalar(c, index(field, i), "string"); ok {
			out = append(out, s)
		}
	}
	return out
}

func (d *decoder) intList(n *yaml.Node, field string) []int {
	items, _ := d.list(n, field, "")
	var out []int
	for i, c := range items {
		out = append(out, d.integer(c, index(field, i)))
	}
	return out
}

func (d *decoder) nonNegative(n *yaml.Node, field string) int {
	v := d.integer(n, field)
	if v < 0 {
		d.ps.add(at(n), field, "must be >= 0, not %d", v)
		return 0
	}
	return v
}

// task decodes and validates the root mapping of a rendered task file and applies
// the defaults.
func (d *decoder) task(root *yaml.Node, file string) *Task {
	t := &Task{File: file}
	var versionNode, stepsNode, envNode *yaml.Node
	for _, p := range d.mapping(root, "") {
		k, v := p.key.Value, p.val
		switch k {
		case "version":
			t.Version, versionNode = d.str(v, k), v
		case "stepTimeout":
			t.StepTimeout = d.integer(v, k)
		case "workingDirectory":
			t.WorkingDirectory = d.str(v, k)
		case "env":
			t.Env, envNode = d.strList(v, k, "env"), v
		case "secrets":
			t.Secrets = d.secrets(v)
		case "volumes":
			t.Volumes = d.volumes(v)
		case "networks":
			t.Networks = d.networks(v)
		case "alias":
			if aliasVersion(versionOf(root)) {
				d.ps.add(at(p.key), "", `the alias block could not be separated from the file: start it with "alias:" at the beginning of a line`)
			} else {
				d.ps.add(at(p.key), "", "alias requires version: v1.1.0 (aliases are ignored by earlier versions)")
			}
		case "steps":
			stepsNode = v
		default:
			hint := ""
			if slices.Contains(stepKeys, k) {
				hint = k + " is a step property: put it in an entry of steps"
			}
			d.unknown(p.key, "", taskKeys, hint)
		}
	}
	if t.Version == "" {
		t.Version = DefaultVersion
	} else if !slices.ContainsFunc(validVersion, func(v string) bool { return strings.EqualFold(v, t.Version) }) {
		d.ps.add(at(versionNode), "version", "%q is not a valid version (valid: %s; the default is %s)",
			t.Version, strings.Join(validVersion, ", "), DefaultVersion)
	}
	if t.StepTimeout <= 0 {
		t.StepTimeout = DefaultStepTimeout
	}
	d.taskEnv(t.Env, envNode)
	if stepsNode == nil {
		d.ps.add(Pos{}, "steps", "is required: list at least one step (cmd, build or push)")
		return t
	}
	items, ok := d.list(stepsNode, "steps", "")
	if ok && len(items) == 0 {
		d.ps.add(at(stepsNode), "steps", "list at least one step (cmd, build or push)")
	}
	for i, n := range items {
		t.Steps = append(t.Steps, d.step(i, n))
	}
	d.crossCheck(t)
	return t
}

// versionOf returns the version value of a root mapping without recording problems.
func versionOf(root *yaml.Node) string {
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "version" && root.Content[i+1].Kind == yaml.ScalarNode {
			return root.Content[i+1].Value
		}
	}
	return ""
}

func (d *decoder) taskEnv(env []string, n *yaml.Node) {
	for i, e := range env {
		parts := strings.Split(e, ",")
		for _, part := range parts {
			if k, _, ok := strings.Cut(part, "="); !ok || k == "" {
				p := at(n)
				if n != nil && n.Kind == yaml.SequenceNode && i < len(n.Content) {
					p = at(n.Content[i])
				}
				if len(parts) > 1 {
					d.ps.add(p, index("env", i), "every entry must be KEY=VALUE; task-level entries are split at ',' (as in ACR), so their values cannot contain ','")
				} else {
					d.ps.add(p, index("env", i), "must be KEY=VALUE")
				}
				break
			}
		}
	}
}

func (d *decoder) secrets(n *yaml.Node) []Secret {
	items, _ := d.list(n, "secrets", "")
	var out []Secret
	seen := map[string]int{}
	for i, item := range items {
		f := index("secrets", i)
		if !d.expectMapping(item, f, "id and keyvault") {
			continue
		}
		s := Secret{Pos: at(item)}
		var idNode, kvNode *yaml.Node
		typo := map[string]bool{}
		for _, p := range d.mapping(item, f) {
			switch p.key.Value {
			case "id":
				s.ID, idNode = d.str(p.val, join(f, "id")), p.val
			case "keyvault":
				s.KeyVault, kvNode = d.str(p.val, join(f, "keyvault")), p.val
			case "clientID":
				s.ClientID = d.str(p.val, join(f, "clientID"))
				if s.ClientID != "" && !uuidRE.MatchString(s.ClientID) {
					d.ps.add(at(p.val), join(f, "clientID"), "%q is not a GUID (the client ID of a user-assigned identity)", s.ClientID)
				}
			default:
				typo[d.unknown(p.key, f, secretKeys, "")] = true
			}
		}
		switch {
		case s.ID == "" && typo["id"]:
		case s.ID == "":
			d.ps.add(at(item), join(f, "id"), "is required (the name used in {{.Secrets.<id>}})")
		case strings.ContainsFunc(s.ID, isSpace):
			d.ps.add(at(idNode), join(f, "id"), "%q must not contain spaces", s.ID)
		default:
			if j, dup := seen[s.ID]; dup {
				d.ps.add(at(idNode), join(f, "id"), "duplicate secret id %q (also used by secrets[%d] at line %d)", s.ID, j, out[j].Pos.Line)
			}
			seen[s.ID] = len(out)
		}
		if s.KeyVault == "" && kvNode == nil && !typo["keyvault"] {
			d.ps.add(at(item), join(f, "keyvault"), "is required (the secret URI, e.g. https://myvault.vault.azure.net/secrets/name)")
		} else if s.KeyVault == "" && kvNode != nil {
			d.ps.add(at(kvNode), join(f, "keyvault"), "is empty (the secret URI, e.g. https://myvault.vault.azure.net/secrets/name)")
		}
		out = append(out, s)
	}
	return out
}

func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f'
}

func (d *decoder) volumes(n *yaml.Node) []Volume {
	items, _ := d.list(n, "volumes", "")
	var out []Volume
	seen := map[string]int{}
	for i, item := range items {
		f := index("volumes", i)
		if !d.expectMapping(item, f, "name and secret") {
			continue
		}
		v := Volume{Pos: at(item)}
		var nameNode, secretNode *yaml.Node
		typo := map[string]bool{}
		for _, p := range d.mapping(item, f) {
			switch p.key.Value {
			case "name":
				v.Name, nameNode = d.str(p.val, join(f, "name")), p.val
			case "secret":
				secretNode = p.val
				v.Secret = d.volumeSecret(p.val, join(f, "secret"))
			default:
				typo[d.unknown(p.key, f, volumeKeys, "")] = true
			}
		}
		switch {
		case v.Name == "" && typo["name"]:
		case v.Name == "":
			d.ps.add(at(item), join(f, "name"), "is required")
		case !volumeNameRE.MatchString(v.Name):
			d.ps.add(at(nameNode), join(f, "name"), "%q may only contain letters, digits, '-' and '_'", v.Name)
		default:
			if j, dup := seen[v.Name]; dup {
				d.ps.add(at(nameNode), join(f, "name"), "duplicate volume name %q (also used by volumes[%d] at line %d)", v.Name, j, out[j].Pos.Line)
			}
			seen[v.Name] = len(out)
		}
		if secretNode == nil && !typo["secret"] {
			d.ps.add(at(item), join(f, "secret"), "is required (only secret volumes are supported): a mapping of file names to base64 values")
		} else if secretNode != nil && secretNode.Kind == yaml.MappingNode && len(secretNode.Content) == 0 {
			d.ps.add(at(secretNode), join(f, "secret"), "must list at least one file")
		}
		out = append(out, v)
	}
	return out
}

// volumeSecret decodes the file-name → base64-value mapping of a secret volume. The
// values are secret: no message may quote them.
func (d *decoder) volumeSecret(n *yaml.Node, field string) map[string]string {
	if !d.expectMapping(n, field, "file names to base64 values") {
		return nil
	}
	out := map[string]string{}
	for _, p := range d.mapping(n, field) {
		name := p.key.Value
		f := join(field, name)
		if !fileNameRE.MatchString(name) {
			d.ps.add(at(p.key), field, "file name %q may only contain letters, digits, '-', '_' and '.'", name)
			continue
		}
		if p.val.Kind != yaml.ScalarNode {
			d.ps.add(at(p.val), f, "must be a base64 string, not a %s", kindName(p.val))
			continue
		}
		value := p.val.Value
		if p.val.Tag == "!!null" {
			value = ""
		}
		if _, err := base64.StdEncoding.DecodeString(value); err != nil {
			d.ps.add(at(p.val), f, "value is not valid base64 (encode it, e.g. {{.Secrets.mysecret | b64enc}})")
			continue
		}
		out[name] = value
	}
	return out
}

func (d *decoder) networks(n *yaml.Node) []Network {
	items, _ := d.list(n, "networks", "")
	var out []Network
	seen := map[string]int{}
	for i, item := range items {
		f := index("networks", i)
		if !d.expectMapping(item, f, "name, driver, ipv6, skipCreation, isDefault") {
			continue
		}
		nw := Network{Pos: at(item)}
		var nameNode *yaml.Node
		typo := map[string]bool{}
		for _, p := range d.mapping(item, f) {
			kf := join(f, p.key.Value)
			switch p.key.Value {
			case "name":
				nw.Name, nameNode = d.str(p.val, kf), p.val
			case "driver":
				nw.Driver = d.str(p.val, kf)
			case "ipv6":
				nw.IPv6 = d.boolean(p.val, kf)
			case "skipCreation":
				nw.SkipCreation = d.boolean(p.val, kf)
			case "isDefault":
				nw.IsDefault = d.boolean(p.val, kf)
			default:
				typo[d.unknown(p.key, f, networkKeys, "")] = true
			}
		}
		switch {
		case nw.Name == "" && typo["name"]:
		case nw.Name == "":
			d.ps.add(at(item), join(f, "name"), "is required")
		default:
			if j, dup := seen[nw.Name]; dup {
				d.ps.add(at(nameNode), join(f, "name"), "duplicate network name %q (also used by networks[%d] at line %d)", nw.Name, j, out[j].Pos.Line)
			}
			seen[nw.Name] = len(out)
		}
		out = append(out, nw)
	}
	return out
}

func (d *decoder) step(i int, n *yaml.Node) Step {
	s := Step{Index: i, Pos: at(n), fields: map[string]Pos{}}
	f := index("steps", i)
	if !d.expectMapping(n, f, "a step with cmd, build or push") {
		return s
	}
	keys := map[string]*yaml.Node{}
	values := map[string]*yaml.Node{}
	typo := map[string]bool{}
	for _, p := range d.mapping(n, f) {
		k, v := p.key.Value, p.val
		kf := join(f, k)
		keys[k] = p.key
		values[k] = v
		s.fields[k] = at(v)
		if v.Kind == yaml.SequenceNode {
			for j, c := range v.Content {
				s.fields[index(k, j)] = at(c)
			}
		}
		switch k {
		case "id":
			s.ID = d.str(v, kf)
			switch {
			case s.ID == "":
			case strings.ContainsFunc(s.ID, isSpace):
				d.ps.add(at(v), kf, "%q must not contain spaces", s.ID)
			case s.ID == RootID:
				d.ps.add(at(v), kf, "%q is reserved", s.ID)
			case !stepIDRE.MatchString(s.ID):
				d.ps.add(at(v), kf, "%q may only contain letters, digits, '_', '.' and '-', and must start with a letter or digit (the id names the step's container)", s.ID)
			}
		case "cmd":
			s.Cmd = strings.TrimSpace(d.str(v, kf))
		case "build":
			s.Build = strings.TrimSpace(d.str(v, kf))
		case "push":
			s.Push = d.strList(v, kf, "push")
		case "when":
			s.When = d.strList(v, kf, "when")
		case "env":
			s.Env = d.strList(v, kf, "env")
			for j, e := range s.Env {
				if key, _, ok := strings.Cut(e, "="); !ok || key == "" {
					d.ps.add(s.At(index(k, j)), index(kf, j), "must be KEY=VALUE")
				}
			}
		case "entryPoint":
			s.EntryPoint = d.str(v, kf)
		case "workingDirectory":
			s.WorkingDirectory = d.str(v, kf)
		case "disableWorkingDirectoryOverride":
			s.DisableWorkingDirectoryOverride = d.boolean(v, kf)
		case "timeout":
			s.Timeout = d.integer(v, kf)
		case "startDelay":
			s.StartDelay = d.nonNegative(v, kf)
		case "retries":
			s.Retries = d.nonNegative(v, kf)
		case "retryDelay":
			s.RetryDelay = d.integer(v, kf)
		case "retryOnErrors":
			s.RetryOnErrors = d.strList(v, kf, "retryOnErrors")
		case "repeat":
			s.Repeat = d.nonNegative(v, kf)
		case "detach":
			s.Detach = d.boolean(v, kf)
		case "keep":
			s.Keep = d.boolean(v, kf)
		case "ports":
			s.Ports = d.strList(v, kf, "ports")
		case "expose":
			s.Expose = d.strList(v, kf, "expose")
		case "privileged":
			s.Privileged = d.boolean(v, kf)
		case "user":
			s.User = d.str(v, kf)
		case "network":
			s.Network = d.str(v, kf)
		case "isolation":
			s.Isolation = d.str(v, kf)
		case "cpus":
			s.CPUs = d.str(v, kf)
		case "ignoreErrors":
			s.IgnoreErrors = d.boolean(v, kf)
		case "pull":
			s.Pull = d.boolean(v, kf)
		case "downloadRetries", "cmdDownloadRetries":
			s.DownloadRetries = d.nonNegative(v, kf)
		case "downloadRetryDelay", "cmdDownloadRetryDelay":
			s.DownloadRetryDelay = d.nonNegative(v, kf)
		case "volumeMounts":
			s.VolumeMounts = d.mounts(v, kf)
		case "cache":
			s.Cache = strings.ToLower(d.str(v, kf))
			if s.Cache != "" && s.Cache != "enabled" && s.Cache != "disabled" {
				d.ps.add(at(v), kf, "%q is not valid (use enabled or disabled)", v.Value)
			}
		case "exitedWith":
			s.ExitedWith = d.intList(v, kf)
		case "exitedWithout":
			s.ExitedWithout = d.intList(v, kf)
		default:
			hint := ""
			if slices.Contains(taskKeys, k) {
				hint = k + " is a task-level property: put it at the top of the file"
			}
			typo[d.unknown(p.key, f, stepKeys, hint)] = true
		}
	}
	for _, pair := range [][2]string{{"downloadRetries", "cmdDownloadRetries"}, {"downloadRetryDelay", "cmdDownloadRetryDelay"}} {
		if keys[pair[0]] != nil && keys[pair[1]] != nil {
			d.ps.add(at(keys[pair[1]]), f, "use only one of %s and %s", pair[0], pair[1])
		}
	}

	var kinds []string
	if s.Cmd != "" {
		kinds = append(kinds, "cmd")
	}
	if s.Build != "" {
		kinds = append(kinds, "build")
	}
	if len(s.Push) > 0 {
		kinds = append(kinds, "push")
	}
	switch len(kinds) {
	case 0:
		present := ""
		for _, k := range []string{"cmd", "build", "push"} {
			if keys[k] != nil {
				present = k
			}
		}
		switch {
		case present != "":
			// An empty value of the right type; a wrong type is reported already.
			v := values[present]
			if v.Tag == "!!null" || (present == "push") == (v.Kind == yaml.SequenceNode) {
				d.ps.add(s.At(present), join(f, present), "is empty")
			}
		case typo["cmd"] || typo["build"] || typo["push"]:
		default:
			d.ps.add(s.Pos, f, "a step needs one of cmd, build or push")
		}
	case 1:
	default:
		d.ps.add(s.Pos, f, "a step must have only one of cmd, build or push (found %s)", strings.Join(kinds, " and "))
	}
	if len(kinds) == 1 && kinds[0] == "push" {
		for k, kn := range keys {
			if !slices.Contains(pushKeys, k) && slices.Contains(stepKeys, k) {
				d.ps.add(at(kn), f, "%s is not allowed on a push step (push steps accept only %s)", k, strings.Join(pushKeys, ", "))
			}
		}
	}
	if len(kinds) == 1 && kinds[0] == "build" && len(s.VolumeMounts) > 0 {
		d.ps.add(s.At("volumeMounts"), join(f, "volumeMounts"), "volume mounts are only supported on cmd steps")
	}
	for j, w := range s.When {
		switch {
		case w == "":
			d.ps.add(s.At("when"), index(join(f, "when"), j), "empty step id")
		case w == ImmediateToken && len(s.When) > 1:
			d.ps.add(s.At("when"), join(f, "when"), "'-' (start immediately) cannot be combined with step ids")
		}
	}
	if s.RetryDelay <= 0 {
		s.RetryDelay = DefaultRetryDelay
	}
	return s
}

func (d *decoder) mounts(n *yaml.Node, field string) []VolumeMount {
	items, _ := d.list(n, field, "")
	var out []VolumeMount
	seen := map[string]int{}
	for i, item := range items {
		f := index(field, i)
		if !d.expectMapping(item, f, "name and mountPath") {
			continue
		}
		m := VolumeMount{Pos: at(item)}
		var pathNode *yaml.Node
		typo := map[string]bool{}
		for _, p := range d.mapping(item, f) {
			switch p.key.Value {
			case "name":
				m.Name = d.str(p.val, join(f, "name"))
			case "mountPath":
				m.MountPath, pathNode = d.str(p.val, join(f, "mountPath")), p.val
			default:
				typo[d.unknown(p.key, f, mountKeys, "")] = true
			}
		}
		if m.Name == "" && !typo["name"] {
			d.ps.add(at(item), join(f, "name"), "is required (the name of a volume in volumes)")
		}
		switch {
		case m.MountPath == "" && typo["mountPath"]:
		case m.MountPath == "":
			d.ps.add(at(item), join(f, "mountPath"), "is required (an absolute path in the container)")
		case !path.IsAbs(m.MountPath):
			d.ps.add(at(pathNode), join(f, "mountPath"), "%q must be an absolute path in the container", m.MountPath)
		default:
			if j, dup := seen[path.Clean(m.MountPath)]; dup {
				d.ps.add(at(pathNode), join(f, "mountPath"), "%q is already mounted by %s", m.MountPath, index(field, j))
			}
			seen[path.Clean(m.MountPath)] = i
		}
		out = append(out, m)
	}
	return out
}

// crossCheck assigns default step ids and checks what spans steps: unique ids, when
// references (earlier steps only, as in ACR's DAG) and volume mount names.
func (d *decoder) crossCheck(t *Task) {
	byID := map[string]int{}
	for i := range t.Steps {
		s := &t.Steps[i]
		explicit := s.ID != ""
		if !explicit {
			s.ID = fmt.Sprintf("acb_step_%d", i)
		}
		if j, dup := byID[s.ID]; dup {
			if explicit {
				d.ps.add(s.At("id"), index("steps", i)+".id", "duplicate step id %q (also used by steps[%d] at line %d)", s.ID, j, t.Steps[j].Pos.Line)
			} else {
				d.ps.add(s.Pos, index("steps", i), "this step has no id and its default id %q is already used by steps[%d] at line %d", s.ID, j, t.Steps[j].Pos.Line)
			}
			continue
		}
		byID[s.ID] = i
	}
	volumes := make([]string, 0, len(t.Volumes))
	for _, v := range t.Volumes {
		volumes = append(volumes, v.Name)
	}
	for i := range t.Steps {
		s := &t.Steps[i]
		f := index("steps", i)
		var earlier []string
		for _, e := range t.Steps[:i] {
			earlier = append(earlier, e.ID)
		}
		for _, w := range s.When {
			if w == "" || w == ImmediateToken {
				continue
			}
			p := s.At(index("when", slices.Index(s.When, w)))
			switch j, ok := byID[w]; {
			case w == s.ID:
				d.ps.add(p, join(f, "when"), "step %q cannot depend on itself", w)
			case ok && j > i:
				d.ps.add(p, join(f, "when"), "%q is defined after this step, by steps[%d] at line %d (when may only name earlier steps)", w, j, t.Steps[j].Pos.Line)
			case !ok || j >= i:
				msg := fmt.Sprintf("%q is not defined before this step (when may only name earlier steps)", w)
				if c := closest(w, earlier); c != "" {
					msg += fmt.Sprintf("; did you mean %q?", c)
				}
				d.ps.add(p, join(f, "when"), "%s", msg)
			}
		}
		for j, m := range s.VolumeMounts {
			if m.Name != "" && !slices.Contains(volumes, m.Name) {
				msg := fmt.Sprintf("%q is not a volume declared in volumes", m.Name)
				if c := closest(m.Name, volumes); c != "" {
					msg += fmt.Sprintf("; did you mean %q?", c)
				}
				d.ps.add(m.Pos, index(join(f, "volumeMounts"), j)+".name", "%s", msg)
			}
		}
	}
}
