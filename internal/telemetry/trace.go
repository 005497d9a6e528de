package telemetry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// TraceOption configures NewTracerProvider.
type TraceOption func(*traceOptions)

type traceOptions struct {
	version  string
	endpoint string
}

// WithServiceVersion sets the service.version resource attribute.
func WithServiceVersion(v string) TraceOption { return func(o *traceOptions) { o.version = v } }

// WithEndpointURL sends the spans to this OTLP/HTTP traces URL
// ("http://127.0.0.1:4318/v1/traces") instead of the one the OTEL_* env
// names (tests).
func WithEndpointURL(u string) TraceOption { return func(o *traceOptions) { o.endpoint = u } }

// NewTracerProvider returns a tracer provider that batches spans to an
// OTLP/HTTP collector, with service.name "gantry". The caller decides
// whether to trace at all (cmd: when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set); the exporter and the SDK then
// read the standard OTEL_* variables themselves (endpoint, headers,
// timeout, compression, TLS certificates, OTEL_RESOURCE_ATTRIBUTES,
// OTEL_TRACES_SAMPLER) — the one place gantry lets a library read the
// environment, so that the standard variables mean what they mean
// everywhere. Shutdown flushes the spans still buffered.
func NewTracerProvider(ctx context.Context, opts ...TraceOption) (*sdktrace.TracerProvider, error) {
	var o traceOptions
	for _, opt := range opts {
		opt(&o)
	}
	var eopts []otlptracehttp.Option
	if o.endpoint != "" {
		eopts = append(eopts, otlptracehttp.WithEndpointURL(o.endpoint))
	}
	exp, err := otlptracehttp.New(ctx, eopts...)
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", "gantry")}
	if o.version != "" {
		attrs = append(attrs, attribute.String("service.version", o.version))
	}
	// Detectors apply in order, later ones winning: OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES override gantry's defaults.
	res, err := resource.New(ctx, resource.WithAttributes(attrs...), resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}
