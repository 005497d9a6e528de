package config

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// example is the annotated configuration shipped for deployments.
const example = "../../deploy/gantry.yaml"

// TestExampleIsDefault: deploy/gantry.yaml, read by the server's own
// loader, is Default() (an empty list there is a nil one here) and valid.
func TestExampleIsDefault(t *testing.T) {
	t.Parallel()
	// Loaded over the zero Config: every value must come from the file.
	var c Config
	if err := c.LoadFile(example); err != nil {
		t.Fatal(err)
	}
	nilEmptySlices(reflect.ValueOf(&c).Elem())
	for _, d := range diff(reflect.ValueOf(c), reflect.ValueOf(Default()), "") {
		t.Errorf("%s: %s, want Default()'s", example, d)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("%s: %v", example, err)
	}
}

// TestExampleDocumentsEveryKey: every key of Config is in
// deploy/gantry.yaml, so that a new option cannot go undocumented.
func TestExampleDocumentsEveryKey(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var inFile []string
	if len(doc.Content) == 1 {
		inFile = nodeKeys(doc.Content[0], "")
	}
	for _, k := range configKeys(reflect.TypeFor[Config](), "") {
		if !slices.Contains(inFile, k) {
			t.Errorf("%s: no key %s: add it, set to its default, with a comment", example, k)
		}
	}
}

// configKeys lists the YAML paths of t's fields ("engine.buildNetwork"),
// sections included.
func configKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		key := prefix + name
		keys = append(keys, key)
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[struct{}]() && ft.PkgPath() == t.PkgPath() {
			keys = append(keys, configKeys(ft, key+".")...)
		}
	}
	return keys
}

// nodeKeys lists the key paths of a YAML mapping node, nested mappings
// included.
func nodeKeys(n *yaml.Node, prefix string) []string {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	var keys []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		key := prefix + n.Content[i].Value
		keys = append(keys, key)
		keys = append(keys, nodeKeys(n.Content[i+1], key+".")...)
	}
	return keys
}

// diff lists the fields in which got and want differ, by YAML path:
// "tasks.concurrency: 5 (default 4)".
func diff(got, want reflect.Value, prefix string) []string {
	if got.Kind() == reflect.Struct {
		var out []string
		for i := range got.NumField() {
			f := got.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			out = append(out, diff(got.Field(i), want.Field(i), prefix+name+".")...)
		}
		return out
	}
	if reflect.DeepEqual(got.Interface(), want.Interface()) {
		return nil
	}
	return []string{fmt.Sprintf("%s: %v (default %v)", strings.TrimSuffix(prefix, "."), got.Interface(), want.Interface())}
}

// nilEmptySlices sets the empty slices in v to nil.
func nilEmptySlices(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				nilEmptySlices(v.Field(i))
			}
		}
	case reflect.Pointer:
		if !v.IsNil() {
			nilEmptySlices(v.Elem())
		}
	case reflect.Slice:
		if v.Len() == 0 && !v.IsNil() {
			v.Set(reflect.Zero(v.Type()))
		}
	}
}
