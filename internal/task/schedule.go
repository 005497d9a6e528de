package task

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/robfig/cron/v3"
)

// cronParser parses ACR's 5-field cron (minute hour day month weekday), with
// ranges, steps, lists and names; schedules are in UTC.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// ParseSchedule parses a 5-field cron expression.
func ParseSchedule(expr string) (cron.Schedule, error) {
	if n := len(strings.Fields(expr)); n != 5 {
		return nil, fmt.Errorf("schedule %q has %d fields; want 5 (minute hour day month weekday, UTC)", expr, n)
	}
	s, err := cronParser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %v", expr, err)
	}
	return s, nil
}

func validTimer(tm Timer) error {
	if !timerName.MatchString(tm.Name) {
		return invalid("timerName", "%q must be 1-50 letters, digits, '-' or '_'", tm.Name)
	}
	if _, err := ParseSchedule(tm.Schedule); err != nil {
		return invalid("schedule", "%v", err)
	}
	return nil
}

// parseSchedules turns --schedule values ("cron" or "name:cron") into
// timers; unnamed ones get the first free default name t1, t2, ...
func parseSchedules(vals []string, existing []Timer) ([]Timer, error) {
	taken := map[string]bool{}
	for _, t := range existing {
		taken[t.Name] = true
	}
	var out []Timer
	for _, v := range vals {
		name, expr := "", strings.TrimSpace(v)
		if i := strings.Index(v, ":"); i > 0 && !strings.ContainsAny(v[:i], " *") {
			name, expr = v[:i], strings.TrimSpace(v[i+1:])
		}
		if name == "" {
			for n := 1; ; n++ {
				if c := fmt.Sprintf("t%d", n); !taken[c] {
					name = c
					break
				}
			}
		}
		if taken[name] {
			return nil, invalid("schedule", "timer %q already exists", name)
		}
		taken[name] = true
		tm := Timer{Name: name, Schedule: expr, Enabled: true}
		if err := validTimer(tm); err != nil {
			return nil, err
		}
		out = append(out, tm)
	}
	return out, nil
}

// AddTimer adds a named timer to a task.
func (s *Service) AddTimer(ctx context.Context, registry, task string, tm Timer) (*Task, error) {
	t, err := s.GetTask(ctx, registry, task)
	if err != nil {
		return nil, err
	}
	for _, x := range t.Timers {
		if x.Name == tm.Name {
			return nil, fmt.Errorf("timer %q of task %s: %w", tm.Name, task, ErrExists)
		}
	}
	if err := validTimer(tm); err != nil {
		return nil, err
	}
	if _, err := s.db.W.ExecContext(ctx, `INSERT INTO task_timers(task_id, name, schedule, enabled) VALUES (?, ?, ?, ?)`,
		t.ID, tm.Name, tm.Schedule, tm.Enabled); err != nil {
		return nil, err
	}
	s.notify(Change{Registry: registry, Task: task, TaskID: t.ID})
	return s.GetTask(ctx, registry, task)
}

// UpdateTimer changes a timer's schedule and/or enabled state.
func (s *Service) UpdateTimer(ctx context.Context, registry, task, name string, schedule *string, enabled *bool) (*Task, error) {
	t, err := s.GetTask(ctx, registry, task)
	if err != nil {
		return nil, err
	}
	var cur *Timer
	for i := range t.Timers {
		if t.Timers[i].Name == name {
			cur = &t.Timers[i]
		}
	}
	if cur == nil {
		return nil, fmt.Errorf("timer %q of task %s: %w", name, task, ErrNotFound)
	}
	if schedule != nil {
		cur.Schedule = *schedule
	}
	if enabled != nil {
		cur.Enabled = *enabled
	}
	if err := validTimer(*cur); err != nil {
		return nil, err
	}
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE task_timers SET schedule = ?, enabled = ? WHERE task_id = ? AND name = ?`,
			cur.Schedule, cur.Enabled, t.ID, name)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.notify(Change{Registry: registry, Task: task, TaskID: t.ID})
	return s.GetTask(ctx, registry, task)
}

// RemoveTimer removes a timer.
func (s *Service) RemoveTimer(ctx context.Context, registry, task, name string) (*Task, error) {
	t, err := s.GetTask(ctx, registry, task)
	if err != nil {
		return nil, err
	}
	res, err := s.db.W.ExecContext(ctx, `DELETE FROM task_timers WHERE task_id = ? AND name = ?`, t.ID, name)
	if err != nil {
		return nil, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, fmt.Errorf("timer %q of task %s: %w", name, task, ErrNotFound)
	}
	s.notify(Change{Registry: registry, Task: task, TaskID: t.ID})
	return s.GetTask(ctx, registry, task)
}
