package registry

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"syscall"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/errdefs"
	"github.com/gantryhq/gantry/internal/store"
)

// ErrTooManyRequests may be returned (wrapped) by a Fallback or PushGuard to
// answer 429 TOOMANYREQUESTS.
var ErrTooManyRequests = errdefs.ErrTooManyRequests

// ErrUnavailable may be returned (wrapped) by a Fallback when the upstream
// it needs cannot be reached and nothing is cached: 503 UNAVAILABLE.
var ErrUnavailable = errdefs.ErrUnavailable

// Handler-level errors.
var (
	errUnsupported      = errors.New("operation unsupported")
	errUploadInvalid    = errors.New("blob upload invalid")
	errPaginationNumber = errors.New("invalid number of results requested")
)

// errorTable maps errors to HTTP statuses and OCI error codes; the first
// entry the error matches (errors.Is) wins, so specific errors come first.
// With categoryCodes, this is the only place errors become statuses.
var errorTable = []struct {
	err    error
	status int
	code   string
}{
	// The disk is full: the server's fault, but one the operator must see
	// (logged at error), and the client may retry once space returns.
	{syscall.ENOSPC, http.StatusInsufficientStorage, "UNKNOWN"},
	{store.ErrManifestTooLarge, http.StatusRequestEntityTooLarge, "MANIFEST_INVALID"},
	{store.ErrManifestBlobUnknown, http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN"},
	{store.ErrManifestInvalid, http.StatusBadRequest, "MANIFEST_INVALID"},
	// A manifest's body errors match ErrManifestInvalid above first; these
	// are then the uploads'.
	{errBodyIncomplete, http.StatusBadRequest, "BLOB_UPLOAD_INVALID"},
	{errBodyStalled, http.StatusRequestTimeout, "BLOB_UPLOAD_INVALID"},
	{store.ErrDigestInvalid, http.StatusBadRequest, "DIGEST_INVALID"},
	{store.ErrSizeInvalid, http.StatusBadRequest, "SIZE_INVALID"},
	{store.ErrNameInvalid, http.StatusBadRequest, "NAME_INVALID"},
	{store.ErrRangeInvalid, http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID"},
	{errUploadInvalid, http.StatusBadRequest, "BLOB_UPLOAD_INVALID"},
	{store.ErrUploadUnknown, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN"},
	{store.ErrBlobUnknown, http.StatusNotFound, "BLOB_UNKNOWN"},
	{store.ErrManifestUnknown, http.StatusNotFound, "MANIFEST_UNKNOWN"},
	{store.ErrTagUnknown, http.StatusNotFound, "MANIFEST_UNKNOWN"},
	{store.ErrRepositoryUnknown, http.StatusNotFound, "NAME_UNKNOWN"},
	{store.ErrRegistryUnknown, http.StatusNotFound, "NAME_UNKNOWN"},
	{errNoRoute, http.StatusNotFound, "NOT_FOUND"},
	{errUnsupported, http.StatusMethodNotAllowed, "UNSUPPORTED"},
	{errPaginationNumber, http.StatusBadRequest, "PAGINATION_NUMBER_INVALID"},
}

// categoryCodes answers an error of a category (internal/errdefs) that no
// OCI-specific entry above names: the OCI API's translation of the one
// error vocabulary.
var categoryCodes = map[error]struct {
	status int
	code   string
}{
	errdefs.ErrInvalid:         {http.StatusBadRequest, "UNSUPPORTED"},
	errdefs.ErrUnauthenticated: {http.StatusUnauthorized, "UNAUTHORIZED"},
	errdefs.ErrDenied:          {http.StatusForbidden, "DENIED"},
	errdefs.ErrNotFound:        {http.StatusNotFound, "NAME_UNKNOWN"},
	errdefs.ErrConflict:        {http.StatusConflict, "DENIED"},
	errdefs.ErrTooLarge:        {http.StatusRequestEntityTooLarge, "SIZE_INVALID"},
	errdefs.ErrTooManyRequests: {http.StatusTooManyRequests, "TOOMANYREQUESTS"},
	errdefs.ErrUnavailable:     {http.StatusServiceUnavailable, "UNAVAILABLE"},
}

// accessFirst are the categories that win over the OCI-specific codes, in
// this order: whether the caller may ask, and whether the answer can be had,
// before what the error is about (a throttled login is 429, not 401).
var accessFirst = []error{errdefs.ErrTooManyRequests, errdefs.ErrUnauthenticated, errdefs.ErrDenied, errdefs.ErrUnavailable}

// statusClientClosed is the status logged for a request whose client went
// away before the answer (nginx's 499).
const statusClientClosed = 499

// classify returns the status and code for err (500 for anything unknown).
func classify(err error) (int, string) {
	for _, cat := range accessFirst {
		if errors.Is(err, cat) {
			c := categoryCodes[cat]
			return c.status, c.code
		}
	}
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			if errors.Is(err, errBodyStalled) {
				// The operation's code, the timeout's status.
				return http.StatusRequestTimeout, e.code
			}
			return e.status, e.code
		}
	}
	if c, ok := categoryCodes[errdefs.Category(err)]; ok {
		return c.status, c.code
	}
	return http.StatusInternalServerError, "UNKNOWN"
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// writeError answers err as an OCI error body. Messages of unexpected
// (5xx) errors stay in the log: they may name files on the server.
func (h *handler) writeError(w http.ResponseWriter, r *http.Request, err error, challenge func() string) {
	status, code := classify(err)
	msg := err.Error()
	if r.Context().Err() != nil && errors.Is(err, r.Context().Err()) {
		// The client went away (or timed out) while the request ran: no one
		// reads the answer, and it is not the server's failure. 499, as
		// proxies log it.
		status, code = statusClientClosed, "UNKNOWN"
	}
	if status >= 500 {
		h.log.ErrorContext(r.Context(), "request failed", "registry", h.name, "method", r.Method, "path", r.URL.Path, "err", err)
		msg = http.StatusText(status)
	} else {
		h.log.DebugContext(r.Context(), "request refused", "registry", h.name, "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	var throttled *auth.ThrottledError
	if errors.As(err, &throttled) {
		w.Header().Set("Retry-After", strconv.Itoa(int(throttled.RetryAfter.Seconds()+0.999)))
	}
	if status == http.StatusUnauthorized && challenge != nil {
		if c := challenge(); c != "" {
			w.Header().Set("WWW-Authenticate", c)
		}
	}
	body, _ := json.Marshal(errorBody{Errors: []errorEntry{{Code: code, Message: msg}}})
	hd := w.Header()
	hd.Del("Docker-Content-Digest")
	hd.Set("Content-Type", "application/json")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
