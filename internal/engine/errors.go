package engine

import "errors"

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
