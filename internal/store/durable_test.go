package store_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/store"
)

// TestDamagedBlobFileReplaced checks that a blob file of the wrong size
// (a torn write before a crash) is not trusted by its name: pushing the
// blob again replaces it.
func TestDamagedBlobFileReplaced(t *testing.T) {
	t.Parallel()
	for _, durable := range []bool{false, true} {
		f := newFixture(t, store.WithSync(durable))
		ctx := context.Background()
		content := strings.Repeat("blob content ", 1000)
		d, size := f.blob("app", content)
		path := filepath.Join(f.root, "blobs", d.Algorithm().String(), d.Encoded()[:2], d.Encoded())
		if err := os.Truncate(path, size/2); err != nil {
			t.Fatal(err)
		}
		if _, err := f.st.PutBlob(ctx, "reg", "app", d, size, strings.NewReader(content)); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != content {
			t.Fatalf("durable=%v: blob file after a second push: %d bytes, %v; want the content", durable, len(b), err)
		}
	}
}
