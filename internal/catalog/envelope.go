package catalog

import (
	"bytes"
	"encoding/json"
	"time"
	"unicode"

	"github.com/sagaflow/sagaflow/internal/valid"
)

// The bus topology every sagaflow process declares (internal/rabbit):
// changes go to a topic exchange with routing key product.changed.<tenant>,
// are consumed from one durable quorum queue, and what cannot be parsed or
// validated is dead-lettered with the reason in a header.
const (
	Exchange     = "sagaflow.catalog"
	DeadExchange = "sagaflow.catalog.dlx"
	IngestQueue  = "sagaflow.catalog.ingest"
	DeadQueue    = "sagaflow.catalog.dead"
	// ReasonHeader is the header of a dead-lettered message that says why.
	ReasonHeader = "x-sagaflow-reason"
	// TypeProductChanged is the one event type the ingest understands.
	TypeProductChanged = "product.changed"
)

// RoutingKey is the routing key of a change of tenant's products.
func RoutingKey(tenant string) string { return TypeProductChanged + "." + tenant }

// Envelope is a message on the bus. Other systems may publish straight to
// the exchange in this form (see README, "Publishing changes").
type Envelope struct {
	// MessageID identifies the message; redeliveries and re-publications
	// of the same change keep it, and the ingest drops repeats.
	MessageID string `json:"message_id"`
	// TenantID is the tenant whose product changed; it must match the
	// routing key's last segment.
	TenantID string `json:"tenant_id"`
	// Type is TypeProductChanged.
	Type string `json:"type"`
	// OccurredAt is when the change happened at its source.
	OccurredAt time.Time `json:"occurred_at"`
	// TraceID ties the message to the request that caused it (optional;
	// see ValidTraceID). sagaflow's API writes a W3C trace id.
	TraceID string `json:"trace_id,omitempty"`
	// Payload is the Product after the change, version included.
	Payload json.RawMessage `json:"payload"`
}

// maxEnvelopeBytes bounds a message: a product at its limits is ~20 KB.
const maxEnvelopeBytes = 64 << 10

// ParseChange decodes and validates a product.changed message that arrived
// with routingKey. Every error is a *valid.Error (so errors.Is(err,
// ErrInvalid)) naming each bad field, in words fit for the dead-letter
// header. It never panics, whatever body is.
func ParseChange(body []byte, routingKey string) (Envelope, Product, error) {
	var e Envelope
	if len(body) > maxEnvelopeBytes {
		return e, Product{}, valid.New("body", "message of %d bytes exceeds %d", len(body), maxEnvelopeBytes)
	}
	if err := json.Unmarshal(body, &e); err != nil {
		return e, Product{}, valid.New("body", "envelope is not JSON: %s", err)
	}
	var v valid.Errors
	v.Check(printableID(e.MessageID), "message_id", "must be 1-128 printable ASCII characters")
	if v.Check(tenantPattern(e.TenantID), "tenant_id", "%q is not a tenant name", e.TenantID) {
		v.Check(routingKey == RoutingKey(e.TenantID), "routing_key", "%q does not match tenant_id %q", routingKey, e.TenantID)
	}
	v.Check(e.Type == TypeProductChanged, "type", "%q: want %q", e.Type, TypeProductChanged)
	v.Check(!e.OccurredAt.IsZero(), "occurred_at", "is required (RFC 3339)")
	v.Check(ValidTraceID(e.TraceID), "trace_id", "must be at most 128 printable ASCII characters without spaces")
	var p Product
	if len(bytes.TrimSpace(e.Payload)) == 0 || bytes.Equal(bytes.TrimSpace(e.Payload), []byte("null")) {
		v.Add("payload", "is required")
	} else if err := json.Unmarshal(e.Payload, &p); err != nil {
		v.Add("payload", "is not a product: %s", err)
	} else {
		v.Merge("payload", p.Validate())
		v.Check(p.Version >= 1, "payload.version", "must be at least 1, got %d", p.Version)
	}
	if err := v.Err(); err != nil {
		return e, Product{}, err
	}
	p.TraceID = e.TraceID
	return e, p, nil
}

// MaxTraceIDLen bounds an envelope's trace_id.
const MaxTraceIDLen = 128

// ValidTraceID reports whether s may be an envelope's trace_id: empty (the
// field is optional), or 1-128 printable ASCII characters without spaces
// (valid.Token). What sagaflow writes itself, a W3C trace id of 32
// lowercase hex digits, is a subset; the wider rule keeps accepting the
// ids external publishers already send.
func ValidTraceID(s string) bool {
	return s == "" || valid.TokenProblem(s, MaxTraceIDLen) == ""
}

func printableID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if r > unicode.MaxASCII || !unicode.IsPrint(r) || r == ' ' {
			return false
		}
	}
	return true
}

// tenantPattern mirrors tenant.New's rule without importing it.
func tenantPattern(s string) bool {
	if len(s) < 2 || len(s) > 31 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}
