package outbound

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ErrNotSent marks a Do that failed before anything was sent: the request
// could not be encoded or built (a bad base URL). Such a call can never
// succeed by being retried.
var ErrNotSent = errors.New("outbound: request not sent")

// notSent wraps an error of building a request so that errors.Is finds
// ErrNotSent, its text staying the cause's.
type notSent struct{ err error }

func (e notSent) Error() string        { return e.err.Error() }
func (e notSent) Unwrap() error        { return e.err }
func (e notSent) Is(target error) bool { return target == ErrNotSent }

// Endpoint is a system sagaflow does not own, at a base URL, with the HTTP
// client (NewHTTPClient) that calls it. Safe for concurrent use; the zero
// value is not usable.
type Endpoint struct {
	base string
	http *http.Client
}

// NewEndpoint returns the endpoint of system at baseURL (a trailing slash
// is dropped), whose calls take at most timeout.
func NewEndpoint(system, baseURL string, timeout time.Duration) Endpoint {
	return Endpoint{base: strings.TrimRight(baseURL, "/"), http: NewHTTPClient(system, timeout)}
}

// CloseIdleConnections closes the connections kept alive for later calls.
func (e Endpoint) CloseIdleConnections() { e.http.CloseIdleConnections() }

// Request is one JSON call to a system sagaflow does not own.
type Request struct {
	Method string
	Path   string // after the endpoint's base URL, starting with /
	// Body, if not nil, is sent as JSON with Content-Type application/json.
	Body any
	// IdempotencyKey, if set, goes out in the Idempotency-Key header; it
	// also lets net/http resend the request on a kept-alive connection the
	// server had closed, which is safe for an idempotent request.
	IdempotencyKey string
	// MaxReply bounds what is read of the reply's body.
	MaxReply int64
}

// Do sends r to the endpoint, asking for JSON, and returns the status and the body
// of the reply (at most r.MaxReply bytes). An error wrapping ErrNotSent
// means nothing was sent; any other error means no complete reply came, and
// the request may have been applied: after a failed read of the body the
// status is returned with the error ("read 503 reply: ...").
func (e Endpoint) Do(ctx context.Context, r Request) (int, []byte, error) {
	var body io.Reader
	if r.Body != nil {
		b, err := json.Marshal(r.Body)
		if err != nil {
			return 0, nil, notSent{fmt.Errorf("encode request: %w", err)}
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, e.base+r.Path, body)
	if err != nil {
		return 0, nil, notSent{err}
	}
	req.Header.Set("Accept", "application/json")
	if r.Body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.IdempotencyKey != "" {
		req.Header.Set("Idempotency-Key", r.IdempotencyKey)
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, r.MaxReply))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("read %d reply: %w", resp.StatusCode, err)
	}
	return resp.StatusCode, b, nil
}

// ReplyDetail describes a failed reply for an error message: "409
// in_progress: a charge is being made" when the body is the providers'
// {"error": {"code", "message"}}, else "409 Conflict". code is the
// provider's code, "" if none.
func ReplyDetail(status int, body []byte) (code, detail string) {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
		return e.Error.Code, fmt.Sprintf("%d %s: %s", status, e.Error.Code, e.Error.Message)
	}
	return "", fmt.Sprintf("%d %s", status, http.StatusText(status))
}
