package trigger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/task"
)

// change is a tracked tag seen at a new digest: a store event, an external
// poll result or a catch-up finding.
type change struct {
	// registry is the gantry registry holding the tag, "" for an external
	// registry.
	registry string
	// hosts are the spellings of the registry's host the tracked rows may
	// use.
	hosts      []string
	repository string
	tag        string
	digest     string
	runID      string
	pushedBy   string
	note       string
	// catchUp marks a change found by comparing tracked and current
	// digests (at Start, after a run), where a run queued just before a
	// crash may exist already.
	catchUp bool
	// only restricts the change to these tasks (a catch-up of one task);
	// nil means every dependent.
	only map[string]bool
	// seen is when the change reached the trigger (submit).
	seen time.Time
}

// pendingTask gathers the changes of one task during the debounce window.
type pendingTask struct {
	task  *task.Task
	items map[string]pendingItem // by tracked image
	due   time.Time
}

type pendingItem struct {
	base task.TrackedBase
	ch   change
}

// baseTrigger is the base-image trigger's dispatcher: one goroutine that
// turns changes into runs.
type baseTrigger struct {
	s *Service

	mu        sync.Mutex
	inbox     []change
	reconcile map[string]bool // task IDs to compare with current digests
	all       bool            // compare every task (Start)
	barriers  []chan struct{}
	wake      chan struct{}

	// Owned by the dispatcher goroutine.
	pending map[string]*pendingTask
	// fired is the digest each (task, image) was last triggered for.
	fired map[firedKey]string
}

type firedKey struct{ taskID, image string }

func newBaseTrigger(s *Service) *baseTrigger {
	return &baseTrigger{s: s, reconcile: map[string]bool{}, wake: make(chan struct{}, 1), pending: map[string]*pendingTask{},
		fired: map[firedKey]string{}}
}

// load reads what was triggered before and schedules the catch-up of every
// task.
func (b *baseTrigger) load(ctx context.Context) error {
	rows, err := b.s.db.R.QueryContext(ctx, `SELECT task_id, image, digest FROM trigger_base_fired`)
	if err != nil {
		return fmt.Errorf("loading base-image trigger state: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k firedKey
		var d string
		if err := rows.Scan(&k.taskID, &k.image, &d); err != nil {
			return err
		}
		b.fired[k] = d
	}
	b.all = true
	return rows.Err()
}

func (b *baseTrigger) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// onTagEvent is the store subscriber: it runs on the pushing goroutine, so
// it only appends to the inbox.
func (b *baseTrigger) onTagEvent(ev store.TagEvent) {
	if b.s.stopped.Load() || ev.New == "" {
		return
	}
	b.submit(change{registry: ev.Registry, repository: ev.Repository, tag: ev.Tag, digest: ev.New.String(),
		runID: ev.RunID, pushedBy: ev.PushedBy})
}

func (b *baseTrigger) submit(c change) {
	c.seen = b.s.clock.Now()
	b.mu.Lock()
	b.inbox = append(b.inbox, c)
	b.mu.Unlock()
	b.signal()
}

// reconcileTask schedules comparing a task's bases with their current
// digests.
func (b *baseTrigger) reconcileTask(taskID string) {
	b.mu.Lock()
	b.reconcile[taskID] = true
	b.mu.Unlock()
	b.signal()
}

// settle waits until every change submitted before the call is handled and
// no run is waiting for its debounce window (tests, benchmarks).
func (b *baseTrigger) settle(ctx context.Context) error {
	ch := make(chan struct{})
	b.mu.Lock()
	b.barriers = append(b.barriers, ch)
	b.mu.Unlock()
	b.signal()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *baseTrigger) run(ctx context.Context) {
	wakeUp := alarm{clock: b.s.clock}
	defer wakeUp.stop()
	for {
		b.mu.Lock()
		inbox, reconcile, all := b.inbox, b.reconcile, b.all
		b.inbox, b.reconcile, b.all = nil, map[string]bool{}, false
		b.mu.Unlock()

		if all {
			b.catchUp(ctx, nil, "caught up at start: the tag moved while the server was down")
		} else if len(reconcile) > 0 {
			b.catchUp(ctx, reconcile, "the base moved while the task's previous run was building")
		}
		for _, c := range inbox {
			b.handle(ctx, c)
		}
		now := b.s.clock.Now()
		b.flush(ctx, now)

		var next time.Time
		for _, p := range b.pending {
			if next.IsZero() || p.due.Before(next) {
				next = p.due
			}
		}
		b.mu.Lock()
		idle := len(b.inbox) == 0 && len(b.reconcile) == 0 && !b.all
		var release []chan struct{}
		if idle && len(b.pending) == 0 {
			release, b.barriers = b.barriers, nil
		}
		b.mu.Unlock()
		for _, ch := range release {
			close(ch)
		}
		if !idle {
			continue
		}

		fire := wakeUp.at(next)
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
		case <-fire:
		}
	}
}

// handle finds the tasks a change concerns and adds them to the pending
// set.
func (b *baseTrigger) handle(ctx context.Context, c change) {
	if c.registry != "" && c.hosts == nil {
		c.hosts = b.s.spellingsOf(ctx, c.registry)
		if len(c.hosts) == 0 {
			return // a registry without a login server yet: nothing can track it
		}
	}
	deps, err := b.s.tasks.Dependents(ctx, c.hosts, c.repository, c.tag)
	if err != nil {
		b.s.log.ErrorContext(ctx, "base-image trigger: finding dependent tasks", "repository", c.repository, "tag", c.tag, "err", err)
		return
	}
	var ancestors map[string]bool
	for _, d := range deps {
		t := d.Task
		if c.only != nil && !c.only[t.ID] {
			continue
		}
		if t.Status != task.StatusEnabled || !t.BaseImageTrigger || (!d.Base.Runtime && t.BaseImageTriggerType != task.BaseImageAll) {
			continue
		}
		if d.Base.Digest == c.digest || b.fired[firedKey{t.ID, d.Base.Image}] == c.digest {
			// Unchanged, or this digest already triggered the task; a tag
			// that moved back within the debounce window drops its pending
			// change.
			if p := b.pending[t.ID]; p != nil && p.items[d.Base.Image].ch.digest != "" {
				delete(p.items, d.Base.Image)
				if len(p.items) == 0 {
					delete(b.pending, t.ID)
				}
			}
			continue
		}
		if c.runID != "" {
			if ancestors == nil {
				ancestors = b.ancestors(ctx, c)
			}
			if ancestors[t.ID] {
				b.s.log.InfoContext(ctx, "base-image trigger: not triggering a task by its own push",
					"registry", t.Registry, "task", t.Name, "image", d.Base.Image, "run", c.runID)
				continue
			}
		}
		p := b.pending[t.ID]
		if p == nil {
			p = &pendingTask{task: t, items: map[string]pendingItem{}, due: b.s.clock.Now().Add(b.s.debounce)}
			b.pending[t.ID] = p
		}
		p.task = t
		p.items[d.Base.Image] = pendingItem{base: d.Base, ch: c}
	}
}

// ancestors returns the tasks on the causal chain of the run that pushed
// c: the pushing run's task and every task whose run led to it.
func (b *baseTrigger) ancestors(ctx context.Context, c change) map[string]bool {
	out := map[string]bool{}
	pusher, err := b.s.tasks.Pusher(ctx, &task.ImageCause{Registry: c.registry, RunID: c.runID, NewDigest: c.digest})
	if err != nil || pusher == nil {
		if err != nil {
			b.s.log.WarnContext(ctx, "base-image trigger: finding the pushing run", "run", c.runID, "err", err)
		}
		return out
	}
	chain, err := b.s.tasks.Chain(ctx, pusher.Registry, pusher.ID)
	if err != nil {
		b.s.log.WarnContext(ctx, "base-image trigger: following the causal chain", "run", c.runID, "err", err)
		chain = []*task.Run{pusher}
	}
	for _, r := range chain {
		if r.TaskID != "" {
			out[r.TaskID] = true
		}
	}
	return out
}

// flush queues the runs of tasks whose debounce window has passed.
func (b *baseTrigger) flush(ctx context.Context, now time.Time) {
	var due []*pendingTask
	for id, p := range b.pending {
		if !p.due.After(now) {
			due = append(due, p)
			delete(b.pending, id)
		}
	}
	if len(due) == 0 {
		return
	}
	sort.Slice(due, func(i, j int) bool {
		return due[i].task.Registry+"/"+due[i].task.Name < due[j].task.Registry+"/"+due[j].task.Name
	})
	active, err := b.s.tasks.ActiveRuns(ctx, task.TriggerImageUpdate)
	if err != nil {
		b.s.log.ErrorContext(ctx, "base-image trigger: reading active runs", "err", err)
	}
	byTask := map[string][]*task.Run{}
	for _, r := range active {
		byTask[r.TaskID] = append(byTask[r.TaskID], r)
	}
	var records []firedRecord
	for _, p := range due {
		records = append(records, b.queue(ctx, p, byTask[p.task.ID])...)
	}
	if len(records) > 0 {
		if err := b.saveFired(ctx, records); err != nil {
			b.s.log.ErrorContext(ctx, "base-image trigger: recording fired digests", "err", err)
		}
	}
}

type firedRecord struct {
	key             firedKey
	digest          string
	registry, runID string
}

// queue queues one run for a task's gathered changes, unless a run already
// covers them, and returns what to record as fired.
func (b *baseTrigger) queue(ctx context.Context, p *pendingTask, active []*task.Run) []firedRecord {
	t := p.task
	items := make([]pendingItem, 0, len(p.items))
	for _, it := range p.items {
		items = append(items, it)
	}
	// The runtime base first, then by image: the run's cause names it.
	sort.Slice(items, func(i, j int) bool {
		if items[i].base.Runtime != items[j].base.Runtime {
			return items[i].base.Runtime
		}
		return items[i].base.Image < items[j].base.Image
	})
	primary := items[0]
	mark := func(registry, runID string) []firedRecord {
		out := make([]firedRecord, 0, len(items))
		for _, it := range items {
			k := firedKey{t.ID, it.base.Image}
			b.fired[k] = it.ch.digest
			out = append(out, firedRecord{key: k, digest: it.ch.digest, registry: registry, runID: runID})
		}
		return out
	}
	for _, r := range active {
		if r.Status == task.RunQueued {
			b.s.log.InfoContext(ctx, "base-image trigger: coalesced into the queued run", "registry", t.Registry, "task", t.Name,
				"run", r.ID, "image", primary.base.Image, "digest", primary.ch.digest)
			return mark(r.Registry, "")
		}
	}
	if primary.ch.runID != "" {
		for _, r := range active {
			if c := r.Cause.ImageUpdate; c != nil && c.RunID == primary.ch.runID && c.Registry == primary.ch.registry {
				// The same upstream run pushed another tag the task tracks
				// while the task's run for it is building; if the build used
				// the old digest, the check after it succeeds catches it.
				b.s.log.InfoContext(ctx, "base-image trigger: already running for this upstream run", "registry", t.Registry,
					"task", t.Name, "run", r.ID, "upstream", primary.ch.runID)
				return nil
			}
		}
	}
	if primary.ch.catchUp && b.alreadyQueued(ctx, t.ID, primary) {
		return mark(t.Registry, "")
	}
	cause := task.Cause{ImageUpdate: &task.ImageCause{
		Image:     primary.base.Image,
		OldDigest: primary.base.Digest,
		NewDigest: primary.ch.digest,
		Registry:  primary.ch.registry,
		RunID:     primary.ch.runID,
		PushedBy:  primary.ch.pushedBy,
	}}
	var notes []string
	if primary.ch.note != "" {
		notes = append(notes, primary.ch.note)
	}
	for _, it := range items[1:] {
		notes = append(notes, fmt.Sprintf("also %s moved to %s", it.base.Image, it.ch.digest))
	}
	cause.Note = strings.Join(notes, "; ")
	r, err := b.s.tasks.QueueTaskRun(ctx, t, task.TriggerImageUpdate, cause)
	if err != nil {
		if errors.Is(err, task.ErrDisabled) {
			return nil
		}
		b.s.log.ErrorContext(ctx, "base-image trigger: queueing a run", "registry", t.Registry, "task", t.Name, "err", err)
		return nil
	}
	seen := primary.ch.seen
	for _, it := range items {
		if it.ch.seen.Before(seen) {
			seen = it.ch.seen
		}
	}
	b.s.metrics.RunQueued(task.TriggerImageUpdate, b.s.clock.Now().Sub(seen))
	b.s.log.InfoContext(ctx, "base-image trigger: run queued", "registry", t.Registry, "task", t.Name, "run", r.ID,
		"image", primary.base.Image, "old", primary.base.Digest, "new", primary.ch.digest, "upstream", primary.ch.runID)
	return mark(r.Registry, r.ID)
}

// alreadyQueued reports whether one of the task's recent runs was queued
// for this very change (a crash between queueing and recording it).
func (b *baseTrigger) alreadyQueued(ctx context.Context, taskID string, it pendingItem) bool {
	runs, err := b.s.tasks.RecentRuns(ctx, taskID, task.TriggerImageUpdate, 10)
	if err != nil {
		return false
	}
	for _, r := range runs {
		if c := r.Cause.ImageUpdate; c != nil && c.Image == it.base.Image && c.NewDigest == it.ch.digest {
			return true
		}
	}
	return false
}

func (b *baseTrigger) saveFired(ctx context.Context, records []firedRecord) error {
	now := formatTime(b.s.clock.Now())
	return b.s.db.Tx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO trigger_base_fired(task_id, image, digest, registry, run_id, fired_at)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(task_id, image) DO UPDATE SET digest = excluded.digest,
			registry = excluded.registry, run_id = excluded.run_id, fired_at = excluded.fired_at`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, r := range records {
			if _, err := stmt.ExecContext(ctx, r.key.taskID, r.key.image, r.digest, r.registry, r.runID, now); err != nil {
				// The task may have been deleted meanwhile (foreign key).
				b.s.log.DebugContext(ctx, "recording a fired digest", "task", r.key.taskID, "err", err)
			}
		}
		return nil
	})
}

// catchUp compares the tracked bases in gantry registries of the given
// tasks (nil: every task) with the tags' current digests and hands each
// moved tag to handle, with who pushed it from the tag history.
func (b *baseTrigger) catchUp(ctx context.Context, only map[string]bool, note string) {
	var bases []task.TaskBase
	if only == nil {
		var err error
		if bases, err = b.s.tasks.WatchedBaseImages(ctx); err != nil {
			b.s.log.ErrorContext(ctx, "base-image trigger: reading tracked bases", "err", err)
			return
		}
	} else {
		for id := range only {
			tbs, err := b.s.tasks.BaseImages(ctx, id)
			if err != nil {
				b.s.log.ErrorContext(ctx, "base-image trigger: reading tracked bases", "task", id, "err", err)
				continue
			}
			for _, tb := range tbs {
				bases = append(bases, task.TaskBase{TaskID: id, TrackedBase: tb})
			}
		}
	}
	type tagKey struct{ registry, repository, tag string }
	current := map[tagKey]string{} // "" when the tag is gone
	moved := map[tagKey]bool{}
	var order []tagKey
	for _, tb := range bases {
		reg := b.s.registryOf(tb.Registry)
		if reg == "" {
			continue // external: the poller checks it
		}
		k := tagKey{reg, tb.Repository, tb.Tag}
		cur, seen := current[k]
		if !seen {
			d, err := b.s.content.ResolveTag(ctx, reg, tb.Repository, tb.Tag)
			if err == nil {
				cur = d.String()
			}
			current[k] = cur
			order = append(order, k)
		}
		if cur != "" && cur != tb.Digest && b.fired[firedKey{tb.TaskID, tb.Image}] != cur {
			moved[k] = true
		}
	}
	for _, k := range order {
		if !moved[k] {
			continue
		}
		c := change{registry: k.registry, repository: k.repository, tag: k.tag, digest: current[k], note: note, only: only, catchUp: true}
		if hist, err := b.s.content.TagHistory(ctx, k.registry, k.repository, k.tag); err == nil {
			for i := len(hist) - 1; i >= 0; i-- {
				if hist[i].New.String() == c.digest {
					c.runID, c.pushedBy = hist[i].RunID, hist[i].PushedBy
					break
				}
			}
		}
		b.handle(ctx, c)
	}
}
