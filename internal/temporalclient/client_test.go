package temporalclient

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
)

func TestCompression_names_the_sdk_setting(t *testing.T) {
	for name, want := range map[string]client.GrpcCompression{
		"":     &client.GrpcCompressionGzip{}, // the SDK's default
		"gzip": &client.GrpcCompressionGzip{},
		"none": &client.GrpcCompressionNone{},
	} {
		got, err := Compression(name)
		if err != nil {
			t.Fatalf("Compression(%q): %v", name, err)
		}
		if fmt.Sprintf("%T", got) != fmt.Sprintf("%T", want) {
			t.Errorf("Compression(%q) = %T, want %T", name, got, want)
		}
	}
	for _, name := range []string{"zstd", "GZIP", "none ", "\x00"} {
		if _, err := Compression(name); err == nil || !strings.Contains(err.Error(), "TEMPORAL_GRPC_COMPRESSION") {
			t.Errorf("Compression(%q) = %v, want an error naming TEMPORAL_GRPC_COMPRESSION", name, err)
		}
	}
}

// An unknown compression is refused before Dial tries any server (it would
// retry the unreachable address until ctx ends, and fail with a dial error).
func TestDial_refuses_an_unknown_compression_before_dialling(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Dial(ctx, Options{HostPort: "127.0.0.1:1", Namespace: "x", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Compression: "brotli"})
	if err == nil || !strings.Contains(err.Error(), "TEMPORAL_GRPC_COMPRESSION") {
		t.Fatalf("Dial = %v, want the compression refused", err)
	}
}
