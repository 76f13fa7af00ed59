package api

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/gin-gonic/gin"
)

const ctxTraceID = "sagaflow.trace_id"

// traceID is the request's W3C trace id, 32 lowercase hex digits: the
// trace-id of a valid incoming traceparent header, else a fresh random one.
// It is made once per request, and only by the handlers that need it (the
// envelope of a product change carries it); the caller's X-Request-Id is
// never used for it, as it need not fit the bus's rule.
func traceID(c *gin.Context) string {
	if v, ok := c.Get(ctxTraceID); ok {
		return v.(string)
	}
	id, ok := traceIDFromParent(c.GetHeader("traceparent"))
	if !ok {
		id = newTraceID()
	}
	c.Set(ctxTraceID, id)
	return id
}

// newTraceID is a random W3C trace id (never all zeros).
func newTraceID() string {
	var b [16]byte
	for {
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
		if b != [16]byte{} {
			return hex.EncodeToString(b[:])
		}
	}
}

// traceIDFromParent is the trace-id of a traceparent header
// (https://www.w3.org/TR/trace-context/#traceparent-header):
// "version-traceid-parentid-flags", all lowercase hex; version ff is
// invalid, version 00 is exactly 55 characters, a later version may append
// "-..." fields; an all-zero trace-id or parent-id is invalid.
func traceIDFromParent(h string) (string, bool) {
	if len(h) < 55 || h[2] != '-' || h[35] != '-' || h[52] != '-' {
		return "", false
	}
	version, trace, parent, flags := h[0:2], h[3:35], h[36:52], h[53:55]
	if !lowerHex(version) || version == "ff" || !lowerHex(trace) || !lowerHex(parent) || !lowerHex(flags) {
		return "", false
	}
	if version == "00" && len(h) != 55 || len(h) > 55 && h[55] != '-' {
		return "", false
	}
	if allZeros(trace) || allZeros(parent) {
		return "", false
	}
	return trace, true
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func allZeros(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}
