package vault

import (
	"errors"
	"fmt"

	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/keyfile"
)

// Storage helpers shared by every domain package.
var (
	isUniqueViolation     = db.IsUniqueViolation
	isForeignKeyViolation = db.IsForeignKeyViolation
	timeText              = db.FormatTime
	parseTime             = db.ParseTime
)

// loadKey reads (or creates) a key file apart from the database.
func loadKey(dir, name string) ([]byte, error) {
	k, err := keyfile.Load(dir, name)
	if errors.Is(err, keyfile.ErrNoDir) {
		return nil, fmt.Errorf("%w: %w", err, ErrInvalid)
	}
	return k, err
}
