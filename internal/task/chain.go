package task

import (
	"context"
	"fmt"
	"strings"
)

// maxChain bounds how far Chain follows causes back.
const maxChain = 64

// Chain returns the causal chain of a run: the run itself first, then the
// run that pushed the base image whose update triggered it, and so on back
// to the origin — a run started by a commit, a timer or by hand, or an
// Image Update run whose image was not pushed by a run (a manual push, an
// import, an external registry). Links follow Cause.ImageUpdate's RunID;
// the pushing run is looked up in the cause's registry first and, when the
// run pushed across registries, in whichever registry holds a run of that
// ID that output the new digest. The chain stops at a run already in it.
func (s *Service) Chain(ctx context.Context, registry, runID string) ([]*Run, error) {
	r, err := s.GetRun(ctx, registry, runID)
	if err != nil {
		return nil, err
	}
	chain := []*Run{r}
	seen := map[string]bool{r.Registry + "/" + r.ID: true}
	for len(chain) < maxChain {
		c := r.Cause.ImageUpdate
		if r.Trigger != TriggerImageUpdate || c == nil || c.RunID == "" {
			break
		}
		p, err := s.Pusher(ctx, c)
		if err != nil {
			return nil, err
		}
		if p == nil || seen[p.Registry+"/"+p.ID] {
			break
		}
		seen[p.Registry+"/"+p.ID] = true
		chain = append(chain, p)
		r = p
	}
	return chain, nil
}

// Pusher returns the run that pushed an image update's new digest, or nil
// when the cause names no run or the run is gone. Among runs sharing the
// ID across registries it prefers one that output the digest, then one in
// the image's registry, then a running one (a live push).
func (s *Service) Pusher(ctx context.Context, c *ImageCause) (*Run, error) {
	if c == nil || c.RunID == "" {
		return nil, nil
	}
	runs, err := s.FindRuns(ctx, c.RunID)
	if err != nil {
		return nil, fmt.Errorf("finding run %s: %w", c.RunID, err)
	}
	best, bestScore := (*Run)(nil), -1
	for _, r := range runs {
		score := 0
		for _, img := range r.OutputImages {
			if img.Digest == c.NewDigest {
				score += 4
				break
			}
		}
		if r.Registry == c.Registry {
			score += 2
		}
		if r.Status == RunRunning {
			score++
		}
		if score > bestScore {
			best, bestScore = r, score
		}
	}
	return best, nil
}

// DescribeChain renders a chain from Chain as one line from its origin to
// the run, e.g.
//
//	Commit 3f2a9c1 on /src/base-image-node#main → run ca1 (node-public) pushed
//	127.0.0.1:5001/node:15-alpine@sha256:0d5c… → Image Update run cb1 (base-import-node)
func DescribeChain(chain []*Run) string {
	if len(chain) == 0 {
		return ""
	}
	var parts []string
	origin := chain[len(chain)-1]
	switch c := origin.Cause; {
	case origin.Trigger == TriggerCommit && c.Commit != nil:
		ref := c.Commit.Repository
		if c.Commit.Branch != "" {
			ref += "#" + c.Commit.Branch
		}
		parts = append(parts, fmt.Sprintf("Commit %s on %s", shortSHA(c.Commit.Commit), ref))
	case origin.Trigger == TriggerTimer && c.Timer != nil:
		parts = append(parts, fmt.Sprintf("Timer %s (%s) at %s", c.Timer.Name, c.Timer.Schedule,
			c.Timer.Time.UTC().Format("2006-01-02T15:04:05Z")))
	case origin.Trigger == TriggerImageUpdate && c.ImageUpdate != nil:
		who := "pushed"
		if c.ImageUpdate.PushedBy != "" {
			who = "pushed by " + c.ImageUpdate.PushedBy
		}
		if c.ImageUpdate.Registry == "" {
			who = "updated upstream"
		}
		parts = append(parts, fmt.Sprintf("%s@%s %s", c.ImageUpdate.Image, shortDigest(c.ImageUpdate.NewDigest), who))
	}
	for i := len(chain) - 1; i >= 0; i-- {
		r := chain[i]
		label := r.Trigger + " run " + r.ID
		if r.Trigger == TriggerManual {
			label = "Manual run " + r.ID
		}
		if r.TaskName != "" {
			label += " (" + r.TaskName + ")"
		}
		if i > 0 {
			if c := chain[i-1].Cause.ImageUpdate; c != nil {
				label += fmt.Sprintf(" pushed %s@%s", c.Image, shortDigest(c.NewDigest))
			}
		}
		parts = append(parts, label)
	}
	return strings.Join(parts, " → ")
}

func shortSHA(s string) string {
	if len(s) > 7 {
		return s[:7]
	}
	return s
}

func shortDigest(d string) string {
	if alg, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return alg + ":" + hex[:12] + "…"
	}
	return d
}
