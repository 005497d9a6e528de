package httpapi

import (
	"errors"
	"fmt"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/git"
	"github.com/gantryhq/gantry/internal/importer"
	"github.com/gantryhq/gantry/internal/instance"
	"github.com/gantryhq/gantry/internal/registry"
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

// is matches err against target (errors.Is).
func is(target error) func(error) bool { return func(err error) bool { return errors.Is(err, target) } }

// imageRefused: the engine could not use the image it was given (missing,
// refused credentials, malformed), as opposed to an engine outage.
func imageRefused(err error) bool {
	return errors.Is(err, instance.ErrImage) &&
		(errors.Is(err, docker.ErrNotFound) || errors.Is(err, docker.ErrUnauthorized) || errors.Is(err, docker.ErrInvalid))
}

// codes is the one table from domain errors to API codes, checked in order:
// the errors of one domain that must win over the categories they also
// match come first (an import's upstream outage, an instance's image), then
// the categories.
var codes = []struct {
	match func(error) bool
	code  api.Code
	field string
}{
	// Import and cache rules: the upstream's state.
	{is(registry.ErrTooManyRequests), api.CodeTooManyRequests, ""},
	{is(registry.ErrUnavailable), api.CodeUnavailable, ""},
	{is(importer.ErrUpstream), api.CodeUnavailable, ""},
	{is(importer.ErrInvalid), api.CodeInvalid, ""},
	// Container instances: the image and the engine.
	{is(instance.ErrCredentialsRequired), api.CodeDenied, ""},
	{is(instance.ErrInvalid), api.CodeInvalid, ""},
	{is(instance.ErrNotReady), api.CodeInvalid, "image"},
	{imageRefused, api.CodeInvalid, "image"},
	{is(instance.ErrImage), api.CodeUnavailable, ""},
	{is(docker.ErrUnavailable), api.CodeUnavailable, ""},
	{is(docker.ErrUnsupported), api.CodeUnavailable, ""},
	// The categories.
	{is(auth.ErrTooManyAttempts), api.CodeTooManyRequests, ""},
	{is(auth.ErrUnauthenticated), api.CodeUnauthenticated, ""},
	{is(auth.ErrDenied), api.CodeDenied, ""},
	{is(errNoRoute), api.CodeNotFound, ""},
	{is(db.ErrNotFound), api.CodeNotFound, ""},
	{is(db.ErrConflict), api.CodeConflict, ""},
	{is(errInvalid), api.CodeInvalid, ""},
	{is(auth.ErrInvalid), api.CodeInvalid, ""},
	{is(vault.ErrInvalid), api.CodeInvalid, ""},
	{is(task.ErrInvalid), api.CodeInvalid, ""},
	{is(git.ErrInvalid), api.CodeInvalid, ""},
	{is(store.ErrNameInvalid), api.CodeInvalid, ""},
	{is(store.ErrDigestInvalid), api.CodeInvalid, ""},
	{is(store.ErrSizeInvalid), api.CodeInvalid, ""},
	{is(store.ErrManifestInvalid), api.CodeInvalid, ""},
	{is(store.ErrManifestBlobUnknown), api.CodeInvalid, ""},
	{is(store.ErrManifestTooLarge), api.CodeInvalid, ""},
}

// toAPIError translates err for the wire. Internal errors get a generic
// message: their text may describe server internals.
func toAPIError(err error) *api.Error {
	var ae *api.Error
	if errors.As(err, &ae) && ae.Message != "" {
		return ae
	}
	for _, c := range codes {
		if c.match(err) {
			e := &api.Error{Code: c.code, Message: err.Error(), Field: c.field}
			var fe *fieldError
			if errors.As(err, &fe) {
				e.Field = fe.field
			}
			return e
		}
	}
	return &api.Error{Code: api.CodeInternal, Message: "internal error; see the server log"}
}
