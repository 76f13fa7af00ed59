// Package otlpsink is an OTLP/HTTP trace receiver for benchmarks: it takes
// what an OTLP exporter posts to /v1/traces, counts the spans and throws
// them away. It costs the process that exports as little as a receiver can
// (no storage, no full decoding: the spans are counted by walking the
// protobuf wire format), so that a benchmark with tracing exported measures
// the exporting side, not a trace backend competing for the same cores.
//
// It speaks OTLP/HTTP with binary protobuf (the default protocol of the
// OpenTelemetry exporters, OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf),
// gzip-compressed or not. GET /spans answers the number of spans received.
package otlpsink

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// Sink counts the spans posted to it. The zero value is a handler that
// can be served by any http.Server; Start serves one on an address.
type Sink struct {
	spans    atomic.Int64
	requests atomic.Int64
	rejected atomic.Int64

	srv *http.Server
	ln  net.Listener
}

// Start serves a Sink on addr ("127.0.0.1:0" picks a free port).
func Start(addr string) (*Sink, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("otlpsink: listen on %s: %w", addr, err)
	}
	s := &Sink{ln: ln}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address the sink listens on (host:port).
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// Endpoint is the URL to set OTEL_EXPORTER_OTLP_ENDPOINT to.
func (s *Sink) Endpoint() string { return "http://" + s.Addr() }

// Spans is the number of spans received so far.
func (s *Sink) Spans() int64 { return s.spans.Load() }

// Requests is the number of export requests accepted so far.
func (s *Sink) Requests() int64 { return s.requests.Load() }

// Rejected is the number of export requests that could not be read.
func (s *Sink) Rejected() int64 { return s.rejected.Load() }

// Close stops a sink that Start started.
func (s *Sink) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("otlpsink: stop: %w", err)
	}
	return nil
}

// maxBody bounds one export request (the exporters send 512 spans at most
// per request by default, far below this).
const maxBody = 64 << 20

// ServeHTTP takes POST /v1/traces (counted) and GET /spans (the count).
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/spans" && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, strconv.FormatInt(s.spans.Load(), 10)+"\n")
	case r.URL.Path == "/v1/traces" && r.Method == http.MethodPost:
		n, err := readSpans(r)
		if err != nil {
			s.rejected.Add(1)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.spans.Add(int64(n))
		s.requests.Add(1)
		// An empty ExportTraceServiceResponse: full success.
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	default:
		http.NotFound(w, r)
	}
}

func readSpans(r *http.Request) (int, error) {
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		return 0, fmt.Errorf("otlpsink: content type %q: only application/x-protobuf is read", ct)
	}
	var body io.Reader = http.MaxBytesReader(nil, r.Body, maxBody)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			return 0, fmt.Errorf("otlpsink: gzip body: %w", err)
		}
		defer func() { _ = zr.Close() }()
		body = io.LimitReader(zr, maxBody)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return 0, fmt.Errorf("otlpsink: read body: %w", err)
	}
	return CountSpans(b)
}

// CountSpans counts the spans of an encoded ExportTraceServiceRequest:
// the spans (field 2) of every scope_spans (field 2) of every
// resource_spans (field 1), without decoding the spans themselves.
func CountSpans(req []byte) (int, error) {
	n := 0
	err := eachField(req, 1, func(rs []byte) error {
		return eachField(rs, 2, func(ss []byte) error {
			return eachField(ss, 2, func([]byte) error { n++; return nil })
		})
	})
	return n, err
}

// eachField calls f with the payload of each length-delimited field num of
// the message b, skipping the other fields.
func eachField(b []byte, num protowire.Number, f func([]byte) error) error {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return errors.New("otlpsink: bad protobuf tag")
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return errors.New("otlpsink: bad protobuf field")
			}
			if err := f(v); err != nil {
				return err
			}
			b = b[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return errors.New("otlpsink: bad protobuf field")
		}
		b = b[l:]
	}
	return nil
}
