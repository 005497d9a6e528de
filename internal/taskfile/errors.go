package taskfile

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/gantryhq/gantry/internal/errdefs"
)

// Sentinel errors. Errors returned by this package wrap exactly one of them.
var (
	// ErrInvalid marks a task file that cannot run: YAML syntax, template syntax or
	// execution, or validation. The error is an *Error listing every problem found.
	ErrInvalid = errdefs.New("invalid task file", errdefs.ErrInvalid)
	// ErrValues marks a malformed values file or --set entry.
	ErrValues = errors.New("invalid values")
	// ErrSecret marks a secret that could not be resolved.
	ErrSecret = errors.New("resolving secret")
	// ErrAliasSource marks an alias src that could not be read.
	ErrAliasSource = errors.New("reading alias source")
)

// Pos is a 1-based position in the task file; zero fields mean unknown.
type Pos struct {
	Line   int
	Column int
}

// Problem is one thing wrong with a task file, located by file, line, column and field.
type Problem struct {
	// File is the name of the task file as shown to users.
	File string
	Pos
	// Field is the path of the offending field, e.g. "steps[2].when[0]", or "".
	Field string
	// Message says what is wrong and, where possible, how to fix it.
	Message string
}

// String formats the problem as "file:line:col: field: message".
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteString(":" + strconv.Itoa(p.Line))
		if p.Column > 0 {
			b.WriteString(":" + strconv.Itoa(p.Column))
		}
	}
	b.WriteString(": ")
	if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Error is a rejected task file: every problem found, in file order. It wraps ErrInvalid.
type Error struct {
	File     string
	Problems []Problem
}

// Error returns the single problem, or a count followed by one problem per line.
func (e *Error) Error() string {
	switch len(e.Problems) {
	case 0:
		return e.File + ": " + ErrInvalid.Error()
	case 1:
		return e.Problems[0].String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d problems:", e.File, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  " + p.String())
	}
	return b.String()
}

// Unwrap returns ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// problems collects Problems for one file.
type problems struct {
	file string
	list []Problem
}

func (ps *problems) add(pos Pos, field, format string, args ...any) {
	ps.list = append(ps.list, Problem{File: ps.file, Pos: pos, Field: field, Message: fmt.Sprintf(format, args...)})
}

// err returns nil or an *Error with the problems sorted by position.
func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	list := append([]Problem(nil), ps.list...)
	sort.SliceStable(list, func(i, j int) bool {
		if list[i].Line != list[j].Line {
			return list[i].Line < list[j].Line
		}
		return list[i].Column < list[j].Column
	})
	return &Error{File: ps.file, Problems: list}
}

// NewError returns an *Error for problems found outside this package about a task file,
// e.g. by the planner. It returns nil when there are no problems.
func NewError(file string, list []Problem) error {
	ps := problems{file: file, list: list}
	return ps.err()
}
