package engine

import (
	"slices"
	"sync"

	"github.com/gantryhq/gantry/internal/plan"
)

// outputs are what a run produced: the images it pushed, with their
// digests, and what each of its build steps built from.
type outputs struct {
	mu     sync.Mutex
	images []Image
	deps   map[string]*Dependency // build step ID -> its bases
}

func newOutputs() *outputs { return &outputs{deps: map[string]*Dependency{}} }

// pushed records that ref was pushed with digest (a later push of the same
// reference replaces the earlier).
func (o *outputs) pushed(ref, digest string) {
	img := imageOf(ref)
	img.Digest = digest
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, im := range o.images {
		if im.Reference() == img.Reference() {
			o.images[i] = img
			return
		}
	}
	o.images = append(o.images, img)
}

// built records the bases of a build step.
func (o *outputs) built(d *Dependency) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.deps[d.Step] = d
}

// digests maps each pushed reference to its digest.
func (o *outputs) digests() map[string]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := map[string]string{}
	for _, im := range o.images {
		m[im.Reference()] = im.Digest
	}
	return m
}

// result assembles the Result of the steps, the dependencies in the
// plan's step order.
func (o *outputs) result(steps []StepResult, order []plan.Step) Result {
	o.mu.Lock()
	defer o.mu.Unlock()
	res := Result{Steps: steps, Images: slices.Clone(o.images)}
	for _, s := range order {
		if d, ok := o.deps[s.ID]; ok {
			res.Dependencies = append(res.Dependencies, *d)
		}
	}
	return res
}
