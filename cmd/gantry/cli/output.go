package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jmespath/go-jmespath"
	"gopkg.in/yaml.v3"
)

// column is one column of a table view: a header and a JMESPath expression
// evaluated against each row.
type column struct {
	header string
	expr   string
	// format, if set, turns the value into the cell text.
	format func(any) string
}

// tableView is how a command's result is shown with -o table when no
// --query is given. Rows come from the result itself (a list) or, for a
// single object, the object is the only row.
type tableView []column

// render prints v (any JSON-marshalable value) in the requested format,
// applying the JMESPath query first when one is given.
func render(w io.Writer, format, query string, v any, view tableView) error {
	generic, err := toGeneric(v)
	if err != nil {
		return err
	}
	if query != "" {
		generic, err = jmespath.Search(query, generic)
		if err != nil {
			return fmt.Errorf("--query %q: %w", query, err)
		}
		view = nil
	}
	switch format {
	case "", "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(generic)
	case "jsonc":
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return enc.Encode(generic)
	case "yaml":
		if generic == nil {
			return nil
		}
		return yaml.NewEncoder(w).Encode(generic)
	case "tsv":
		return writeTSV(w, generic)
	case "table":
		return writeTable(w, generic, view)
	case "none":
		return nil
	default:
		return fmt.Errorf("output format %q: want json, jsonc, table, tsv, yaml or none", format)
	}
}

// toGeneric turns v into the map/slice/scalar form JMESPath works on.
func toGeneric(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var g any
	if err := json.Unmarshal(b, &g); err != nil {
		return nil, err
	}
	return g, nil
}

// scalar formats a leaf value the way az does in tsv and table output.
func scalar(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	case bool:
		if t {
			return "True"
		}
		return "False"
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	default:
		b, _ := json.Marshal(t)
		return string(b)
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// writeTSV prints one line per list element (or one line for an object or
// scalar); an object's leaf values are tab-separated in key order, nested
// objects and lists are omitted, as az does.
func writeTSV(w io.Writer, g any) error {
	rows, ok := g.([]any)
	if !ok {
		rows = []any{g}
	}
	for _, r := range rows {
		var fields []string
		switch t := r.(type) {
		case nil:
			continue
		case map[string]any:
			for _, k := range sortedKeys(t) {
				switch t[k].(type) {
				case map[string]any, []any:
					continue
				}
				fields = append(fields, scalar(t[k]))
			}
		case []any:
			for _, e := range t {
				fields = append(fields, scalar(e))
			}
		default:
			fields = []string{scalar(t)}
		}
		if _, err := fmt.Fprintln(w, strings.Join(fields, "\t")); err != nil {
			return err
		}
	}
	return nil
}

// writeTable prints rows with a header line and a dashed rule, columns
// separated by two spaces (az's table format).
func writeTable(w io.Writer, g any, view tableView) error {
	rows, ok := g.([]any)
	if !ok {
		if g == nil {
			return nil
		}
		rows = []any{g}
	}
	var headers []string
	var cells [][]string
	if len(view) > 0 {
		for _, c := range view {
			headers = append(headers, c.header)
		}
		for _, r := range rows {
			line := make([]string, len(view))
			for i, c := range view {
				v, err := jmespath.Search(c.expr, r)
				if err != nil {
					return fmt.Errorf("table column %s: %w", c.header, err)
				}
				if c.format != nil {
					line[i] = c.format(v)
				} else {
					line[i] = scalar(v)
				}
			}
			cells = append(cells, line)
		}
	} else {
		// Without a view, columns are the union of the rows' leaf keys.
		seen := map[string]bool{}
		for _, r := range rows {
			if m, ok := r.(map[string]any); ok {
				for _, k := range sortedKeys(m) {
					switch m[k].(type) {
					case map[string]any, []any:
						continue
					}
					if !seen[k] {
						seen[k] = true
						headers = append(headers, k)
					}
				}
			}
		}
		if len(headers) == 0 {
			headers = []string{"Result"}
			for _, r := range rows {
				cells = append(cells, []string{scalar(r)})
			}
		} else {
			for _, r := range rows {
				m, _ := r.(map[string]any)
				line := make([]string, len(headers))
				for i, h := range headers {
					line[i] = scalar(m[h])
				}
				cells = append(cells, line)
			}
			for i, h := range headers {
				headers[i] = headerCase(h)
			}
		}
	}
	widths := make([]int, len(headers))
	for i, h := range headers {
		widths[i] = utf8.RuneCountInString(h)
	}
	for _, line := range cells {
		for i, c := range line {
			if n := utf8.RuneCountInString(c); n > widths[i] {
				widths[i] = n
			}
		}
	}
	var b strings.Builder
	writeRow := func(fields []string) {
		for i, f := range fields {
			b.WriteString(f)
			if i < len(fields)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(f)+2))
			}
		}
		b.WriteString("\n")
	}
	writeRow(headers)
	rule := make([]string, len(headers))
	for i := range headers {
		rule[i] = strings.Repeat("-", widths[i])
	}
	writeRow(rule)
	for _, line := range cells {
		writeRow(line)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// headerCase turns a JSON key like "loginServer" into "LoginServer" for
// auto-generated table headers.
func headerCase(k string) string {
	if k == "" {
		return k
	}
	return strings.ToUpper(k[:1]) + k[1:]
}
