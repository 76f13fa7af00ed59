// Package payment is the client of the card payment gateway (a system we do
// not own; internal/sim simulates it). It charges, looks charges up by their
// idempotency key, and refunds them.
//
// Every call sorts its failure into one of four sentinels, so that the saga
// can decide what to do with errors.Is:
//
//   - ErrDeclined: the gateway declined the charge (402). Permanent; no money
//     was taken. errors.As with *DeclinedError gives the reason.
//   - ErrRejected: the gateway refused the request (another 4xx: a bad
//     request, an idempotency key reused with another amount, a refund of a
//     declined charge). Permanent; retrying will not help.
//   - ErrNotFound: no charge has that idempotency key (Lookup) or ID (Refund).
//   - ErrUnknownOutcome: a timeout, a connection error, a 5xx, 408, 429, or
//     a 409 request_in_progress (another request with the same key is being
//     processed). The request may or may not have been applied, or may still
//     be: a lookup that finds nothing is not final until the key is voided. Charges and refunds are
//     idempotent by key, so the caller may retry with the same key; to decide
//     between retrying and compensating, the saga calls Lookup (itself
//     retried while it returns ErrUnknownOutcome), and Void to make the
//     outcome final when it gives up.
//
// Errors say what was being done: "payment: charge join-123: charge declined:
// insufficient_funds".
package payment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/sagaflow/sagaflow/internal/outbound"
)

// The kinds of failure; see the package documentation.
var (
	ErrDeclined       = errors.New("charge declined")
	ErrUnknownOutcome = errors.New("outcome unknown")
	ErrNotFound       = errors.New("charge not found")
	ErrRejected       = errors.New("request rejected")
)

// Charge statuses.
const (
	StatusSucceeded = "succeeded"
	StatusDeclined  = "declined"
	StatusRefunded  = "refunded"
	// StatusVoided is a key voided before any charge was made under it:
	// none ever will be.
	StatusVoided = "voided"
)

// codeInProgress is the error code of a 409 for a key whose earlier request
// is still being processed: transient, unlike the other 409s.
const codeInProgress = "request_in_progress"

// DefaultTimeout is the timeout NewClient uses when given none.
const DefaultTimeout = 10 * time.Second

// maxResponseBytes bounds what is read of a response: a charge is ~200 bytes.
const maxResponseBytes = 1 << 20

// Charge is a charge as the gateway reports it.
type Charge struct {
	ID             string `json:"id"`
	IdempotencyKey string `json:"idempotency_key"`
	Amount         int64  `json:"amount"` // minor units (KRW has none: 1 = 1 won)
	Currency       string `json:"currency"`
	Status         string `json:"status"`           // StatusSucceeded | StatusDeclined | StatusRefunded
	Reason         string `json:"reason,omitempty"` // why it was declined
}

// ChargeRequest asks for a charge. IdempotencyKey (the join ID) makes it
// safe to send again: the gateway charges a key at most once.
type ChargeRequest struct {
	IdempotencyKey string
	Amount         int64 // minor units
	Currency       string
	Token          string // the payment method, tokenised by the gateway's front end
}

// DeclinedError is a decline, with the gateway's reason
// ("insufficient_funds", "card_declined", ...). errors.Is(err, ErrDeclined)
// holds for it.
type DeclinedError struct {
	Reason string
}

func (e *DeclinedError) Error() string {
	if e.Reason == "" {
		return ErrDeclined.Error()
	}
	return ErrDeclined.Error() + ": " + e.Reason
}

// Is makes errors.Is(err, ErrDeclined) hold.
func (e *DeclinedError) Is(target error) bool { return target == ErrDeclined }

// Client calls the payment gateway. Build one per process and share it: it is
// safe for concurrent use and keeps connections alive between calls.
type Client struct{ ep outbound.Endpoint }

// NewClient returns a client of the gateway at baseURL (such as
// "http://127.0.0.1:8091"). timeout bounds each call, reading the reply
// included; zero or less means DefaultTimeout. A call's context can end it
// sooner.
func NewClient(baseURL string, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{outbound.NewEndpoint("payment", baseURL, timeout)}
}

// CloseIdleConnections closes the connections kept alive for later calls.
func (c *Client) CloseIdleConnections() { c.ep.CloseIdleConnections() }

// Charge charges req.Amount once per req.IdempotencyKey: if the key was
// charged before, the gateway returns that first charge (whatever its status
// now, refunded included) and charges nothing. A decline returns the
// declined charge with a *DeclinedError; a failure whose outcome is unknown
// returns ErrUnknownOutcome, after which the charge may exist.
func (c *Client) Charge(ctx context.Context, req ChargeRequest) (Charge, error) {
	op := "charge " + req.IdempotencyKey
	if req.IdempotencyKey == "" {
		return Charge{}, fmt.Errorf("payment: charge: %w: empty idempotency key", ErrRejected)
	}
	body := struct {
		IdempotencyKey string `json:"idempotency_key"`
		Amount         int64  `json:"amount"`
		Currency       string `json:"currency"`
		Token          string `json:"token"`
	}{req.IdempotencyKey, req.Amount, req.Currency, req.Token}
	status, resp, err := c.do(ctx, http.MethodPost, "/v1/charges", body, req.IdempotencyKey)
	if err != nil {
		return Charge{}, fmt.Errorf("payment: %s: %w: %w", op, ErrUnknownOutcome, err)
	}
	switch status {
	case http.StatusOK, http.StatusCreated:
		ch, err := decodeCharge(resp)
		if err != nil {
			// A 2xx we cannot read: the charge may well exist.
			return Charge{}, fmt.Errorf("payment: %s: %w: %w", op, ErrUnknownOutcome, err)
		}
		if ch.Status == StatusDeclined {
			// A repeat of a declined key: the gateway replays the decline.
			return ch, fmt.Errorf("payment: %s: %w", op, &DeclinedError{Reason: ch.Reason})
		}
		return ch, nil
	case http.StatusPaymentRequired:
		ch, _ := decodeCharge(resp) // a 402 is a decline whatever its body says
		return ch, fmt.Errorf("payment: %s: %w", op, &DeclinedError{Reason: ch.Reason})
	default:
		// A 404 here is a wrong base URL, not a missing charge.
		return Charge{}, fmt.Errorf("payment: %s: %w", op, classify(status, resp, ErrRejected))
	}
}

// Lookup returns the charge made with idempotencyKey, or ErrNotFound if none
// was. ErrUnknownOutcome means the gateway could not say (a timeout, a 5xx):
// retry the lookup, never read it as "not found".
func (c *Client) Lookup(ctx context.Context, idempotencyKey string) (Charge, error) {
	op := "look up charge " + idempotencyKey
	if idempotencyKey == "" {
		return Charge{}, fmt.Errorf("payment: look up charge: %w: empty idempotency key", ErrRejected)
	}
	path := "/v1/charges?" + url.Values{"idempotency_key": {idempotencyKey}}.Encode()
	return c.charge(ctx, op, http.MethodGet, path, nil, "", ErrNotFound)
}

// Void makes the outcome of the key's charge final and returns it: the
// charge made under the key as it stands (succeeded, declined or refunded),
// or, if none was made, a charge with StatusVoided, after which the gateway
// never makes one for the key (a request still being processed is
// cancelled). Idempotent. Call it when a charge's outcome stays unknown,
// before deciding that no money was taken: a Lookup that finds nothing may
// be overtaken by a late commit; a Void may not. ErrUnknownOutcome means
// the gateway could not say: call Void again.
func (c *Client) Void(ctx context.Context, idempotencyKey string) (Charge, error) {
	op := "void charge " + idempotencyKey
	if idempotencyKey == "" {
		return Charge{}, fmt.Errorf("payment: void charge: %w: empty idempotency key", ErrRejected)
	}
	body := struct {
		IdempotencyKey string `json:"idempotency_key"`
	}{idempotencyKey}
	// A 404 is a gateway without voids (a wrong base URL): not a result.
	return c.charge(ctx, op, http.MethodPost, "/v1/charges/void", body, idempotencyKey, ErrRejected)
}

// Refund refunds the whole of charge chargeID. It is idempotent: refunding a
// refunded charge returns it and refunds nothing more. A declined charge
// cannot be refunded (ErrRejected); an unknown ID is ErrNotFound;
// ErrUnknownOutcome means the refund may or may not have happened, and
// calling Refund again is the way to find out.
func (c *Client) Refund(ctx context.Context, chargeID, idempotencyKey string) (Charge, error) {
	op := "refund charge " + chargeID
	if chargeID == "" || idempotencyKey == "" {
		return Charge{}, fmt.Errorf("payment: %s: %w: empty charge ID or idempotency key", op, ErrRejected)
	}
	body := struct {
		IdempotencyKey string `json:"idempotency_key"`
	}{idempotencyKey}
	return c.charge(ctx, op, http.MethodPost, "/v1/charges/"+url.PathEscape(chargeID)+"/refund", body, idempotencyKey, ErrNotFound)
}

// charge sends one request whose only success is a 200 carrying a charge,
// as Lookup, Void and Refund do, and returns that charge. Any other status
// is classified with notFound for a 404; a reply that did not come or cannot
// be read is ErrUnknownOutcome. op names the call in the error.
func (c *Client) charge(ctx context.Context, op, method, path string, in any, idempotencyKey string, notFound error) (Charge, error) {
	status, resp, err := c.do(ctx, method, path, in, idempotencyKey)
	if err != nil {
		return Charge{}, fmt.Errorf("payment: %s: %w: %w", op, ErrUnknownOutcome, err)
	}
	if status != http.StatusOK {
		return Charge{}, fmt.Errorf("payment: %s: %w", op, classify(status, resp, notFound))
	}
	ch, err := decodeCharge(resp)
	if err != nil {
		return Charge{}, fmt.Errorf("payment: %s: %w: %w", op, ErrUnknownOutcome, err)
	}
	return ch, nil
}

// do sends one request and returns the status and body of the reply. An
// error means no complete reply came (the request may have been applied).
func (c *Client) do(ctx context.Context, method, path string, in any, idempotencyKey string) (int, []byte, error) {
	return c.ep.Do(ctx, outbound.Request{
		Method: method, Path: path, Body: in, IdempotencyKey: idempotencyKey, MaxReply: maxResponseBytes,
	})
}

func decodeCharge(b []byte) (Charge, error) {
	var ch Charge
	if err := json.Unmarshal(b, &ch); err != nil {
		return Charge{}, fmt.Errorf("decode charge: %w", err)
	}
	if ch.ID == "" || ch.Status == "" {
		return Charge{}, fmt.Errorf("decode charge: no id or status in %.200q", b)
	}
	return ch, nil
}

// classify turns a reply that is not the expected success into an error
// wrapping its sentinel (notFound for a 404) and carrying the gateway's code
// and message.
func classify(status int, body []byte, notFound error) error {
	code, detail := outbound.ReplyDetail(status, body)
	switch {
	case status == http.StatusNotFound:
		return fmt.Errorf("%w: %s", notFound, detail)
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests,
		status == http.StatusConflict && code == codeInProgress:
		return fmt.Errorf("%w: %s", ErrUnknownOutcome, detail)
	case status >= 400 && status < 500:
		return fmt.Errorf("%w: %s", ErrRejected, detail)
	default: // 5xx, and anything unexpected
		return fmt.Errorf("%w: %s", ErrUnknownOutcome, detail)
	}
}
