// Package deadletter archives the bus's dead letters and replays them.
//
// RabbitMQ dead-letters three kinds of message of the catalog bus into
// catalog.DeadQueue (see internal/rabbit.DeclareTopology): those the ingest
// refused (with catalog.ReasonHeader saying why), those the broker gave up
// on after the delivery limit (with its x-death header), and those no queue
// binds (unroutable). The Archiver consumes that queue and writes each
// message, once, into its tenant's dead_letters table (or, when no tenant
// can be told, the administrators' sagaflow.dead_letters), so that an
// operator inspects and replays them through the API instead of the
// RabbitMQ management UI. The Replayer publishes chosen dead letters to the
// catalog exchange again.
//
// These are not the parking lot: parked items are changes a sync workflow
// holds after its retry budget (GET /v1/parked).
package deadletter

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/valid"
)

// Reasons a message was dead-lettered: the kind, not the full text (that
// is Letter.Detail).
const (
	// ReasonInvalid: the ingest refused the message (not an envelope, a bad
	// field, a routing key that does not match its tenant).
	ReasonInvalid = "invalid"
	// ReasonUnknownTenant: a valid message for a tenant that does not exist.
	ReasonUnknownTenant = "unknown_tenant"
	// ReasonRefused: PostgreSQL or Temporal refused the change for good.
	ReasonRefused = "refused"
	// ReasonDeliveryLimit: the broker handed the message out
	// rabbit.DeliveryLimit times without an ack (consumers crashed or kept
	// failing): transient, a replay may well go through.
	ReasonDeliveryLimit = "delivery_limit"
	// ReasonRejected, ReasonExpired, ReasonMaxLen: the broker's other
	// x-death reasons.
	ReasonRejected = "rejected"
	ReasonExpired  = "expired"
	ReasonMaxLen   = "maxlen"
	// ReasonUnroutable: published with a routing key no queue binds.
	ReasonUnroutable = "unroutable"
)

// Reasons lists every reason, for validation.
var Reasons = []string{ReasonInvalid, ReasonUnknownTenant, ReasonRefused, ReasonDeliveryLimit, ReasonRejected,
	ReasonExpired, ReasonMaxLen, ReasonUnroutable}

// Transient reports whether a message dead-lettered for reason may go
// through when replayed unchanged: the broker's reasons other than a
// consumer's rejection say nothing against the message itself.
func Transient(reason string) bool {
	switch reason {
	case ReasonDeliveryLimit, ReasonExpired, ReasonMaxLen:
		return true
	}
	return false
}

// Headers the archiver and the replayer read or write.
const (
	// ReplayedFromHeader is set on a replayed message: the id of its dead
	// letter.
	ReplayedFromHeader = "x-sagaflow-replayed-from"
	// TruncatedHeader marks an archived letter whose body was cut to
	// MaxBodyBytes (it holds the original size); it is never replayed.
	TruncatedHeader = "x-sagaflow-truncated"
	// originalRoutingKeyHeader is internal/ingest.OriginalRoutingKeyHeader
	// (not imported: the ingest links Temporal).
	originalRoutingKeyHeader = "x-original-routing-key"
)

// MaxBodyBytes bounds the body a letter keeps: the ingest refuses messages
// over 64 KiB, so a larger one is kept for inspection only.
const MaxBodyBytes = 1 << 20

// maxHeaderJSON bounds the headers a letter keeps, as JSON.
const maxHeaderJSON = 64 << 10

// Letter is one dead message as archived.
type Letter struct {
	ID string `json:"id"`
	// Fingerprint identifies the message whatever its deaths: sha256 of
	// routing key, message id and body. A redelivery is the same letter.
	Fingerprint []byte `json:"-"`
	// Claimed is the tenant the message names (routing key or envelope),
	// resolvable or not.
	Claimed     string         `json:"-"`
	MessageID   string         `json:"message_id"`
	Reason      string         `json:"reason"`
	Detail      string         `json:"detail"`
	Transient   bool           `json:"transient"`
	RoutingKey  string         `json:"routing_key"`
	Headers     map[string]any `json:"headers"`
	ContentType string         `json:"content_type,omitempty"`
	Body        []byte         `json:"-"`
	TraceID     string         `json:"trace_id"`
	Deaths      int            `json:"deaths"`
	DeadAt      time.Time      `json:"dead_at"`
	ReplayedAt  *time.Time     `json:"replayed_at,omitempty"`
	Replays     int            `json:"replays"`
}

// SKU is the SKU the letter's envelope names, or "".
func (l Letter) SKU() string {
	var env struct {
		Payload struct {
			SKU string `json:"sku"`
		} `json:"payload"`
	}
	if json.Unmarshal(l.Body, &env) != nil || !catalog.ValidSKU(env.Payload.SKU) {
		return ""
	}
	return env.Payload.SKU
}

// Fingerprint is a letter's identity: sha256 of the routing key, the
// message id and the body, each length-prefixed.
func Fingerprint(routingKey, messageID string, body []byte) []byte {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(routingKey), []byte(messageID), body} {
		fmt.Fprintf(h, "%d:", len(part))
		h.Write(part)
	}
	return h.Sum(nil)
}

// FromDelivery makes the letter of a message consumed from the dead queue,
// received at now: its reason from the ingest's header or the broker's
// x-death, the tenant it claims, its message and trace ids. The routing key
// is the one it was first published with.
func FromDelivery(d amqp.Delivery, now time.Time) Letter {
	l := Letter{RoutingKey: d.RoutingKey, ContentType: d.ContentType, Body: d.Body, Deaths: 1, DeadAt: now.UTC()}
	if rk, ok := d.Headers[originalRoutingKeyHeader].(string); ok && rk != "" {
		l.RoutingKey = rk
	}
	if len(l.Body) > MaxBodyBytes {
		l.Body = l.Body[:MaxBodyBytes]
	}
	var env struct {
		MessageID string `json:"message_id"`
		TenantID  string `json:"tenant_id"`
		TraceID   string `json:"trace_id"`
	}
	_ = json.Unmarshal(d.Body, &env) // a body that is no envelope has none of them
	l.MessageID = d.MessageId
	if l.MessageID == "" && valid.TokenProblem(env.MessageID, 128) == "" {
		l.MessageID = env.MessageID
	}
	if catalog.ValidTraceID(env.TraceID) {
		l.TraceID = env.TraceID
	}
	if l.TraceID == "" {
		l.TraceID = traceparentID(d.Headers["traceparent"])
	}
	l.Claimed = claimedTenant(l.RoutingKey, env.TenantID)
	l.Reason, l.Detail = reasonOf(d.Headers)
	l.Transient = Transient(l.Reason)
	l.Fingerprint = Fingerprint(l.RoutingKey, l.MessageID, d.Body)
	l.Headers = jsonHeaders(d.Headers)
	if len(d.Body) > MaxBodyBytes {
		l.Headers[TruncatedHeader] = len(d.Body)
	}
	return l
}

// claimedTenant is the tenant of routing key product.changed.<tenant>, if
// the envelope names none or the same; "" when they disagree (the letter
// then goes to the administrators: neither tenant may see the other's).
func claimedTenant(routingKey, envTenant string) string {
	fromKey, ok := strings.CutPrefix(routingKey, catalog.TypeProductChanged+".")
	if !ok || strings.Contains(fromKey, ".") {
		fromKey = ""
	}
	switch {
	case fromKey == "":
		return envTenant
	case envTenant == "" || envTenant == fromKey:
		return fromKey
	}
	return ""
}

// reasonOf reads why a message died: the ingest's header first, then the
// broker's x-death (its newest entry), else it was unroutable.
func reasonOf(h amqp.Table) (string, string) {
	if r, ok := h[catalog.ReasonHeader].(string); ok && r != "" {
		detail := clean(r, 2000)
		switch {
		case strings.HasPrefix(r, "unknown tenant"):
			return ReasonUnknownTenant, detail
		case strings.Contains(r, "for good"):
			return ReasonRefused, detail
		}
		return ReasonInvalid, detail
	}
	if deaths, ok := h["x-death"].([]any); ok && len(deaths) > 0 {
		if d, ok := deaths[0].(amqp.Table); ok {
			reason, _ := d["reason"].(string)
			queue, _ := d["queue"].(string)
			count := d["count"]
			switch reason {
			case ReasonDeliveryLimit, ReasonRejected, ReasonExpired, ReasonMaxLen:
			default:
				reason = ReasonRejected
			}
			return reason, clean(fmt.Sprintf("dead-lettered by the broker from queue %s: %s (count %v)", queue, reason, count), 2000)
		}
	}
	return ReasonUnroutable, "no queue binds the routing key"
}

// traceparentID is the trace id of a W3C traceparent header value, or "".
func traceparentID(v any) string {
	s, _ := v.(string)
	parts := strings.Split(s, "-")
	if len(parts) != 4 || len(parts[1]) != 32 || strings.Trim(parts[1], "0123456789abcdef") != "" {
		return ""
	}
	return parts[1]
}

// clean makes s storable text of at most n bytes: valid UTF-8, no NUL.
func clean(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// jsonHeaders turns AMQP headers into what JSON (and jsonb) can hold:
// byte strings as base64, times in RFC 3339, text cleaned. Headers larger
// than maxHeaderJSON are replaced by a note.
func jsonHeaders(h amqp.Table) map[string]any {
	out := make(map[string]any, len(h))
	for k, v := range h {
		out[clean(k, 255)] = jsonValue(v, 0)
	}
	if b, err := json.Marshal(out); err != nil || len(b) > maxHeaderJSON {
		return map[string]any{"x-sagaflow-dropped-headers": fmt.Sprintf("the headers take more than %d bytes as JSON", maxHeaderJSON)}
	}
	return out
}

func jsonValue(v any, depth int) any {
	if depth > 16 {
		return "(nested too deep)"
	}
	switch v := v.(type) {
	case string:
		return clean(v, 4096)
	case []byte:
		if utf8.Valid(v) && !bytes.ContainsRune(v, 0) {
			return clean(string(v), 4096)
		}
		return base64.StdEncoding.EncodeToString(v)
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	case amqp.Decimal:
		return fmt.Sprintf("%de-%d", v.Value, v.Scale)
	case amqp.Table:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[clean(k, 255)] = jsonValue(x, depth+1)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, x := range v {
			s[i] = jsonValue(x, depth+1)
		}
		return s
	case nil, bool, int, int8, int16, int32, int64, uint8, uint16, uint32, uint64:
		return v
	case float32, float64:
		return v
	}
	return fmt.Sprintf("%v", v)
}

// Filter selects dead letters; a zero field selects all.
type Filter struct {
	Reason string
	// Since keeps the letters that died at or after it.
	Since time.Time
}

// Empty reports whether f selects every letter.
func (f Filter) Empty() bool { return f.Reason == "" && f.Since.IsZero() }

// Matches reports whether f selects l.
func (f Filter) Matches(l Letter) bool {
	return (f.Reason == "" || l.Reason == f.Reason) && (f.Since.IsZero() || !l.DeadAt.Before(f.Since))
}

// Selection is what a replay takes: the letters of IDs (when any), else
// those Filter selects.
type Selection struct {
	IDs    []string
	Filter Filter
}
