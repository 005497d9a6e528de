package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/gantryhq/gantry/internal/store"
)

// seedRepositories creates n repositories in e, named so that their order
// is not their creation order and some share prefixes with separators, and
// returns their names sorted.
func seedRepositories(t testing.TB, e *env, n int) []string {
	t.Helper()
	content := []byte("catalog")
	d := digest.FromBytes(content)
	names := make([]string, 0, n)
	for i := range n {
		var name string
		switch i % 4 {
		case 0:
			name = fmt.Sprintf("team-%03d/app", (i*7919)%n)
		case 1:
			name = fmt.Sprintf("team-%03d/app/sub.%d", (i*7919)%n, i)
		case 2:
			name = fmt.Sprintf("team-%03d-x/app_%d", (i*7919)%n, i)
		default:
			name = fmt.Sprintf("z%d", i)
		}
		if _, err := e.st.PutBlob(context.Background(), e.name, name, d, int64(len(content)), bytes.NewReader(content)); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

var linkRE = regexp.MustCompile(`^<(/v2/_catalog\?[^>]*)>; rel="next"$`)

// catalogPage gets one catalog page at target and returns its names and
// the target of its Link header ("" without one).
func catalogPage(t *testing.T, e *env, target string) (names []string, next string) {
	t.Helper()
	r := e.do(t, "GET", target, nil)
	e.expect(t, r, http.StatusOK, "")
	var cat struct {
		Repositories []string `json:"repositories"`
	}
	if err := json.Unmarshal(r.body, &cat); err != nil || cat.Repositories == nil {
		t.Fatalf("GET %s: body %q: %v", target, r.body, err)
	}
	link := r.Header.Get("Link")
	if link == "" {
		return cat.Repositories, ""
	}
	m := linkRE.FindStringSubmatch(link)
	if m == nil {
		t.Fatalf("GET %s: Link %q", target, link)
	}
	return cat.Repositories, m[1]
}

// walkCatalog follows Link headers from target and returns every name seen
// and the page sizes.
func walkCatalog(t *testing.T, e *env, target string) (all []string, sizes []int) {
	t.Helper()
	for target != "" {
		var names []string
		names, target = catalogPage(t, e, target)
		all = append(all, names...)
		sizes = append(sizes, len(names))
		if len(sizes) > 1000 {
			t.Fatal("catalog pages do not end")
		}
	}
	return all, sizes
}

// TestCatalogPagination lists a registry of 2,400 repositories in pages:
// every name once in lexical order, pages of at most n (1000 when n is
// absent or larger), a Link header to the next page on every page but the
// last, and last= starting strictly after a name, listed or not.
func TestCatalogPagination(t *testing.T) {
	e := newEnv(t)
	want := seedRepositories(t, e, 2400)
	total := len(want)

	t.Run("default page", func(t *testing.T) {
		all, sizes := walkCatalog(t, e, "/v2/_catalog")
		if !slices.Equal(all, want) {
			t.Fatalf("walk listed %d names, want %d in order", len(all), total)
		}
		if !slices.Equal(sizes, []int{1000, 1000, total - 2000}) {
			t.Fatalf("page sizes %v", sizes)
		}
		_, next := catalogPage(t, e, "/v2/_catalog")
		if wantLink := "/v2/_catalog?last=" + url.QueryEscape(want[999]) + "&n=1000"; next != wantLink {
			t.Fatalf("first Link %q, want %q", next, wantLink)
		}
	})
	for _, n := range []int{1, 7, 100, 999, 1000, total - 1, total, 5000} {
		t.Run("n="+strconv.Itoa(n), func(t *testing.T) {
			if n < 100 {
				// Walk only the first pages: a full walk is total/n requests.
				target := "/v2/_catalog?n=" + strconv.Itoa(n)
				var got []string
				for range 5 {
					var names []string
					names, target = catalogPage(t, e, target)
					if len(names) != n || target == "" {
						t.Fatalf("page of %d names, Link %q; want %d and a Link", len(names), target, n)
					}
					got = append(got, names...)
				}
				if !slices.Equal(got, want[:5*n]) {
					t.Fatalf("first pages: %v, want %v", got, want[:5*n])
				}
				return
			}
			all, sizes := walkCatalog(t, e, "/v2/_catalog?n="+strconv.Itoa(n))
			if !slices.Equal(all, want) {
				t.Fatalf("walk listed %d names, want %d in order", len(all), total)
			}
			size := min(n, 1000)
			for i, s := range sizes {
				if last := i == len(sizes)-1; (!last && s != size) || (last && (s == 0 || s > size)) {
					t.Fatalf("page sizes %v, want pages of %d", sizes, size)
				}
			}
		})
	}
	t.Run("last", func(t *testing.T) {
		mid := want[total/2]
		names, next := catalogPage(t, e, "/v2/_catalog?n=3&last="+url.QueryEscape(mid))
		if !slices.Equal(names, want[total/2+1:total/2+4]) || next == "" {
			t.Fatalf("after %q: %v, Link %q", mid, names, next)
		}
		// A name that is not listed: the page starts at the next one.
		names, _ = catalogPage(t, e, "/v2/_catalog?n=2&last="+url.QueryEscape(mid+"!"))
		if !slices.Equal(names, want[total/2+1:total/2+3]) {
			t.Fatalf("after %q: %v", mid+"!", names)
		}
		// Exactly n names remain: no Link.
		names, next = catalogPage(t, e, "/v2/_catalog?n=10&last="+url.QueryEscape(want[total-11]))
		if !slices.Equal(names, want[total-10:]) || next != "" {
			t.Fatalf("last 10: %v, Link %q", names, next)
		}
		// Past the end: an empty list.
		names, next = catalogPage(t, e, "/v2/_catalog?last="+url.QueryEscape(want[total-1]))
		if len(names) != 0 || next != "" {
			t.Fatalf("past the end: %v, Link %q", names, next)
		}
	})
	t.Run("n=0", func(t *testing.T) {
		names, next := catalogPage(t, e, "/v2/_catalog?n=0")
		if len(names) != 0 || next != "" {
			t.Fatalf("n=0: %v, Link %q", names, next)
		}
	})
	t.Run("bad n", func(t *testing.T) {
		e.expect(t, e.do(t, "GET", "/v2/_catalog?n=-1", nil), http.StatusBadRequest, "PAGINATION_NUMBER_INVALID")
		e.expect(t, e.do(t, "GET", "/v2/_catalog?n=x", nil), http.StatusBadRequest, "PAGINATION_NUMBER_INVALID")
	})

	// The store's listing agrees.
	names, err := e.st.ListRepositoryNames(context.Background(), e.name, store.Page{Last: want[9], N: 5})
	if err != nil || !slices.Equal(names, want[10:15]) {
		t.Fatalf("ListRepositoryNames: %v, %v", names, err)
	}
}
