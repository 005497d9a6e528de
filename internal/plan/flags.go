package plan

import (
	"fmt"
	"strconv"
	"strings"
)

// Flag is a command-line flag in its long form, e.g. {Name: "--platform", Value:
// "linux/amd64"}; boolean flags have Value "true" or "false".
type Flag struct {
	Name  string
	Value string
}

// flagSpec describes a flag a docker command accepts.
type flagSpec struct {
	long  string
	short string
	value bool // takes a value (otherwise boolean)
}

// parseFlags parses docker-CLI style flags (--name value, --name=value, -n value,
// -nvalue, -n=value, boolean --name[=true|false]). "--" ends the flags.
func parseFlags(args []string, specs []flagSpec, what string) (flags []Flag, operands []string, err error) {
	find := func(name string) (flagSpec, bool) {
		for _, s := range specs {
			if s.long == name || (s.short != "" && s.short == name) {
				return s, true
			}
		}
		return flagSpec{}, false
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return flags, append(operands, args[i+1:]...), nil
		case strings.HasPrefix(a, "--"):
			name, value, hasValue := strings.Cut(a, "=")
			spec, ok := find(name)
			if !ok {
				return nil, nil, fmt.Errorf("unknown flag %q for %s", name, what)
			}
			if !spec.value {
				if !hasValue {
					value = "true"
				} else if _, err := strconv.ParseBool(value); err != nil {
					return nil, nil, fmt.Errorf("flag %s of %s needs true or false, not %q", name, what, value)
				}
			} else if !hasValue {
				if i+1 >= len(args) {
					return nil, nil, fmt.Errorf("flag %s of %s needs a value", name, what)
				}
				i++
				value = args[i]
			}
			flags = append(flags, Flag{Name: spec.long, Value: value})
		case strings.HasPrefix(a, "-") && len(a) > 1:
			name, value := a[:2], a[2:]
			spec, ok := find(name)
			if !ok {
				return nil, nil, fmt.Errorf("unknown flag %q for %s", name, what)
			}
			value = strings.TrimPrefix(value, "=")
			if !spec.value {
				if value != "" {
					return nil, nil, fmt.Errorf("unknown flag %q for %s (combined short flags are not supported)", a, what)
				}
				value = "true"
			} else if value == "" {
				if i+1 >= len(args) {
					return nil, nil, fmt.Errorf("flag %s of %s needs a value", name, what)
				}
				i++
				value = args[i]
			}
			flags = append(flags, Flag{Name: spec.long, Value: value})
		default:
			operands = append(operands, a)
		}
	}
	return flags, operands, nil
}

func isTrue(v string) bool {
	b, _ := strconv.ParseBool(v)
	return b
}
