package errdefs

import (
	"errors"
	"fmt"
	"testing"
)

func TestCategories(t *testing.T) {
	t.Parallel()
	errTaskNotFound := New("not found", ErrNotFound)
	errManifestTooLarge := New("manifest too large", New("manifest invalid", ErrInvalid))
	errQuota := New("quota exceeded", ErrTooLarge)
	for _, c := range []struct {
		err  error
		want error
		text string
	}{
		{fmt.Errorf("task %q: %w", "x", errTaskNotFound), ErrNotFound, `task "x": not found`},
		{fmt.Errorf("pushing: %w", errManifestTooLarge), ErrInvalid, "pushing: manifest too large"},
		{fmt.Errorf("%w%.0w", errQuota, ErrInvalid), ErrTooLarge, "quota exceeded"},
		{errors.New("disk on fire"), nil, "disk on fire"},
	} {
		if got := Category(c.err); got != c.want {
			t.Errorf("Category(%q) = %v, want %v", c.err, got, c.want)
		}
		if c.err.Error() != c.text {
			t.Errorf("message %q, want %q", c.err, c.text)
		}
	}
	if errors.Is(New("x", ErrNotFound), New("x", ErrNotFound)) {
		t.Error("two sentinels with the same message match each other")
	}
}
