package engine

import (
	"maps"
	"sync"

	"github.com/gantryhq/gantry/internal/docker"
)

// scope is what images a run may use (docs/security.md, "Images are
// scoped"): the tags it created (built, tagged, or pulled when the engine
// did not have them), the images it made sure of with its own logins, and
// the Docker Hub names the engine holds, but never gantry's own
// repositories nor image IDs.
type scope struct {
	own []string // gantry's own repositories (Engine.reservedRepositories)

	mu      sync.Mutex
	created map[string]string // image tag -> image ID the run gave it
	ready   map[string]bool   // images known to be present for this run
}

func newScope(own []string) *scope {
	return &scope{own: own, created: map[string]string{}, ready: map[string]bool{}}
}

// add records that the run gave the tags to image id.
func (sc *scope) add(id string, tags ...string) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, t := range tags {
		sc.created[t] = id
		sc.ready[t] = true
	}
}

// markReady records that ref is present for the run.
func (sc *scope) markReady(ref string) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.ready[ref] = true
}

// present reports whether the run made sure of ref, spelled as it is.
func (sc *scope) present(ref string) bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	_, created := sc.created[ref]
	return sc.ready[ref] || created
}

// forget drops a tag the run removed (docker rmi).
func (sc *scope) forget(ref string) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	delete(sc.created, ref)
	delete(sc.ready, ref)
}

// createdTags returns the tags the run created, with their image IDs.
func (sc *scope) createdTags() map[string]string {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return maps.Clone(sc.created)
}

// owns reports whether the run created the tag ref (built, tagged or
// pulled it when the engine did not have it).
func (sc *scope) owns(ref string) bool {
	k := qualified(ref)
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return hasImage(sc.created, k)
}

// sees reports whether a run may use the image ref: one it created, one it
// pulled with its own logins, or a Docker Hub name the engine holds (the
// public base images the operator provides, which no run may replace).
// Image IDs are never visible: a step names images, and an ID would reach
// any image on the engine.
func (sc *scope) sees(ref string) bool {
	if sc.obtained(ref) {
		return true
	}
	if isImageID(ref) {
		return false
	}
	return imageOf(ref).Registry == dockerHub && !sc.reserved(ref)
}

// obtained reports whether the run created ref or pulled it with its own
// logins.
func (sc *scope) obtained(ref string) bool {
	k := qualified(ref)
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return hasImage(sc.created, k) || hasImage(sc.ready, k)
}

// reserved reports a reference in one of gantry's own repositories.
func (sc *scope) reserved(ref string) bool {
	img := imageOf(ref)
	for _, repo := range sc.own {
		if ri := imageOf(repo); ri.Registry == img.Registry && ri.Repository == img.Repository {
			return true
		}
	}
	return false
}

// visibleImages keeps, of an image list, the tags the run created or
// pulled itself (docker images in a step): other images are left out.
func (sc *scope) visibleImages(list []docker.ImageSummary) []docker.ImageSummary {
	var out []docker.ImageSummary
	for _, im := range list {
		var tags []string
		for _, t := range im.RepoTags {
			if sc.obtained(t) {
				tags = append(tags, t)
			}
		}
		if len(tags) == 0 {
			continue
		}
		im.RepoTags = tags
		out = append(out, im)
	}
	return out
}
