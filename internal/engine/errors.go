package engine

import (
	"errors"
	"strconv"
)

// Sentinel errors of Execute, matched with errors.Is. Context cancellation
// and deadlines come back wrapping context.Canceled and
// context.DeadlineExceeded.
var (
	// ErrInvalidTask: the task file does not render, parse or validate; no
	// step ran.
	ErrInvalidTask = errors.New("invalid task file")
	// ErrStepFailed: a step failed (its error is in the message, e.g.
	// "failed to run step ID: validate-base-image: exit status 1").
	ErrStepFailed = errors.New("step failed")
	// ErrEngine: the container engine could not be used.
	ErrEngine = errors.New("container engine error")
)

// stepError is a failed step, worded as acb words it: "failed to run step ID:
// <id>: <cause>". It matches ErrStepFailed, and ErrEngine when the engine
// itself failed the step. The cause is not unwrapped: a step that hit its
// own timeout fails the run, it does not time it out.
type stepError struct {
	id     string
	cause  error
	engine bool
}

func (e *stepError) Error() string {
	return "failed to run step ID: " + e.id + ": " + e.cause.Error()
}

func (e *stepError) Unwrap() []error {
	if e.engine {
		return []error{ErrStepFailed, ErrEngine}
	}
	return []error{ErrStepFailed}
}

// exitError is a container that exited non-zero, worded like os/exec's
// ExitError as acb reports it: "exit status 1".
type exitError struct{ code int }

func (e *exitError) Error() string { return "exit status " + strconv.Itoa(e.code) }
