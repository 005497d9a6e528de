package httpapi

import (
	"errors"
	"fmt"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/git"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/task"
	"github.com/gantryhq/gantry/internal/vault"
)

// errInvalid marks request errors found by the handlers themselves.
var errInvalid = errors.New("invalid request")

// fieldError is an invalid request naming the field at fault.
type fieldError struct {
	field string
	msg   string
}

func (e *fieldError) Error() string { return e.field + ": " + e.msg }
func (e *fieldError) Unwrap() error { return errInvalid }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errInvalid)
}

func invalidField(field, format string, args ...any) error {
	return &fieldError{field: field, msg: fmt.Sprintf(format, args...)}
}

// codes is the one table from domain errors to API codes, checked in order.
var codes = []struct {
	err  error
	code api.Code
}{
	{auth.ErrTooManyAttempts, api.CodeTooManyRequests},
	{auth.ErrUnauthenticated, api.CodeUnauthenticated},
	{auth.ErrDenied, api.CodeDenied},
	{errNoRoute, api.CodeNotFound},
	{db.ErrNotFound, api.CodeNotFound},
	{db.ErrConflict, api.CodeConflict},
	{errInvalid, api.CodeInvalid},
	{auth.ErrInvalid, api.CodeInvalid},
	{vault.ErrInvalid, api.CodeInvalid},
	{task.ErrInvalid, api.CodeInvalid},
	{git.ErrInvalid, api.CodeInvalid},
	{store.ErrNameInvalid, api.CodeInvalid},
	{store.ErrDigestInvalid, api.CodeInvalid},
	{store.ErrSizeInvalid, api.CodeInvalid},
	{store.ErrManifestInvalid, api.CodeInvalid},
	{store.ErrManifestBlobUnknown, api.CodeInvalid},
	{store.ErrManifestTooLarge, api.CodeInvalid},
}

// toAPIError translates err for the wire. Internal errors get a generic
// message: their text may describe server internals.
func toAPIError(err error) *api.Error {
	var ae *api.Error
	if errors.As(err, &ae) && ae.Message != "" {
		return ae
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			e := &api.Error{Code: c.code, Message: err.Error()}
			var fe *fieldError
			if errors.As(err, &fe) {
				e.Field = fe.field
			}
			return e
		}
	}
	return &api.Error{Code: api.CodeInternal, Message: "internal error; see the server log"}
}
