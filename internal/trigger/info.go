package trigger

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/gantryhq/gantry/internal/git"
	"github.com/gantryhq/gantry/internal/task"
)

// Info is what a task's triggers watch and last saw, for `task show`.
type Info struct {
	Registry string
	Task     string
	Commit   CommitInfo
	Base     BaseImageInfo
	Timers   []TimerInfo
}

// CommitInfo describes a task's commit trigger.
type CommitInfo struct {
	// Enabled: the task is enabled, its commit trigger is on and its
	// context is a git repository.
	Enabled bool
	// Repository and Branch are what is watched ("" branch: the default
	// branch).
	Repository string
	Branch     string
	// Head is the last branch head seen ("" before the first poll), by
	// Source (poll or webhook) at SeenAt.
	Head   string
	Source string
	SeenAt time.Time
	// PollInterval is the interval between polls (before jitter).
	PollInterval time.Duration
	// LastPoll and LastError are the last poll and its error, if any.
	LastPoll  time.Time
	LastError string
	// WebhookPath is the path of the task's webhook endpoint;
	// WebhookSecretSet tells whether its secret was created.
	WebhookPath      string
	WebhookSecretSet bool
	// LastDelivery and LastDeliveryResult describe the last signed
	// delivery.
	LastDelivery       time.Time
	LastDeliveryResult string
}

// BaseImageInfo describes a task's base-image trigger.
type BaseImageInfo struct {
	// Enabled: the task is enabled and its base-image trigger is on.
	Enabled bool
	// Type is Runtime or All.
	Type string
	// Tracked are the bases of the task's last successful build; empty
	// until the task has built once (NotTrackedYet).
	Tracked       []TrackedImage
	NotTrackedYet bool
}

// TrackedImage is one base a task tracks.
type TrackedImage struct {
	task.TrackedBase
	// Watched: a change of this base triggers the task (its runtime base,
	// or any base with type All).
	Watched bool
	// GantryRegistry is the gantry registry holding it ("" for an external
	// registry, which is polled).
	GantryRegistry string
	// Current is the tag's digest now (gantry) or at the last poll
	// (external; CheckedAt); "" if unknown.
	Current   string
	CheckedAt time.Time
	CheckErr  string
	// LastTriggered is the digest that last triggered the task, and
	// LastRun the run it queued ("" if coalesced into a queued run).
	LastTriggered string
	LastRun       string
}

// TimerInfo is a timer with its last and next fire.
type TimerInfo struct {
	task.Timer
	// LastFire is the last occurrence queued (or when watching began).
	LastFire time.Time
	// NextFire is the next occurrence (zero when the timer or task is
	// disabled).
	NextFire time.Time
}

// Describe returns what a task's triggers watch and last saw: the commit
// trigger's branch and last head, the webhook path, the tracked base images
// with their digests (or that none are known before the first build), and
// each timer's last and next fire.
func (s *Service) Describe(ctx context.Context, registry, taskName string) (Info, error) {
	t, err := s.tasks.GetTask(ctx, registry, taskName)
	if err != nil {
		return Info{}, err
	}
	info := Info{Registry: t.Registry, Task: t.Name}

	// Commit trigger.
	if t.Context != "" && git.IsGit(t.Context) {
		if gc, err := git.Parse(t.Context); err == nil {
			info.Commit = CommitInfo{
				Enabled:      watchable(t),
				Repository:   redactURL(gc.URL),
				Branch:       gc.Branch(),
				PollInterval: s.commits.interval(gc),
				WebhookPath:  WebhookPath(t.Registry, t.Name),
			}
			st, err := s.loadCommitState(ctx, t.ID)
			if err != nil {
				return Info{}, err
			}
			if st != nil && st.repository == gc.URL && st.branch == gc.Branch() {
				info.Commit.Head, info.Commit.Source, info.Commit.SeenAt = st.head, st.source, st.updatedAt
			}
			s.commits.mu.Lock()
			info.Commit.LastPoll, info.Commit.LastError = s.commits.polled[t.ID], s.commits.errs[t.ID]
			s.commits.mu.Unlock()
			var delivery string
			err = s.db.R.QueryRowContext(ctx, `SELECT last_delivery, last_result FROM trigger_webhooks WHERE task_id = ?`, t.ID).
				Scan(&delivery, &info.Commit.LastDeliveryResult)
			switch {
			case err == nil:
				info.Commit.WebhookSecretSet = true
				info.Commit.LastDelivery = parseTime(delivery)
			case !errors.Is(err, sql.ErrNoRows):
				return Info{}, err
			}
		}
	}

	// Base-image trigger.
	info.Base = BaseImageInfo{Enabled: t.Status == task.StatusEnabled && t.BaseImageTrigger, Type: t.BaseImageTriggerType}
	bases, err := s.tasks.BaseImages(ctx, t.ID)
	if err != nil {
		return Info{}, err
	}
	info.Base.NotTrackedYet = len(bases) == 0
	fired := map[string][2]string{}
	rows, err := s.db.R.QueryContext(ctx, `SELECT image, digest, run_id FROM trigger_base_fired WHERE task_id = ?`, t.ID)
	if err != nil {
		return Info{}, err
	}
	for rows.Next() {
		var img, d, run string
		if err := rows.Scan(&img, &d, &run); err != nil {
			rows.Close()
			return Info{}, err
		}
		fired[img] = [2]string{d, run}
	}
	rows.Close()
	for _, b := range bases {
		ti := TrackedImage{TrackedBase: b, Watched: b.Runtime || t.BaseImageTriggerType == task.BaseImageAll}
		ti.LastTriggered, ti.LastRun = fired[b.Image][0], fired[b.Image][1]
		if reg := s.registryOf(b.Registry); reg != "" {
			ti.GantryRegistry = reg
			if d, err := s.content.ResolveTag(ctx, reg, b.Repository, b.Tag); err == nil {
				ti.Current = d.String()
			}
		} else if st, ok := s.ext.state(b.Registry, b.Repository, b.Tag); ok && !st.at.IsZero() {
			ti.Current, ti.CheckedAt, ti.CheckErr = st.digest, st.at, st.err
		} else {
			var at string
			err := s.db.R.QueryRowContext(ctx, `SELECT digest, checked_at, error FROM trigger_external_images WHERE image = ?`,
				b.Registry+"/"+b.Repository+":"+b.Tag).Scan(&ti.Current, &at, &ti.CheckErr)
			if err == nil {
				ti.CheckedAt = parseTime(at)
			}
		}
		info.Base.Tracked = append(info.Base.Tracked, ti)
	}

	// Timers.
	states, err := s.tasks.TimerStates(ctx, t.ID)
	if err != nil {
		return Info{}, err
	}
	for _, st := range states {
		ti := TimerInfo{Timer: st.Timer, LastFire: st.LastFire}
		if st.TaskEnabled && st.Enabled {
			ti.NextFire = s.timers.nextFire(t.ID, st.Name)
			if ti.NextFire.IsZero() {
				if sched, err := task.ParseSchedule(st.Schedule); err == nil {
					from := st.LastFire
					if from.IsZero() {
						from = s.clock.Now()
					}
					ti.NextFire = sched.Next(from.UTC())
				}
			}
		}
		info.Timers = append(info.Timers, ti)
	}
	return info, nil
}
