package cli

import (
	"fmt"
	"strings"
)

// nargsFlags take several space-separated values, as az's do:
// `--repository samples/hello content/read content/write` and
// `--secret-permissions get list`. Cobra flags take one value, so Execute
// joins such runs into one comma-separated value before parsing.
var nargsFlags = map[string]bool{
	"--repository":                   true,
	"--add-repository":               true,
	"--remove-repository":            true,
	"--secret-permissions":           true,
	"--ports":                        true,
	"-e":                             true,
	"--environment-variables":        true,
	"--secure-environment-variables": true,
}

// optionalValueFlags may be given alone or with a value in the next word,
// as az's `--use-identity [system]` and `--scan-on-push [true|false]`;
// pflag only takes `--flag=value` for such flags, so Execute joins them.
var optionalValueFlags = map[string]bool{
	"--use-identity": true,
	"--scan-on-push": true,
}

// joinNargs rewrites `--flag a b c` (up to the next token starting with
// '-') as `--flag a,b,c` for the flags in nargsFlags.
func joinNargs(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if optionalValueFlags[a] && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			out = append(out, a+"="+args[i+1])
			i++
			continue
		}
		if !nargsFlags[a] {
			out = append(out, a)
			continue
		}
		var vals []string
		for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			i++
			vals = append(vals, args[i])
		}
		out = append(out, a)
		if len(vals) > 0 {
			out = append(out, strings.Join(vals, ","))
		}
	}
	return out
}

// repoActions parses joined --repository values ("repo,action,action").
func repoActions(vals []string, flag string) ([]repoActionPair, error) {
	var out []repoActionPair
	for _, v := range vals {
		parts := strings.Split(v, ",")
		if len(parts) < 2 {
			return nil, fmt.Errorf("%s %s: give the repository then its actions, e.g. %s hello-world content/read content/write", flag, v, flag)
		}
		out = append(out, repoActionPair{repo: parts[0], actions: parts[1:]})
	}
	return out, nil
}

type repoActionPair struct {
	repo    string
	actions []string
}
