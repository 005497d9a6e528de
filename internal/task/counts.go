package task

import (
	"context"
	"fmt"
)

// RunCount is the number of runs of one status and trigger.
type RunCount struct {
	Status  string
	Trigger string
	N       int
}

// RunCounts counts the run records by status and trigger, across
// registries (the metrics read it at each scrape; runs are kept until
// their registry is deleted).
func (s *Service) RunCounts(ctx context.Context) ([]RunCount, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT status, trigger, COUNT(*) FROM runs GROUP BY status, trigger`)
	if err != nil {
		return nil, fmt.Errorf("counting runs: %w", err)
	}
	defer rows.Close()
	var out []RunCount
	for rows.Next() {
		var c RunCount
		if err := rows.Scan(&c.Status, &c.Trigger, &c.N); err != nil {
			return nil, fmt.Errorf("counting runs: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("counting runs: %w", err)
	}
	return out, nil
}
