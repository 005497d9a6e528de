package engine

import (
	"errors"
	"fmt"
	"testing"

	"github.com/gantryhq/gantry/internal/docker"
)

// TestRebuildVanished checks that a CLI image build whose cached step
// another client removed mid-build is run again, and that other failures
// and a third vanishing are not retried.
func TestRebuildVanished(t *testing.T) {
	t.Parallel()
	vanished := fmt.Errorf("building: %w", docker.ErrNotFound)
	other := errors.New("no space left on device")
	tests := []struct {
		name    string
		results []error
		calls   int
		wantErr error
	}{
		{name: "first try", results: []error{nil}, calls: 1},
		{name: "vanished once", results: []error{vanished, nil}, calls: 2},
		{name: "other failure", results: []error{other, nil}, calls: 1, wantErr: other},
		{name: "vanished thrice", results: []error{vanished, vanished, vanished, nil}, calls: 3, wantErr: docker.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			id, err := rebuildVanished(func() (string, error) {
				err := tt.results[calls]
				calls++
				if err != nil {
					return "", err
				}
				return "sha256:1", nil
			})
			if calls != tt.calls {
				t.Errorf("calls = %d, want %d", calls, tt.calls)
			}
			if tt.wantErr == nil && (err != nil || id != "sha256:1") {
				t.Errorf("id, err = %q, %v", id, err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
