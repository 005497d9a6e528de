package cli

import (
	"reflect"
	"testing"

	"github.com/gantryhq/gantry/api"
)

func TestSplitCommandLine(t *testing.T) {
	t.Parallel()
	for in, want := range map[string][]string{
		`node /src/server.js`:            {"node", "/src/server.js"},
		`sh -c 'exec httpd -f -p $PORT'`: {"sh", "-c", "exec httpd -f -p $PORT"},
		`echo "a \"b\" c" d\ e`:          {"echo", `a "b" c`, "d e"},
		`  spaced   out  `:               {"spaced", "out"},
		`x''y ""`:                        {"xy", ""},
		"/bin/bash -c myscript.sh":       {"/bin/bash", "-c", "myscript.sh"},
		`printf '%s\n' "$HOME"`:          {"printf", `%s\n`, "$HOME"},
	} {
		got, err := splitCommandLine(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("splitCommandLine(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`'open`, `"open`, `   `} {
		if _, err := splitCommandLine(bad); err == nil {
			t.Errorf("splitCommandLine(%q): no error", bad)
		}
	}
}

func TestEnvVars(t *testing.T) {
	t.Parallel()
	got, err := envVars("-e", []string{"A=1,B=2", "LIST=x,y,z", "C=k=v"})
	want := map[string]string{"A": "1", "B": "2", "LIST": "x,y,z", "C": "k=v"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("envVars = %v, %v; want %v", got, err, want)
	}
	if _, err := envVars("-e", []string{"novalue"}); err == nil {
		t.Errorf("envVars accepted a value without =")
	}
}

func TestParsePorts(t *testing.T) {
	t.Parallel()
	got, err := parsePorts([]string{"80", "8080:8000", "443/tcp"})
	want := []api.ContainerPortRequest{{Port: 80}, {Port: 8000, FrontPort: 8080}, {Port: 443, Protocol: "TCP"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("parsePorts = %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{"http", "x:80", ""} {
		if _, err := parsePorts([]string{bad}); err == nil {
			t.Errorf("parsePorts(%q): no error", bad)
		}
	}
}
