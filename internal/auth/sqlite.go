package auth

import "github.com/gantryhq/gantry/internal/db"

// Storage helpers shared by every domain package.
var (
	isUniqueViolation     = db.IsUniqueViolation
	isForeignKeyViolation = db.IsForeignKeyViolation
	timeText              = db.FormatTime
	parseTime             = db.ParseTime
)
