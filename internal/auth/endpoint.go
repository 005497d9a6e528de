package auth

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strings"
)

// Endpoint is how clients reach one registry through one listener, from
// the server's configuration: never from a request's Host header or its
// TLS state, which a client (or a proxy in front) chooses.
type Endpoint struct {
	// URL is the registry's public base URL on this listener
	// (scheme://host[:port]); challenges name URL + TokenPath as the realm.
	URL string
	// Service is the service name challenges name: the login server the
	// listener serves the registry as.
	Service string
	// Services are every login server of the registry (its hostname and
	// its own port, when it has both); the token endpoint issues tokens
	// only for these. Service is always one of them.
	Services []string
}

type endpointKey struct{}

// WithEndpoint serves h with ep as the endpoint of the registry on this
// listener: Challenge and TokenHandler read it from the request's context.
func WithEndpoint(h http.Handler, ep Endpoint) http.Handler {
	if !slices.Contains(ep.Services, ep.Service) {
		ep.Services = append(slices.Clone(ep.Services), ep.Service)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), endpointKey{}, ep)))
	})
}

// endpointOf is the endpoint WithEndpoint set, else the one of a listener
// nobody configured (tests serving a handler directly): the address the
// connection reached, which the client cannot choose either, and no check of
// the service a token is asked for.
func endpointOf(r *http.Request) Endpoint {
	if ep, ok := r.Context().Value(endpointKey{}).(Endpoint); ok {
		return ep
	}
	host := "localhost"
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		host = a.String()
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return Endpoint{URL: scheme + "://" + host, Service: host}
}

// serves reports whether service names this endpoint's registry (host names
// compare case-insensitively); an unconfigured endpoint serves any.
func (ep Endpoint) serves(service string) bool {
	return len(ep.Services) == 0 || slices.ContainsFunc(ep.Services, func(s string) bool { return strings.EqualFold(s, service) })
}
