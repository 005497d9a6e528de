package scan

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/gantryhq/gantry/internal/vulndb"
)

// ImpactImage is a scanned image an advisory affects.
type ImpactImage struct {
	Registry, Repository, Digest string
	// Packages are the affected packages, "name version".
	Packages []string
}

// Impact returns the advisory (by ID or alias) and the stored images its
// findings affect, as the latest match (scan or rescan) found them.
func (s *Service) Impact(ctx context.Context, id string) (vulndb.Advisory, []ImpactImage, error) {
	adv, err := s.vulns.Advisory(ctx, id)
	if err != nil {
		return vulndb.Advisory{}, nil, err
	}
	rows, err := s.db.L.QueryContext(ctx, `SELECT registry, repository, digest, report FROM scan_reports ORDER BY registry, repository, digest`)
	if err != nil {
		return adv, nil, fmt.Errorf("reading stored reports: %w", err)
	}
	defer rows.Close()
	var out []ImpactImage
	for rows.Next() {
		var im ImpactImage
		var rj []byte
		if err := rows.Scan(&im.Registry, &im.Repository, &im.Digest, &rj); err != nil {
			return adv, nil, err
		}
		var rep struct {
			Platforms       []Platform      `json:"platforms"`
			Vulnerabilities []Vulnerability `json:"vulnerabilities"`
		}
		if err := json.Unmarshal(rj, &rep); err != nil {
			continue
		}
		if len(rep.Platforms) > 0 {
			continue // an index: its platform images are listed themselves
		}
		for _, v := range rep.Vulnerabilities {
			if v.ID == adv.ID {
				im.Packages = append(im.Packages, v.Package.Name+" "+v.Package.Version)
			}
		}
		if len(im.Packages) > 0 {
			out = append(out, im)
		}
	}
	return adv, out, rows.Err()
}
