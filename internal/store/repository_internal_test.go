package store

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/db"
)

// TestRepositoryNamesQueryPlan checks that the catalog's query reads the
// (registry, name) index alone: a search in it, no table rows, no sort.
func TestRepositoryNamesQueryPlan(t *testing.T) {
	ctx := context.Background()
	d, err := db.Open(ctx, filepath.Join(t.TempDir(), "gantry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rows, err := d.R.QueryContext(ctx, "EXPLAIN QUERY PLAN "+repositoryNamesQuery, "reg", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(plan, "; ")
	if len(plan) != 1 || !strings.HasPrefix(plan[0], "SEARCH repositories USING COVERING INDEX ") ||
		!strings.Contains(plan[0], "(registry=? AND name>?)") {
		t.Fatalf("query plan %q: want one index-only SEARCH on (registry=? AND name>?) and no sort", got)
	}
	t.Logf("query plan: %s", got)
}
