package api

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/testenv"
)

// serveWithLimits serves h on a loopback port with short limits and
// returns its address.
func serveWithLimits(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewHTTPServer(h, HTTPLimits{ReadHeaderTimeout: 200 * time.Millisecond, ReadTimeout: 400 * time.Millisecond,
		WriteTimeout: time.Second, IdleTimeout: time.Second})
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// closedByServer reads conn until it ends and fails the test if the server
// has not closed it within limit.
func closedByServer(t *testing.T, conn net.Conn, limit time.Duration) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, bufio.NewReader(conn))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the server kept a slow client's connection open for %s", limit)
	}
}

// trickle connects to addr, sends head and then one byte of drip every
// 50 ms until the test ends or the server hangs up: a slow-loris client.
func trickle(t *testing.T, addr, head, drip string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		if _, err := io.WriteString(conn, head); err != nil {
			return
		}
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := io.WriteString(conn, drip); err != nil {
				return
			}
		}
	}()
	return conn
}

func TestHTTPServer_closes_slow_loris_connections(t *testing.T) {
	testenv.Chaos(t, "11. slow-loris clients (headers, body)", "the server closes the connection")
	t.Parallel()
	addr := serveWithLimits(t, newTestHandler(t, demoTenants(), time.Minute))
	t.Run("headers_never_end", func(t *testing.T) {
		t.Parallel()
		conn := trickle(t, addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", "a")
		closedByServer(t, conn, 3*time.Second)
	})
	t.Run("body_never_ends", func(t *testing.T) {
		t.Parallel()
		conn := trickle(t, addr, "POST /v1/probes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer demo-key\r\n"+
			"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", " ")
		closedByServer(t, conn, 3*time.Second)
	})
}

func TestNewHTTPServer_defaults_every_limit(t *testing.T) {
	t.Parallel()
	srv := NewHTTPServer(http.NotFoundHandler(), HTTPLimits{})
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
		t.Fatalf("a limit is unset: %+v", srv)
	}
}
