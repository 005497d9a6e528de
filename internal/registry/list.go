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
	names := []string{}
	if p.N != 0 {
		q := p
		if q.N > 0 {
			q.N++
		}
		tags, err := h.st.ListTags(r.Context(), h.name, rt.repo, q)
		if err != nil {
			return err
		}
		for _, t := range tags {
			names = append(names, t.Name)
		}
	} else if _, err := h.st.ListTags(r.Context(), h.name, rt.repo, store.Page{N: 1}); err != nil {
		return err
	}
	names = h.linkNext(w, "/v2/"+rt.repo+"/tags/list", p, names)
	return writeJSON(w, r, http.StatusOK, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{rt.repo, names})
}

// linkNext trims a listing fetched with one extra entry and, if there was
// one, sets the Link header to the next page.
func (h *handler) linkNext(w http.ResponseWriter, path string, p store.Page, names []string) []string {
	if p.N <= 0 || len(names) <= p.N {
		return names
	}
	names = names[:p.N]
	q := url.Values{"last": {names[len(names)-1]}, "n": {strconv.Itoa(p.N)}}
	w.Header().Set("Link", "<"+path+"?"+q.Encode()+`>; rel="next"`)
	return names
}

// catalog lists the repositories of the registry.
func (h *handler) catalog(w http.ResponseWriter, r *http.Request, _ route, _ auth.Identity) error {
	p, err := page(r)
	if err != nil {
		return err
	}
	names := []string{}
	if p.N != 0 {
		q := p
		if q.N > 0 {
			q.N++
		}
		repos, err := h.st.ListRepositories(r.Context(), h.name, q)
		if err != nil {
			return err
		}
		for _, rp := range repos {
			names = append(names, rp.Name)
		}
	}
	names = h.linkNext(w, "/v2/_catalog", p, names)
	return writeJSON(w, r, http.StatusOK, "application/json", struct {
		Repositories []string `json:"repositories"`
	}{names})
}
