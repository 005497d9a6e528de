package sbom

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	scalibrlog "github.com/google/osv-scalibr/log"
)

var routeOnce sync.Once

// routeScalibrLog sends scalibr's log, which is process-wide and would
// otherwise print to stderr, to l at debug level: its messages ("os-release
// not set" for every layer's OS database, extractors declining a file) are
// expected here, and what matters reaches the inventory's notes. The first
// Extractor's logger takes it.
func routeScalibrLog(l *slog.Logger) {
	routeOnce.Do(func() { scalibrlog.SetLogger(scalibrLogger{l.With("lib", "scalibr")}) })
}

// scalibrLogger adapts a *slog.Logger to scalibr's log.Logger.
type scalibrLogger struct{ l *slog.Logger }

func (s scalibrLogger) logf(format string, args ...any) {
	if s.l.Enabled(context.Background(), slog.LevelDebug) {
		s.l.Debug(fmt.Sprintf(format, args...))
	}
}

func (s scalibrLogger) log(args ...any) {
	if s.l.Enabled(context.Background(), slog.LevelDebug) {
		s.l.Debug(fmt.Sprint(args...))
	}
}

func (s scalibrLogger) Errorf(format string, args ...any) { s.logf(format, args...) }
func (s scalibrLogger) Error(args ...any)                 { s.log(args...) }
func (s scalibrLogger) Warnf(format string, args ...any)  { s.logf(format, args...) }
func (s scalibrLogger) Warn(args ...any)                  { s.log(args...) }
func (s scalibrLogger) Infof(format string, args ...any)  { s.logf(format, args...) }
func (s scalibrLogger) Info(args ...any)                  { s.log(args...) }
func (s scalibrLogger) Debugf(format string, args ...any) { s.logf(format, args...) }
func (s scalibrLogger) Debug(args ...any)                 { s.log(args...) }
