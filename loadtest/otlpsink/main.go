// Command otlpsink is an OTLP/HTTP trace receiver for benchmarks: it
// accepts what an exporter posts to /v1/traces, counts the spans and drops
// them (internal/otlpsink). GET /spans answers the count; on SIGINT or
// SIGTERM it prints the totals and exits. loadtest/bench-tracing.sh points
// `sagaflow dev` at it with OTEL_EXPORTER_OTLP_ENDPOINT=http://ADDR.
//
//	go run ./loadtest/otlpsink -addr 127.0.0.1:14318
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sagaflow/sagaflow/internal/otlpsink"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:14318", "address to listen on")
	flag.Parse()
	s, err := otlpsink.Start(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Printf("otlpsink: OTLP/HTTP on %s (OTEL_EXPORTER_OTLP_ENDPOINT=%s)\n", s.Addr(), s.Endpoint())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	_ = s.Close()
	fmt.Printf("otlpsink: %d spans in %d export requests (%d rejected)\n", s.Spans(), s.Requests(), s.Rejected())
}
