package registry_test

import (
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/testenv"
)

// TestConformance runs the OCI distribution-spec conformance suite (pinned by
// scripts/tools.sh) against an in-process registry with OCI_VERSION=dev and
// every default data set, and requires zero failures.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance suite skipped in -short mode")
	}
	bin := testenv.Tool(t, "conformance")
	e := newEnv(t)
	results := t.TempDir()
	cmd := exec.Command(bin)
	cmd.Dir = results
	cmd.Env = append(os.Environ(),
		"OCI_VERSION=dev",
		"OCI_TLS=disabled",
		"OCI_REGISTRY="+strings.TrimPrefix(e.srv.URL, "http://"),
		"OCI_REPO1=conformance/repo1",
		"OCI_REPO2=conformance/repo2",
		"OCI_RESULTS_DIR="+results,
	)
	out, err := cmd.CombinedOutput()
	passed, failed, perr := conformanceCounts(filepath.Join(results, "junit.xml"))
	if perr != nil {
		t.Fatalf("reading results: %v (run error %v)\n%s", perr, err, out)
	}
	t.Logf("conformance: %d passed, %d failed\n%s", passed, failed, summary(string(out)))
	if failed > 0 || passed == 0 {
		t.Errorf("conformance suite: %d failed, %d passed (exit %v)\n%s", failed, passed, err, tail(string(out), 8000))
	}
}

// conformanceCounts counts the test cases of the suite's junit.xml that
// passed and that failed or errored.
func conformanceCounts(path string) (passed, failed int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	var doc struct {
		Suites []struct {
			Cases []struct {
				Name    string    `xml:"name,attr"`
				Status  string    `xml:"status,attr"`
				Failure *struct{} `xml:"failure"`
				Error   *struct{} `xml:"error"`
				Skipped *struct{} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		return 0, 0, fmt.Errorf("parsing %s: %w", path, err)
	}
	for _, s := range doc.Suites {
		for _, c := range s.Cases {
			switch {
			case c.Failure != nil || c.Error != nil || c.Status == "failure" || c.Status == "error":
				failed++
			case c.Skipped != nil || c.Status == "skipped":
			default:
				passed++
			}
		}
	}
	return passed, failed, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// summary extracts the suite's result counts from its report.
func summary(out string) string {
	i := strings.Index(out, "OCI Conformance Result:")
	if i < 0 {
		return tail(out, 2000)
	}
	s := out[i:]
	if j := strings.Index(s, "\n\n"); j >= 0 {
		s = s[:j]
	}
	return s
}
