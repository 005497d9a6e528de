package api

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Code is a machine-readable error code of the control API.
type Code string

// Error codes. Each has exactly one HTTP status (see Status).
const (
	CodeInvalid         Code = "INVALID"           // the request is malformed or a field is wrong
	CodeUnauthenticated Code = "UNAUTHENTICATED"   // no or bad credentials
	CodeDenied          Code = "DENIED"            // authenticated, not allowed
	CodeNotFound        Code = "NOT_FOUND"         // the named object does not exist
	CodeConflict        Code = "CONFLICT"          // it exists already, or its state forbids the change
	CodeTooLarge        Code = "TOO_LARGE"         // the content exceeds a limit
	CodeTooManyRequests Code = "TOO_MANY_REQUESTS" // rate limited (e.g. repeated failed logins)
	CodeUnavailable     Code = "UNAVAILABLE"       // a dependency (engine, upstream) is unavailable
	CodeInternal        Code = "INTERNAL"          // a server bug or an unexpected failure
)

var statuses = map[Code]int{
	CodeInvalid:         http.StatusBadRequest,
	CodeUnauthenticated: http.StatusUnauthorized,
	CodeDenied:          http.StatusForbidden,
	CodeNotFound:        http.StatusNotFound,
	CodeConflict:        http.StatusConflict,
	CodeTooLarge:        http.StatusRequestEntityTooLarge,
	CodeTooManyRequests: http.StatusTooManyRequests,
	CodeUnavailable:     http.StatusServiceUnavailable,
	CodeInternal:        http.StatusInternalServerError,
}

// Status returns the HTTP status of code.
func (c Code) Status() int {
	if s, ok := statuses[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// CodeForStatus is the inverse of Status, for responses that carry no body.
func CodeForStatus(status int) Code {
	for c, s := range statuses {
		if s == status {
			return c
		}
	}
	return CodeInternal
}

// Error is the JSON error body of every failed control API request:
// {"error": {"code": "NOT_FOUND", "message": "..."}}.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	// Field names the request field at fault, when there is one.
	Field string `json:"field,omitempty"`
}

func (e *Error) Error() string {
	if e.Message == "" {
		return strings.ToLower(strings.ReplaceAll(string(e.Code), "_", " "))
	}
	return e.Message
}

// Is lets errors.Is(err, api.ErrNotFound) match any *Error with that code:
// the sentinels below carry a code and no message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// Sentinels for matching with errors.Is against errors decoded from the wire.
var (
	ErrInvalid         = &Error{Code: CodeInvalid}
	ErrUnauthenticated = &Error{Code: CodeUnauthenticated}
	ErrDenied          = &Error{Code: CodeDenied}
	ErrNotFound        = &Error{Code: CodeNotFound}
	ErrConflict        = &Error{Code: CodeConflict}
	ErrTooLarge        = &Error{Code: CodeTooLarge}
	ErrTooManyRequests = &Error{Code: CodeTooManyRequests}
	ErrUnavailable     = &Error{Code: CodeUnavailable}
	ErrInternal        = &Error{Code: CodeInternal}
)

// ErrorBody is the envelope of an error response.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// WriteError writes e as a JSON error response.
func WriteError(w http.ResponseWriter, e *Error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Code.Status())
	_ = json.NewEncoder(w).Encode(ErrorBody{Error: e})
}
