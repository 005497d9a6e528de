package remote

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/gantryhq/gantry/internal/egress"
	"github.com/gantryhq/gantry/internal/errdefs"
)

// Sentinels. Each matches its errdefs category with errors.Is.
var (
	// ErrInvalid means an argument is malformed.
	ErrInvalid = errdefs.New("invalid argument", errdefs.ErrInvalid)
	// ErrSourceUnknown means the registry does not have the manifest or
	// blob asked for.
	ErrSourceUnknown = errdefs.New("not found in the source registry", errdefs.ErrNotFound)
	// ErrUpstreamAuth means the registry refused the credentials, or asked
	// for some when none were given (the caller may not read the source).
	ErrUpstreamAuth = errdefs.New("the source registry refused access", errdefs.ErrDenied)
	// ErrRateLimited means the registry throttles us and retrying within
	// the policy's patience did not help.
	ErrRateLimited = errdefs.New("the source registry rate-limits requests", errdefs.ErrTooManyRequests)
	// ErrUnavailable means the registry cannot be reached, keeps failing,
	// or its certificate is not trusted.
	ErrUnavailable = errdefs.New("the source registry is unavailable", errdefs.ErrUnavailable)
	// ErrUntrusted means the registry's certificate is not trusted: signed
	// by a CA the server was not given, or for another name.
	ErrUntrusted = errdefs.New("the source registry is not trusted", errdefs.ErrUnavailable)
	// ErrUpstream means the registry answered something unusable: a
	// manifest that does not match its digest, an unsupported format.
	ErrUpstream = errdefs.New("bad answer from the source registry", errdefs.ErrUnavailable)
	// ErrRefused means the egress policy refuses the registry's address:
	// the control API, a link-local or metadata address, a host the
	// admin's lists exclude, or this machine for a caller without that
	// reach. The error also matches egress.ErrRefused and carries the
	// *egress.RefusedError.
	ErrRefused = errdefs.New("the source's address is refused by the server's upstream policy", errdefs.ErrDenied)
)

// refused marks an error carrying an *egress.RefusedError with ErrRefused,
// keeping its message; other errors are returned as they are.
func refused(err error) error {
	var re *egress.RefusedError
	if !errors.As(err, &re) {
		return err
	}
	return fmt.Errorf("%w%.0w", re, ErrRefused)
}

// UpstreamError is an unexpected HTTP answer of a registry. It matches
// ErrSourceUnknown (404), ErrUpstreamAuth (401, 403), ErrRateLimited (429)
// or ErrUnavailable (anything else).
type UpstreamError struct {
	Host   string
	Method string
	Path   string
	Status int
	// Code and Message come from the OCI error body, when there is one.
	Code    string
	Message string
	// RetryAfter is the delay the registry asked for (429, 503), if any.
	RetryAfter time.Duration
}

func (e *UpstreamError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s%s: %d %s", e.Method, e.Host, e.Path, e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		b.WriteString(": " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter.Round(time.Second))
	}
	return b.String()
}

// Unwrap returns the sentinel of the status.
func (e *UpstreamError) Unwrap() error {
	switch e.Status {
	case http.StatusNotFound:
		return ErrSourceUnknown
	case http.StatusUnauthorized, http.StatusForbidden:
		return ErrUpstreamAuth
	case http.StatusTooManyRequests:
		return ErrRateLimited
	default:
		return ErrUnavailable
	}
}

// upstreamError reads an error response into an *UpstreamError.
func upstreamError(resp *http.Response, host string) error {
	e := &UpstreamError{Host: host, Method: resp.Request.Method, Path: resp.Request.URL.Path, Status: resp.StatusCode}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	if resp.Request.Method != http.MethodHead {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var body struct {
			Errors []struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"errors"`
		}
		if json.Unmarshal(b, &body) == nil && len(body.Errors) > 0 {
			e.Code, e.Message = body.Errors[0].Code, body.Errors[0].Message
		}
	}
	return e
}

// handshakeError translates an error of go-containerregistry's handshake
// (the /v2/ ping, the token exchange) into this package's vocabulary.
func handshakeError(err error, host string) error {
	var te *transport.Error
	if errors.As(err, &te) {
		e := &UpstreamError{Host: host, Status: te.StatusCode, Method: http.MethodGet}
		if te.Request != nil {
			e.Method, e.Path = te.Request.Method, te.Request.URL.Path
			if te.Request.URL.Host != host {
				e.Host = te.Request.URL.Host // the token service
			}
		}
		if len(te.Errors) > 0 {
			e.Code, e.Message = string(te.Errors[0].Code), te.Errors[0].Message
		}
		return e
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// Our transport's own errors name the request once already.
		err = ue.Err
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRateLimited) || errors.Is(err, ErrRefused) || errors.Is(err, ErrUpstream) || errors.Is(err, ErrUntrusted) {
		return err
	}
	return fmt.Errorf("%s: %w: %v", host, ErrUnavailable, err)
}

// drain discards the rest of a body (so the connection is reused) and
// closes it.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 256<<10))
	resp.Body.Close()
}

// redact drops query strings (presigned URLs carry credentials) and user
// information from URLs shown in errors.
func redact(u *url.URL) string {
	c := *u
	c.RawQuery, c.User = "", nil
	return c.String()
}
