package engine

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// LogTimeLayout is the prefix of runner lines, as Go's log package writes it
// in acb (the time is UTC).
const LogTimeLayout = "2006/01/02 15:04:05"

// OutputSeparator separates the step ID from a line of the step's output:
// "validate-base-image | Validating Image".
const OutputSeparator = " | "

// maxLine bounds one line of step output; longer lines are split.
const maxLine = 64 << 10

// minMask is the shortest value that is masked; shorter values would garble
// ordinary text and hide little (the task service uses the same rule).
const minMask = 4

// runLog writes a run's log: whole lines, masked, serialized. Runner lines
// carry the acb time prefix; step output lines carry the step ID.
type runLog struct {
	now func() time.Time

	mu    sync.Mutex
	w     io.Writer
	masks []string // longest first
	err   error    // first write error; the log is best effort afterwards
	noted map[string]bool
}

func newRunLog(w io.Writer, now func() time.Time) *runLog {
	if w == nil {
		w = io.Discard
	}
	return &runLog{w: w, now: now, noted: map[string]bool{}}
}

// once logs a note only the first time key is seen in the run.
func (l *runLog) once(key, format string, args ...any) {
	l.mu.Lock()
	seen := l.noted[key]
	l.noted[key] = true
	l.mu.Unlock()
	if !seen {
		l.Printf(format, args...)
	}
}

// mask registers values to hide in every later line, each line of a
// multi-line value too.
func (l *runLog) mask(values ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range values {
		parts := []string{v}
		if strings.Contains(v, "\n") {
			parts = append(parts, strings.Split(v, "\n")...)
		}
		for _, p := range parts {
			p = strings.TrimRight(p, "\r")
			if len(p) >= minMask && !slices.Contains(l.masks, p) {
				l.masks = append(l.masks, p)
			}
		}
	}
	slices.SortStableFunc(l.masks, func(a, b string) int { return len(b) - len(a) })
}

// maskString hides the registered values in s.
func (l *runLog) maskString(s string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.maskLocked(s)
}

func (l *runLog) maskLocked(s string) string {
	for _, m := range l.masks {
		if strings.Contains(s, m) {
			s = strings.ReplaceAll(s, m, "***")
		}
	}
	return s
}

// maskErr returns err with the registered values hidden in its message;
// errors.Is and errors.As still see the original.
func (l *runLog) maskErr(err error) error {
	if err == nil {
		return nil
	}
	msg := l.maskString(err.Error())
	if msg == err.Error() {
		return err
	}
	return &maskedError{msg: msg, err: err}
}

type maskedError struct {
	msg string
	err error
}

func (e *maskedError) Error() string { return e.msg }
func (e *maskedError) Unwrap() error { return e.err }

// Printf writes a runner line: "YYYY/MM/DD HH:MM:SS message".
func (l *runLog) Printf(format string, args ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	stamp := l.now().UTC().Format(LogTimeLayout) + " "
	for _, line := range strings.Split(msg, "\n") {
		l.write(stamp + line)
	}
}

// write masks one line and writes it with a newline.
func (l *runLog) write(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return
	}
	_, l.err = io.WriteString(l.w, l.maskLocked(line)+"\n")
}

// output returns a writer for a step's output: every line it receives is
// cleaned (terminal escapes and carriage-return overwrites removed), masked
// and written as "<prefix> | <line>". Close flushes an unterminated last
// line. Each writer buffers on its own, so a step's stdout and stderr (or
// two parallel steps) never mix within a line.
func (l *runLog) output(prefix string) *lineWriter {
	return &lineWriter{log: l, prefix: prefix + OutputSeparator}
}

// lineWriter splits a byte stream into lines for runLog.
type lineWriter struct {
	log    *runLog
	prefix string

	mu  sync.Mutex
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			for len(w.buf) >= maxLine {
				w.emit(w.buf[:maxLine])
				w.buf = append(w.buf[:0], w.buf[maxLine:]...)
			}
			break
		}
		if len(w.buf) > 0 {
			w.buf = append(w.buf, p[:i]...)
			w.emit(w.buf)
			w.buf = w.buf[:0]
		} else {
			w.emit(p[:i])
		}
		p = p[i+1:]
	}
	return n, nil
}

// Close writes what is left of an unterminated line.
func (w *lineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = w.buf[:0]
	}
	return nil
}

func (w *lineWriter) emit(line []byte) {
	w.log.write(w.prefix + cleanLine(string(line)))
}

// ansiRE matches terminal escape sequences: CSI (colors, cursor moves), OSC
// (titles, links) and two-character escapes.
var ansiRE = regexp.MustCompile(`\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])`)

// cleanLine removes terminal escape sequences and keeps what a terminal would
// show after carriage returns (progress bars): the text after the last \r.
func cleanLine(s string) string {
	s = strings.TrimSuffix(s, "\r")
	if i := strings.LastIndexByte(s, '\r'); i >= 0 {
		s = s[i+1:]
	}
	if strings.IndexByte(s, 0x1b) >= 0 {
		s = ansiRE.ReplaceAllString(s, "")
	}
	return s
}

// tail keeps the last max bytes written to it: the output retryOnErrors
// looks at.
type tail struct {
	max int

	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = slices.Clone(t.buf[over:])
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
