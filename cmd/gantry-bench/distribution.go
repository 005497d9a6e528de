package main

import (
	"context"
	"os"

	"github.com/gantryhq/gantry/internal/peer"
)

// distribution is the CNCF Distribution (Debian's docker-registry) started
// for the comparison, with its storage in a temporary directory.
type distribution struct {
	*peer.Distribution
	dir string
}

func startDistribution(ctx context.Context, bin string) (*distribution, error) {
	dir, err := os.MkdirTemp("", "gantry-bench-distribution-")
	if err != nil {
		return nil, err
	}
	p, err := peer.Start(ctx, peer.Options{Bin: bin, Dir: dir, Output: os.Stderr})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &distribution{Distribution: p, dir: dir}, nil
}

// stop terminates the peer by its PID and removes its directory.
func (d *distribution) stop() {
	d.Stop()
	os.RemoveAll(d.dir)
}
