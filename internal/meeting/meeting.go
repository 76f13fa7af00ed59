// Package meeting holds the rules of paid meetings and of joining them:
// capacity, fees in minor units, the cancel deadline, and the states a join
// goes through. It has no I/O; internal/store persists it.
package meeting

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/sagaflow/sagaflow/internal/valid"
)

// Domain errors. Activities turn them into non-retryable failures; the API
// turns them into 404/409.
var (
	ErrNotFound      = errors.New("meeting not found")
	ErrMeetingFull   = errors.New("meeting is full")
	ErrMeetingClosed = errors.New("meeting is closed")
	ErrAlreadyJoined = errors.New("user already joined this meeting")
	ErrJoinNotFound  = errors.New("join not found")
)

// Money is an amount in the currency's minor units (KRW has none).
type Money struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

var currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)

// MaxAmount bounds a fee: a billion in major units of a two-decimal
// currency.
const MaxAmount = 1_000_000_000_00

// Validate checks the amount is 0..MaxAmount and the currency is an ISO
// 4217-shaped code; the *valid.Error names "amount" and "currency".
func (m Money) Validate() error {
	var v valid.Errors
	if m.Amount < 0 || m.Amount > MaxAmount {
		v.Add("amount", "must be 0..%d minor units, got %d", int64(MaxAmount), m.Amount)
	}
	if !currencyPattern.MatchString(m.Currency) {
		v.Add("currency", "must be three uppercase letters, got %q", m.Currency)
	}
	return v.Err()
}

// Meeting is a meeting people pay to join.
type Meeting struct {
	ID             string     `json:"id"`
	Title          string     `json:"title"`
	Capacity       int        `json:"capacity"`
	Fee            Money      `json:"fee"`
	CancelDeadline *time.Time `json:"cancel_deadline,omitempty"`
	Status         string     `json:"status"` // open | closed
	Reserved       int        `json:"reserved"`
	Confirmed      int        `json:"confirmed"`
	CreatedAt      time.Time  `json:"created_at"`
}

// Meeting statuses.
const (
	StatusOpen   = "open"
	StatusClosed = "closed"
)

// MaxTitleLen bounds a meeting's title, in characters.
const MaxTitleLen = 200

// Validate checks a meeting about to be created; the *valid.Error names
// "title", "capacity", "fee.amount" and "fee.currency".
func (m Meeting) Validate() error {
	var v valid.Errors
	v.Text("title", m.Title, 1, MaxTitleLen, false)
	if m.Capacity <= 0 || m.Capacity > 1_000_000 {
		v.Add("capacity", "must be 1..1000000, got %d", m.Capacity)
	}
	v.Merge("fee", m.Fee.Validate())
	return v.Err()
}

// CanRefundAt reports whether a confirmed join may still be cancelled with a
// full refund at t: only before the cancel deadline. A meeting without a
// deadline gives no refunds after confirmation.
func (m Meeting) CanRefundAt(t time.Time) bool {
	return m.CancelDeadline != nil && t.Before(*m.CancelDeadline)
}

// Join statuses, in the order a successful join passes them.
const (
	JoinPending      = "pending"
	JoinReserved     = "reserved"
	JoinCharged      = "charged"
	JoinConfirmed    = "confirmed"
	JoinCompensating = "compensating"
	JoinCompensated  = "compensated"
	JoinFailed       = "failed"
)

// Terminal reports whether a join in status s is finished from the user's
// view (a confirmed join may still be cancelled before the deadline).
func Terminal(s string) bool {
	return s == JoinConfirmed || s == JoinCompensated || s == JoinFailed
}

// Channels a join can be notified on.
var Channels = []string{"email", "sms", "push"}

// JoinRequest is what a user asks for.
type JoinRequest struct {
	MeetingID    string   `json:"meeting_id"`
	UserID       string   `json:"user_id"`
	PaymentToken string   `json:"payment_token"`
	Channels     []string `json:"channels"`
	// TraceID is the trace id of the request (not part of the body or of
	// Hash): stored with the join for operators.
	TraceID string `json:"-"`
}

var userPattern = regexp.MustCompile(`^[A-Za-z0-9_.@:-]{1,128}$`)

// TokenAAD is what a join's payment token is sealed with (internal/secret)
// between the API and the charge: the join's id, so a sealed token copied
// into another join does not open. The token never reaches a workflow
// history, nor sagaflow.workflow_starts, in the clear.
func TokenAAD(joinID string) []byte { return []byte("payment-token:" + joinID) }

// MaxPaymentTokenLen bounds a payment token.
const MaxPaymentTokenLen = 256

// Normalize validates r and fills in the default channels (all of them),
// sorted, so that equal requests compare equal. The *valid.Error names
// "user_id", "payment_token" and "channels"; the meeting id is the caller's
// to check (it comes from the URL).
func (r JoinRequest) Normalize() (JoinRequest, error) {
	var v valid.Errors
	if !userPattern.MatchString(r.UserID) {
		v.Add("user_id", "must be 1-128 of [A-Za-z0-9_.@:-]")
	}
	v.Token("payment_token", r.PaymentToken, MaxPaymentTokenLen)
	if len(r.Channels) == 0 {
		r.Channels = slices.Clone(Channels)
	}
	r.Channels = slices.Clone(r.Channels)
	slices.Sort(r.Channels)
	r.Channels = slices.Compact(r.Channels)
	for _, c := range r.Channels {
		if !slices.Contains(Channels, c) {
			v.Add("channels", "unknown channel %q (want email, sms, push)", c)
		}
	}
	return r, v.Err()
}

// Hash identifies the request's content, to tell a retry (same key, same
// body) from a conflicting reuse of an idempotency key.
func (r JoinRequest) Hash() string {
	h := sha256.New()
	for _, s := range append([]string{r.MeetingID, r.UserID, r.PaymentToken}, r.Channels...) {
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// JoinID derives the id of a join from its tenant and the client's
// Idempotency-Key: the same key always names the same join, and the id is
// safe in URLs, workflow IDs and as the payment's idempotency key.
func JoinID(tenant, idempotencyKey string) string {
	sum := sha256.Sum256([]byte(tenant + "\x00" + idempotencyKey))
	return "j_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:16]))
}

// Step is one entry of a join's audit trail.
type Step struct {
	Name   string    `json:"name"`   // reserve_seat, charge, confirm, notify_email, release_seat, refund, ...
	Status string    `json:"status"` // done | failed | skipped
	Detail string    `json:"detail,omitempty"`
	At     time.Time `json:"at"`
}

// Payment is what a join knows of its charge.
type Payment struct {
	ID     string `json:"id,omitempty"`
	Status string `json:"status"` // one of the Payment* statuses
}

// Payment statuses of a join (Payment.Status).
const (
	PaymentNone      = "none"
	PaymentSucceeded = "succeeded"
	PaymentDeclined  = "declined"
	PaymentRefunded  = "refunded"
	PaymentUnknown   = "unknown"
)

// Join is the state of one join, as the API shows it.
type Join struct {
	JoinID    string  `json:"join_id"`
	MeetingID string  `json:"meeting_id"`
	UserID    string  `json:"user_id"`
	Status    string  `json:"status"`
	Reason    string  `json:"reason,omitempty"`
	Payment   Payment `json:"payment"`
	Steps     []Step  `json:"steps"`
	// TraceID is the trace id of the request that created the join, as
	// PostgreSQL has it (the workflow's state does not carry it).
	TraceID string `json:"trace_id,omitempty"`
}

// OpenJoin is a join that has not ended, as its stored row has it.
type OpenJoin struct {
	JoinID  string
	Status  string
	TraceID string
	// Since is when the row last changed.
	Since time.Time
}

// JoinStart is what the API reads before it starts a join.
type JoinStart struct {
	Meeting Meeting
	// Existing is the join already recorded under the id, if any, and
	// ExistingHash the hash of the request that made it.
	Existing     *Join
	ExistingHash string
	// UserConfirmed: the user holds a confirmed seat in the meeting.
	UserConfirmed bool
}
