package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// GoVulnDBVersion is the version of the Go module golang.org/x/vulndb whose
// data/osv the tests and the demo import: the real Go vulnerability
// database, fetched through the Go module proxy (scripts/setup.sh).
const GoVulnDBVersion = "v0.0.0-20261105234957-e22db6528018"

var goVulnDB = sync.OnceValues(func() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "mod", "download", "-json", "golang.org/x/vulndb@"+GoVulnDBVersion).Output()
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &mod); err == nil && jerr != nil {
		err = jerr
	}
	if err == nil && (mod.Error != "" || mod.Dir == "") {
		err = errors.New(mod.Error)
	}
	if err != nil {
		return "", err
	}
	return filepath.Join(mod.Dir, "data", "osv"), nil
})

// GoVulnDB returns the data/osv directory (about 4,800 OSV files) of
// golang.org/x/vulndb in the module cache, downloading the module if needed;
// without it the test is skipped, or fails where integration tests are
// required (Require).
func GoVulnDB(t testing.TB) string {
	t.Helper()
	dir, err := goVulnDB()
	if err != nil {
		Require(t, "golang.org/x/vulndb@%s cannot be fetched: %v", GoVulnDBVersion, err)
	}
	return dir
}
