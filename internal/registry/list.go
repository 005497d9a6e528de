package registry

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/store"
)

// page reads the n and last parameters. n < 0 means no limit.
func page(r *http.Request) (store.Page, error) {
	q := r.URL.Query()
	p := store.Page{Last: q.Get("last"), N: -1}
	if s := q.Get("n"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return p, fmt.Errorf("n=%q: %w", s, errPaginationNumber)
		}
		p.N = n
	}
	return p, nil
}

// tags serves the tag list of a repository.
func (h *handler) tags(w http.ResponseWriter, r *http.Request, rt route, _ auth.Identity) error {
	p, err := page(r)
	if err != nil {
		return err
	}
	if p.N == 0 {
		// Nothing is listed, but a missing repository is still unknown.
		if _, err := h.st.ListTags(r.Context(), h.name, rt.repo, store.Page{N: 1}); err != nil {
			return err
		}
	}
	names, err := listPage(w, "/v2/"+rt.repo+"/tags/list", p, func(q store.Page) ([]store.Tag, error) {
		return h.st.ListTags(r.Context(), h.name, rt.repo, q)
	}, func(t store.Tag) string { return t.Name })
	if err != nil {
		return err
	}
	return writeJSON(w, r, http.StatusOK, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{rt.repo, names})
}

// maxCatalogPage bounds a catalog page, as Distribution does (its
// catalog.maxentries): without n, or with a larger n, a client gets this
// many names and a Link header to the rest.
const maxCatalogPage = 1000

// catalog lists the repositories of the registry, a keyset page of names
// read from the repositories' index alone.
func (h *handler) catalog(w http.ResponseWriter, r *http.Request, _ route, _ auth.Identity) error {
	p, err := page(r)
	if err != nil {
		return err
	}
	if p.N < 0 || p.N > maxCatalogPage {
		p.N = maxCatalogPage
	}
	if p.N == 0 {
		// Nothing is listed, but an unknown registry is still unknown.
		if _, err := h.st.ListRepositoryNames(r.Context(), h.name, store.Page{N: 1}); err != nil {
			return err
		}
	}
	names, err := listPage(w, "/v2/_catalog", p, func(q store.Page) ([]string, error) {
		return h.st.ListRepositoryNames(r.Context(), h.name, q)
	}, func(name string) string { return name })
	if err != nil {
		return err
	}
	return writeJSON(w, r, http.StatusOK, "application/json", struct {
		Repositories []string `json:"repositories"`
	}{names})
}

// listPage lists page p of the names at path: it fetches one entry more
// than asked for and, if there was one, trims it and sets the Link header
// to the next page. n=0 fetches nothing.
func listPage[T any](w http.ResponseWriter, path string, p store.Page, fetch func(store.Page) ([]T, error), name func(T) string) ([]string, error) {
	names := []string{}
	if p.N == 0 {
		return names, nil
	}
	q := p
	if q.N > 0 {
		q.N++
	}
	items, err := fetch(q)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		names = append(names, name(it))
	}
	if p.N < 0 || len(names) <= p.N {
		return names, nil
	}
	names = names[:p.N]
	v := url.Values{"last": {names[len(names)-1]}, "n": {strconv.Itoa(p.N)}}
	w.Header().Set("Link", "<"+path+"?"+v.Encode()+`>; rel="next"`)
	return names, nil
}
