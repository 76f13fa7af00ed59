// Package coupon holds the rules of first-come coupon campaigns: a stock, a
// window, and coupons issued in the order requests were accepted. It has no
// I/O; internal/queue keeps the first-come queue, internal/store the coupons.
package coupon

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"time"

	"github.com/sagaflow/sagaflow/internal/valid"
)

// ErrNotFound means no such campaign (or coupon).
var ErrNotFound = errors.New("campaign not found")

// ErrUnwritable means the store refused the coupons themselves (a user id
// it cannot hold, a value out of range): the same coupons will be refused
// however often they are retried. Any other error may pass on a retry.
var ErrUnwritable = errors.New("coupons can never be written")

// SetAside is an accepted request that can never be issued: it is taken
// off the queue with the reason the store gave, its unit of stock goes back
// to the campaign, and it is counted, not issued.
type SetAside struct {
	User   string `json:"user"`
	Rank   int64  `json:"rank"`
	Reason string `json:"reason"`
}

// Campaign is a first-come campaign.
type Campaign struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Stock     int        `json:"stock"`
	StartsAt  time.Time  `json:"starts_at"`
	EndsAt    time.Time  `json:"ends_at"`
	Done      bool       `json:"-"`
	Issued    int        `json:"issued"`
	Accepted  *int       `json:"-"`
	CreatedAt time.Time  `json:"created_at"`
	DoneAt    *time.Time `json:"done_at,omitempty"`
}

// Campaign statuses, as the API shows them.
const (
	StatusScheduled = "scheduled"
	StatusOpen      = "open"
	StatusSoldOut   = "sold_out"
	StatusClosed    = "closed"
	StatusDone      = "done"
)

// MaxNameLen bounds a campaign's name, in characters.
const MaxNameLen = 200

// Validate checks a campaign about to be created at now; the *valid.Error
// names "name", "stock", "starts_at" and "ends_at".
func (c Campaign) Validate(now time.Time) error {
	var v valid.Errors
	v.Text("name", c.Name, 1, MaxNameLen, false)
	if c.Stock <= 0 || c.Stock > 10_000_000 {
		v.Add("stock", "must be 1..10000000, got %d", c.Stock)
	}
	v.Check(!c.StartsAt.IsZero(), "starts_at", "is required (RFC 3339)")
	v.Check(!c.EndsAt.IsZero(), "ends_at", "is required (RFC 3339)")
	if !c.StartsAt.IsZero() && !c.EndsAt.IsZero() {
		v.Check(c.EndsAt.After(c.StartsAt), "ends_at", "must be after starts_at")
		v.Check(c.EndsAt.After(now), "ends_at", "must be in the future")
		v.Check(c.EndsAt.Sub(c.StartsAt) <= 90*24*time.Hour, "ends_at", "a campaign lasts at most 90 days")
	}
	return v.Err()
}

// Status is the campaign's status at now, given what is left of its stock.
func Status(c Campaign, left int64, now time.Time) string {
	switch {
	case c.Done:
		return StatusDone
	case now.Before(c.StartsAt):
		return StatusScheduled
	case !now.Before(c.EndsAt):
		return StatusClosed
	case left <= 0:
		return StatusSoldOut
	}
	return StatusOpen
}

// Where a user's coupon of a campaign stands, as the API answers it.
const (
	CouponIssued  = "issued"
	CouponPending = "pending" // accepted, not yet written
	CouponNone    = "none"    // never accepted
)

// Coupon is one issued coupon.
type Coupon struct {
	CampaignID string    `json:"campaign_id"`
	UserID     string    `json:"user_id"`
	Rank       int64     `json:"rank"`
	Code       string    `json:"code"`
	IssuedAt   time.Time `json:"issued_at"`
}

// Code is the coupon code of a rank: the same inputs always give the same
// code, so a retried issue writes the same row.
func Code(tenant, campaignID, user string, rank int64) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%s\x00%s\x00%d", tenant, campaignID, user, rank)))
	return "CPN-" + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:10])
}
