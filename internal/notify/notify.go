// Package notify is the client of the notification providers (email, SMS,
// push: systems we do not own; internal/sim simulates them).
//
// Send is idempotent by Message.IdempotencyKey: the provider delivers a key
// at most once and accepts repeats without delivering again, so a send that
// failed with an unknown outcome can simply be retried. Errors come in two
// kinds: ErrPermanent (the provider refused the message, a 4xx: do not
// retry) and everything else (a timeout, a connection error, a 5xx, 408 or
// 429: retry with the same key).
package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sagaflow/sagaflow/internal/outbound"
)

// ErrPermanent wraps a refusal that retrying will not change.
var ErrPermanent = errors.New("permanent failure")

// Channels.
const (
	Email = "email"
	SMS   = "sms"
	Push  = "push"
)

// DefaultTimeout is the timeout NewClient uses when given none.
const DefaultTimeout = 10 * time.Second

// maxResponseBytes bounds what is read of a reply: they are tiny.
const maxResponseBytes = 64 << 10

// Message is one notification. IdempotencyKey must be unique per message
// across all channels (say "join-123:confirmed:email").
type Message struct {
	Channel        string // Email, SMS or Push
	To             string // an address, a phone number or a device token
	Subject        string // email only; optional
	Body           string
	IdempotencyKey string
}

// Client sends notifications. Build one per process and share it: it is
// safe for concurrent use and keeps connections alive between calls.
type Client struct{ ep outbound.Endpoint }

// NewClient returns a client of the providers at baseURL (such as
// "http://127.0.0.1:8092"). timeout bounds each call; zero or less means
// DefaultTimeout. A call's context can end it sooner.
func NewClient(baseURL string, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{outbound.NewEndpoint("notify", baseURL, timeout)}
}

// CloseIdleConnections closes the connections kept alive for later calls.
func (c *Client) CloseIdleConnections() { c.ep.CloseIdleConnections() }

// Send delivers m once. It returns nil when the provider accepted m now or
// had delivered its key before; an error wrapping ErrPermanent when the
// provider refused it (or m is invalid: an unknown channel, no key); any
// other error is transient.
func (c *Client) Send(ctx context.Context, m Message) error {
	op := fmt.Sprintf("send %s %s", m.Channel, m.IdempotencyKey)
	if m.Channel != Email && m.Channel != SMS && m.Channel != Push {
		return fmt.Errorf("notify: %s: %w: unknown channel %q", op, ErrPermanent, m.Channel)
	}
	if m.IdempotencyKey == "" {
		return fmt.Errorf("notify: %s: %w: empty idempotency key", op, ErrPermanent)
	}
	status, body, err := c.ep.Do(ctx, outbound.Request{
		Method: http.MethodPost,
		Path:   "/v1/" + m.Channel,
		Body: struct {
			To             string `json:"to"`
			Subject        string `json:"subject,omitempty"`
			Body           string `json:"body"`
			IdempotencyKey string `json:"idempotency_key"`
		}{m.To, m.Subject, m.Body, m.IdempotencyKey},
		IdempotencyKey: m.IdempotencyKey,
		MaxReply:       maxResponseBytes,
	})
	switch s := status; {
	case errors.Is(err, outbound.ErrNotSent):
		return fmt.Errorf("notify: %s: %w: %w", op, ErrPermanent, err)
	case s >= 200 && s < 300:
		return nil // the status is the answer; a body cut short changes nothing
	case err != nil:
		return fmt.Errorf("notify: %s: %w", op, err)
	case s == http.StatusRequestTimeout, s == http.StatusTooManyRequests, s < 400 || s >= 500:
		return fmt.Errorf("notify: %s: %s", op, detail(s, body))
	default:
		return fmt.Errorf("notify: %s: %w: %s", op, ErrPermanent, detail(s, body))
	}
}

// detail describes a failed reply with the provider's code and message.
func detail(status int, body []byte) string {
	_, d := outbound.ReplyDetail(status, body)
	return d
}
