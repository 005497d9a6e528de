package auth

import (
	"errors"
	"time"

	"modernc.org/sqlite"
)

// SQLite extended result codes (see sqlite3.h).
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

func isUniqueViolation(err error) bool {
	c := sqliteCode(err)
	return c == sqliteConstraintUnique || c == sqliteConstraintPrimaryKey
}

func isForeignKeyViolation(err error) bool { return sqliteCode(err) == sqliteConstraintForeignKey }

// timeLayout is RFC 3339 with a fixed nine-digit fraction, so stored times
// compare correctly as text.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// timeText formats a time the way the database stores times: RFC 3339 UTC
// with nanoseconds.
func timeText(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}
