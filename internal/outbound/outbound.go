// Package outbound builds the HTTP clients sagaflow uses to call systems it
// does not own (payment gateway, notification providers).
package outbound

import (
	"net/http"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
)

// NewHTTPClient returns a client whose calls, reading the reply included,
// take at most timeout, with a connection pool sized for bursts: sagas call
// out in bursts (a popular meeting opens, a campaign ends), and the default
// of 2 idle connections per host would make most calls dial anew. Redirects
// are followed as net/http does by default.
//
// Every call is traced through the global OpenTelemetry API: a client span
// named "<system> <METHOD>" (such as "payment POST"), a child of the span in
// the request's context, whose W3C trace context goes out in the request's
// traceparent/tracestate headers. With no tracer provider set it costs
// next to nothing. Safe for concurrent use; build one per process and
// system.
func NewHTTPClient(system string, timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 200
	tr.MaxIdleConnsPerHost = 100
	tr.IdleConnTimeout = 90 * time.Second
	traced := otelhttp.NewTransport(tr, otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
		return system + " " + r.Method
	}))
	return &http.Client{Timeout: timeout, Transport: tracedTransport{traced, tr}}
}

// tracedTransport is otelhttp's transport, with the pool's
// CloseIdleConnections (otelhttp's does not pass it on).
type tracedTransport struct {
	*otelhttp.Transport
	pool *http.Transport
}

// CloseIdleConnections closes the pool's idle connections.
func (t tracedTransport) CloseIdleConnections() { t.pool.CloseIdleConnections() }
