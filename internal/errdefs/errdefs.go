// Package errdefs is gantry's one error vocabulary: the categories every
// domain error falls into. Domain packages declare their own sentinels
// with New (a message of their own that matches a category through
// errors.Is); each wire translates the categories exactly once — the
// control API in internal/httpapi (to api codes, which the client turns
// back into the same categories), the OCI API in internal/registry.
package errdefs

import (
	"errors"
	"io/fs"
)

// The categories.
var (
	// ErrInvalid: the request or an argument is malformed (400).
	ErrInvalid = errors.New("invalid argument")
	// ErrUnauthenticated: no or bad credentials (401).
	ErrUnauthenticated = errors.New("authentication required")
	// ErrDenied: authenticated, but not allowed (403).
	ErrDenied = errors.New("access denied")
	// ErrNotFound: the named object does not exist (404).
	ErrNotFound = errors.New("not found")
	// ErrConflict: it exists already, or its state forbids the change (409).
	ErrConflict = errors.New("conflict")
	// ErrTooLarge: the content exceeds a limit (413).
	ErrTooLarge = errors.New("too large")
	// ErrTooManyRequests: rate limited; retry later (429).
	ErrTooManyRequests = errors.New("too many requests")
	// ErrUnavailable: a dependency (engine, upstream registry, git host)
	// cannot be reached or keeps failing (503).
	ErrUnavailable = errors.New("unavailable")
)

// Categories lists every category, most specific first: an error that
// matches several (a too-large manifest is also invalid) takes the first.
var Categories = []error{
	ErrTooManyRequests, ErrUnavailable, ErrUnauthenticated, ErrDenied, ErrNotFound, ErrConflict,
	ErrTooLarge, ErrInvalid,
}

// Category returns the category err belongs to, or nil for an error of
// none (an internal failure).
func Category(err error) error {
	for _, c := range Categories {
		if errors.Is(err, c) {
			return c
		}
	}
	return nil
}

// New returns a domain's own sentinel: its message is msg, and it matches
// its categories (and whatever they match) with errors.Is, without adding
// their words to messages ("task "x": not found", never "not found: not
// found"). Each call returns a distinct sentinel.
func New(msg string, categories ...error) error { return &sentinel{msg: msg, categories: categories} }

type sentinel struct {
	msg        string
	categories []error
}

func (e *sentinel) Error() string   { return e.msg }
func (e *sentinel) Unwrap() []error { return e.categories }

// Pathless returns the cause of a path error without its path, for
// messages that must not show where the server keeps its files; any
// other error is returned as it is.
func Pathless(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
