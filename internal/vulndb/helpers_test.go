package vulndb_test

import (
	"archive/zip"
	"bytes"
	"testing"

	"github.com/gantryhq/gantry/internal/testenv"
	"github.com/gantryhq/gantry/internal/vulndb"
)

// newDB returns a vulnerability database in a fresh, migrated database.
func newDB(t testing.TB) *vulndb.DB {
	t.Helper()
	return vulndb.New(testenv.DB(t, t.TempDir()), nil)
}

// zipOf returns a zip of files (path -> content), deflated.
func zipOf(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
