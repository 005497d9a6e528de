// Package telemetry is what an operator watches a gantry server through:
// Prometheus metrics on a private registry, the HTTP middleware every
// listener (control API and registries) is wrapped in (request metrics, one
// access-log line per request, request IDs, optional OpenTelemetry spans),
// the liveness and readiness handlers, and the OTLP trace exporter.
//
// The package imports no other package of gantry. Domain packages report
// to it through small interfaces they declare themselves (auth's login
// observer, importer's and trigger's metrics hooks), which *Metrics
// implements; values it reads at scrape time (blob store usage, run counts)
// come through interfaces declared here, which the server satisfies from
// the store and the task service.
//
// Secrets never reach the access log: it records the route pattern (never
// the raw path or the query string, which may carry a password or a refresh
// token at the token endpoint), the status, sizes, duration, the caller's
// principal name and the request ID; no header is logged.
package telemetry
