package httpapi

import (
	"errors"
	"fmt"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/errdefs"
	"github.com/gantryhq/gantry/internal/instance"
)

// errInvalid marks request errors found by the handlers themselves.
var errInvalid = errdefs.New("invalid request", errdefs.ErrInvalid)

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

// is matches err against target (errors.Is).
func is(target error) func(error) bool { return func(err error) bool { return errors.Is(err, target) } }

// imageRefused: the engine could not use the image it was given (missing,
// refused credentials, malformed), as opposed to an engine outage.
func imageRefused(err error) bool {
	return errors.Is(err, instance.ErrImage) &&
		(errors.Is(err, docker.ErrNotFound) || errors.Is(err, docker.ErrUnauthorized) || errors.Is(err, docker.ErrInvalid))
}

// instanceCodes are the container instances' errors whose code depends on
// more than their category (an image the engine refused is the request's
// fault; one it could not fetch is an outage). They are checked first.
var instanceCodes = []struct {
	match func(error) bool
	code  api.Code
	field string
}{
	{is(instance.ErrCredentialsRequired), api.CodeDenied, ""},
	{is(instance.ErrNotReady), api.CodeInvalid, "image"},
	{imageRefused, api.CodeInvalid, "image"},
	{is(instance.ErrImage), api.CodeUnavailable, ""},
}

// categoryCodes is the one translation of the error categories
// (internal/errdefs) to the control API's codes; the client turns the
// codes back into the same categories (api.ErrNotFound, ...).
var categoryCodes = map[error]api.Code{
	errdefs.ErrInvalid:         api.CodeInvalid,
	errdefs.ErrUnauthenticated: api.CodeUnauthenticated,
	errdefs.ErrDenied:          api.CodeDenied,
	errdefs.ErrNotFound:        api.CodeNotFound,
	errdefs.ErrConflict:        api.CodeConflict,
	errdefs.ErrTooLarge:        api.CodeTooLarge,
	errdefs.ErrTooManyRequests: api.CodeTooManyRequests,
	errdefs.ErrUnavailable:     api.CodeUnavailable,
}

// toAPIError translates err for the wire. Internal errors get a generic
// message: their text may describe server internals.
func toAPIError(err error) *api.Error {
	var ae *api.Error
	if errors.As(err, &ae) && ae.Message != "" {
		return ae
	}
	e := &api.Error{Message: err.Error()}
	for _, c := range instanceCodes {
		if c.match(err) {
			e.Code, e.Field = c.code, c.field
			break
		}
	}
	if e.Code == "" {
		code, ok := categoryCodes[errdefs.Category(err)]
		if !ok {
			return &api.Error{Code: api.CodeInternal, Message: "internal error; see the server log"}
		}
		e.Code = code
	}
	var fe *fieldError
	if errors.As(err, &fe) {
		e.Field = fe.field
	}
	return e
}
