package trigger

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/task"
)

type timerEnv struct {
	*env
	clock *fakeClock
	next  chan time.Time
}

func newTimerEnv(t *testing.T, dir string, clock *fakeClock) *timerEnv {
	t.Helper()
	e := newEnv(t, dir, envConfig{now: clock.Now})
	e.registry(t, "contoso", appHost)
	return &timerEnv{env: e, clock: clock, next: make(chan time.Time, 100)}
}

func (e *timerEnv) start(t *testing.T) (*Service, func()) {
	return e.startTrigger(t, WithClock(e.clock), withHooks(hooks{timerWait: func(next time.Time) { e.next <- next }}))
}

// waitNext waits until the timer trigger waits for want (zero: for nothing).
func (e *timerEnv) waitNext(t *testing.T, want time.Time) {
	t.Helper()
	for {
		got := recv(t, e.next, "the timer trigger to wait for "+want.String())
		if got.Equal(want) {
			return
		}
	}
}

func at(hhmm string) time.Time {
	tm, err := time.Parse("2006-01-02 15:04", "2025-03-01 "+hhmm)
	if err != nil {
		panic(err)
	}
	return tm.UTC()
}

func TestTimerFiresWithoutDoublesOrLossAcrossRestarts(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(t0) // 10:00:30
	dir := t.TempDir()
	e := newTimerEnv(t, dir, clock)
	ctx := context.Background()
	tk := e.createTask(t, "contoso", "nightly", func(r *task.CreateRequest) { r.Schedules = []string{"every5:*/5 * * * *"} })
	_, stop := e.start(t)
	e.waitNext(t, at("10:05"))
	states, err := e.tasks.TimerStates(ctx, tk.ID)
	if err != nil || len(states) != 1 || !states[0].LastFire.Equal(t0) {
		t.Fatalf("timer state = %+v, %v (watching starts at %s)", states, err, t0)
	}

	clock.AdvanceTo(at("10:05"))
	e.waitNext(t, at("10:10"))
	runs := e.runs(t, "contoso", "nightly", task.TriggerTimer)
	if len(runs) != 1 {
		t.Fatalf("%d runs at 10:05, want 1", len(runs))
	}
	if c := runs[0].Cause.Timer; c == nil || c.Name != "every5" || c.Schedule != "*/5 * * * *" || !c.Time.Equal(at("10:05")) || runs[0].Cause.Note != "" {
		t.Fatalf("cause = %+v %q", c, runs[0].Cause.Note)
	}

	// Down from 10:05 to 10:27: 10:10, 10:15, 10:20 and 10:25 were missed;
	// one run catches them up.
	stop()
	clock.AdvanceTo(at("10:27").Add(10 * time.Second))
	_, stop = e.start(t)
	e.waitNext(t, at("10:30"))
	runs = e.runs(t, "contoso", "nightly", task.TriggerTimer)
	if len(runs) != 2 {
		t.Fatalf("%d runs after a restart, want 2", len(runs))
	}
	if c := runs[1].Cause; !c.Timer.Time.Equal(at("10:25")) || !strings.Contains(c.Note, "caught up after restart: 4 occurrences") {
		t.Fatalf("catch-up cause = %+v %q", c.Timer, c.Note)
	}
	// Another restart before the next occurrence fires nothing.
	stop()
	_, _ = e.start(t)
	e.waitNext(t, at("10:30"))
	if runs := e.runs(t, "contoso", "nightly", task.TriggerTimer); len(runs) != 2 {
		t.Fatalf("%d runs after a second restart, want 2", len(runs))
	}
	clock.AdvanceTo(at("10:30"))
	e.waitNext(t, at("10:35"))
	runs = e.runs(t, "contoso", "nightly", task.TriggerTimer)
	if len(runs) != 3 || !runs[2].Cause.Timer.Time.Equal(at("10:30")) || runs[2].Cause.Note != "" {
		t.Fatalf("runs = %d", len(runs))
	}
}

func TestTimerDisableEnableAndReschedule(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(t0)
	e := newTimerEnv(t, t.TempDir(), clock)
	ctx := context.Background()
	e.createTask(t, "contoso", "nightly", func(r *task.CreateRequest) {
		r.Schedules = []string{"every5:*/5 * * * *", "every10:*/10 * * * *"}
	})
	s, _ := e.start(t)
	e.waitNext(t, at("10:05"))
	clock.AdvanceTo(at("10:10"))
	e.waitNext(t, at("10:15"))
	// Missed nothing yet; at 10:10 both timers fire, each its own run.
	runs := e.runs(t, "contoso", "nightly", task.TriggerTimer)
	names := map[string]int{}
	for _, r := range runs {
		names[r.Cause.Timer.Name]++
	}
	if names["every5"] != 1 || names["every10"] != 1 {
		t.Fatalf("fires by timer = %v (the 10:05 and 10:10 occurrences of every5 came due together)", names)
	}

	// A disabled timer does not fire, and re-enabling it does not catch up.
	off, on := false, true
	if _, err := e.tasks.UpdateTimer(ctx, "contoso", "nightly", "every5", nil, &off); err != nil {
		t.Fatal(err)
	}
	e.waitNext(t, at("10:20"))
	clock.AdvanceTo(at("10:16"))
	if _, err := e.tasks.UpdateTimer(ctx, "contoso", "nightly", "every5", nil, &on); err != nil {
		t.Fatal(err)
	}
	e.waitNext(t, at("10:20"))
	if runs := e.runs(t, "contoso", "nightly", task.TriggerTimer); len(runs) != 2 {
		t.Fatalf("%d runs, want 2 (10:15 was disabled)", len(runs))
	}

	// A new schedule starts from now.
	sched := "0 * * * *"
	if _, err := e.tasks.UpdateTimer(ctx, "contoso", "nightly", "every5", &sched, nil); err != nil {
		t.Fatal(err)
	}
	e.waitNext(t, at("10:20")) // every10 still comes first
	info, err := s.Describe(ctx, "contoso", "nightly")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Timers) != 2 || info.Timers[0].Name != "every10" || !info.Timers[0].NextFire.Equal(at("10:20")) ||
		info.Timers[1].Name != "every5" || !info.Timers[1].NextFire.Equal(at("11:00")) {
		t.Fatalf("timers = %+v", info.Timers)
	}

	// A disabled task fires nothing.
	disabled := task.StatusDisabled
	if _, err := e.tasks.UpdateTask(ctx, "contoso", "nightly", task.UpdateRequest{Status: &disabled}); err != nil {
		t.Fatal(err)
	}
	e.waitNext(t, time.Time{})
	clock.AdvanceTo(at("11:30"))
	if runs := e.runs(t, "contoso", "nightly", task.TriggerTimer); len(runs) != 2 {
		t.Fatalf("%d runs, want 2", len(runs))
	}
	if err := s.base.settle(ctx); err != nil {
		t.Fatal(err)
	}
}

// A run queued just before a crash, whose fire was not yet recorded, is not
// queued again at the next start.
func TestTimerExactlyOnceAcrossACrash(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(t0)
	e := newTimerEnv(t, t.TempDir(), clock)
	ctx := context.Background()
	tk := e.createTask(t, "contoso", "nightly", func(r *task.CreateRequest) { r.Schedules = []string{"every5:*/5 * * * *"} })
	_, stop := e.start(t)
	e.waitNext(t, at("10:05"))
	stop()
	// What the crashed process did: queued the 10:05 run, recorded nothing.
	if _, err := e.tasks.QueueTaskRun(ctx, tk, task.TriggerTimer, task.Cause{Timer: &task.TimerCause{Name: "every5",
		Schedule: "*/5 * * * *", Time: at("10:05")}}); err != nil {
		t.Fatal(err)
	}
	clock.AdvanceTo(at("10:06"))
	_, _ = e.start(t)
	e.waitNext(t, at("10:10"))
	if runs := e.runs(t, "contoso", "nightly", task.TriggerTimer); len(runs) != 1 {
		t.Fatalf("%d runs, want 1", len(runs))
	}
	states, _ := e.tasks.TimerStates(ctx, tk.ID)
	if !states[0].LastFire.Equal(at("10:05")) {
		t.Fatalf("last fire = %s, want 10:05", states[0].LastFire)
	}
}
