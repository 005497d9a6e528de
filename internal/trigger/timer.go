package trigger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/gantryhq/gantry/internal/task"
)

// maxCatchUpSteps bounds the walk over missed occurrences (a minutely timer
// missed for two years).
const maxCatchUpSteps = 1 << 20

type timerKey struct{ taskID, name string }

type timerEntry struct {
	key      timerKey
	registry string
	task     string
	schedule string
	sched    cron.Schedule
	// last is the last occurrence handled (or when watching began); next
	// the one after it.
	last, next time.Time
}

// timerTrigger is one goroutine firing every active timer.
type timerTrigger struct {
	s     *Service
	kicks *kicker

	entries map[timerKey]*timerEntry // owned by run

	viewMu sync.Mutex
	view   map[timerKey]time.Time // next fires, for Describe
}

func newTimerTrigger(s *Service) *timerTrigger {
	return &timerTrigger{s: s, kicks: newKicker(), entries: map[timerKey]*timerEntry{}, view: map[timerKey]time.Time{}}
}

func (tt *timerTrigger) kick(taskID string) { tt.kicks.kick(taskID) }

// nextFire returns when a timer fires next (zero if it is not active).
func (tt *timerTrigger) nextFire(taskID, name string) time.Time {
	tt.viewMu.Lock()
	defer tt.viewMu.Unlock()
	return tt.view[timerKey{taskID, name}]
}

func (tt *timerTrigger) publish() {
	v := make(map[timerKey]time.Time, len(tt.entries))
	for k, e := range tt.entries {
		v[k] = e.next
	}
	tt.viewMu.Lock()
	tt.view = v
	tt.viewMu.Unlock()
}

func (tt *timerTrigger) run(ctx context.Context) {
	// Start: every active timer resumes from its stored last fire, so
	// occurrences missed while the server was down come due at once.
	tt.load(ctx, "", true)
	wakeUp := alarm{clock: tt.s.clock}
	defer wakeUp.stop()
	for {
		if ids, all := tt.kicks.take(); all {
			tt.load(ctx, "", false)
		} else {
			for _, id := range ids {
				tt.load(ctx, id, false)
			}
		}
		now := tt.s.clock.Now()
		for _, e := range tt.entries {
			if !e.next.IsZero() && !e.next.After(now) {
				tt.fire(ctx, e, now)
			}
		}
		tt.publish()
		var next time.Time
		for _, e := range tt.entries {
			if !e.next.IsZero() && (next.IsZero() || e.next.Before(next)) {
				next = e.next
			}
		}
		// From the clock's time now: an occurrence that came due while
		// firing fires at once.
		fire := wakeUp.at(next)
		if h := tt.s.hooks.timerWait; h != nil {
			h(next)
		}
		select {
		case <-ctx.Done():
			return
		case <-tt.kicks.wake:
		case <-fire:
		}
	}
}

// load (re)reads the timers of one task, or of all when taskID is "".
// Timers kept unchanged keep their place; at start every active timer
// resumes from its last fire; otherwise a timer that is new, re-enabled or
// rescheduled starts from now.
func (tt *timerTrigger) load(ctx context.Context, taskID string, resume bool) {
	states, err := tt.s.tasks.TimerStates(ctx, taskID)
	if err != nil {
		if ctx.Err() == nil {
			tt.s.log.ErrorContext(ctx, "timer trigger: reading timers", "task", taskID, "err", err)
		}
		return
	}
	now := tt.s.clock.Now().UTC()
	seen := map[timerKey]bool{}
	for _, st := range states {
		k := timerKey{st.TaskID, st.Name}
		if !st.TaskEnabled || !st.Enabled {
			continue
		}
		seen[k] = true
		if e := tt.entries[k]; e != nil && e.schedule == st.Schedule {
			e.registry, e.task = st.Registry, st.Task
			continue
		}
		sched, err := task.ParseSchedule(st.Schedule)
		if err != nil {
			tt.s.log.WarnContext(ctx, "timer trigger: bad schedule", "registry", st.Registry, "task", st.Task, "timer", st.Name, "err", err)
			continue
		}
		e := &timerEntry{key: k, registry: st.Registry, task: st.Task, schedule: st.Schedule, sched: sched}
		if resume && !st.LastFire.IsZero() {
			e.last = st.LastFire
		} else {
			// Watching starts now: record it, so a restart before the first
			// occurrence still catches that occurrence up.
			e.last = now
			if _, err := tt.s.tasks.SetTimerLastFire(ctx, st.TaskID, st.Name, st.Schedule, now); err != nil {
				tt.s.log.ErrorContext(ctx, "timer trigger: recording the timer start", "task", st.Task, "timer", st.Name, "err", err)
			}
		}
		e.next = sched.Next(e.last.UTC())
		tt.entries[k] = e
	}
	for k := range tt.entries {
		if (taskID == "" || k.taskID == taskID) && !seen[k] {
			delete(tt.entries, k)
		}
	}
}

// fire queues the run of a due timer: one run for its latest due
// occurrence, however many passed.
func (tt *timerTrigger) fire(ctx context.Context, e *timerEntry, now time.Time) {
	occ, missed := e.next, 0
	for n := e.sched.Next(occ); !n.After(now) && missed < maxCatchUpSteps; n = e.sched.Next(n) {
		occ = n
		missed++
	}
	err := tt.queue(ctx, e, occ, missed, now)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		tt.s.log.ErrorContext(ctx, "timer trigger: queueing a run", "registry", e.registry, "task", e.task, "timer", e.key.name, "err", err)
	}
	if ok, err := tt.s.tasks.SetTimerLastFire(ctx, e.key.taskID, e.key.name, e.schedule, occ); err != nil {
		tt.s.log.ErrorContext(ctx, "timer trigger: recording the fire", "task", e.task, "timer", e.key.name, "err", err)
	} else if !ok {
		// Removed or rescheduled meanwhile: reload it.
		tt.kick(e.key.taskID)
	}
	e.last = occ
	e.next = e.sched.Next(occ.UTC())
}

func (tt *timerTrigger) queue(ctx context.Context, e *timerEntry, occ time.Time, missed int, woke time.Time) error {
	t, err := tt.s.tasks.TaskByID(ctx, e.key.taskID)
	if err != nil {
		if errors.Is(err, task.ErrNotFound) {
			return nil
		}
		return err
	}
	var tm *task.Timer
	for i := range t.Timers {
		if t.Timers[i].Name == e.key.name {
			tm = &t.Timers[i]
		}
	}
	if t.Status != task.StatusEnabled || tm == nil || !tm.Enabled || tm.Schedule != e.schedule {
		tt.kick(e.key.taskID)
		return nil
	}
	recent, err := tt.s.tasks.RecentRuns(ctx, t.ID, task.TriggerTimer, 20)
	if err != nil {
		return err
	}
	for _, r := range recent {
		if c := r.Cause.Timer; c != nil && c.Name == e.key.name && c.Time.Equal(occ) {
			return nil // queued before a crash, not yet recorded
		}
	}
	cause := task.Cause{Timer: &task.TimerCause{Name: e.key.name, Schedule: e.schedule, Time: occ.UTC()}}
	switch {
	case occ.Before(tt.s.startedAt) && missed > 0:
		cause.Note = fmt.Sprintf("caught up after restart: %d occurrences were missed while the server was down; one run for the latest", missed+1)
	case occ.Before(tt.s.startedAt):
		cause.Note = "caught up after restart: the occurrence was missed while the server was down"
	case missed > 0:
		cause.Note = fmt.Sprintf("%d occurrences came due together; one run for the latest", missed+1)
	}
	r, err := tt.s.tasks.QueueTaskRun(ctx, t, task.TriggerTimer, cause)
	if err != nil {
		if errors.Is(err, task.ErrDisabled) {
			return nil
		}
		return err
	}
	fired := occ
	if occ.Before(tt.s.startedAt) {
		fired = woke
	}
	tt.s.metrics.RunQueued(task.TriggerTimer, tt.s.clock.Now().Sub(fired))
	tt.s.log.InfoContext(ctx, "timer trigger: run queued", "registry", t.Registry, "task", t.Name, "timer", e.key.name,
		"run", r.ID, "occurrence", occ)
	return nil
}
