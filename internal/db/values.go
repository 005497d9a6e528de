package db

import (
	"errors"
	"time"

	"modernc.org/sqlite"
)

// TimeLayout is how every table stores times: RFC 3339 in UTC with a fixed
// nine-digit fraction, so stored times sort and compare correctly as text.
const TimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// FormatTime formats t for storage.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// FormatTimeOrEmpty is FormatTime, but "" for the zero time, for columns
// where "" means "not yet".
func FormatTimeOrEmpty(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return FormatTime(t)
}

// ParseTime parses a stored time; "" (or anything unparsable) is the zero
// time.
func ParseTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// SQLite extended result codes (sqlite3.h).
const (
	sqliteConstraintForeignKey = 787
	sqliteConstraintPrimaryKey = 1555
	sqliteConstraintUnique     = 2067
)

func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

// IsUniqueViolation reports whether err is a UNIQUE or PRIMARY KEY
// constraint failure.
func IsUniqueViolation(err error) bool {
	c := sqliteCode(err)
	return c == sqliteConstraintUnique || c == sqliteConstraintPrimaryKey
}

// IsForeignKeyViolation reports whether err is a FOREIGN KEY constraint
// failure.
func IsForeignKeyViolation(err error) bool { return sqliteCode(err) == sqliteConstraintForeignKey }
