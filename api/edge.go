package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/coupon"
	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/valid"
)

// This file is the edge of every route: how a body, a path parameter or a
// header becomes a value the handlers may use. Each parse function is pure
// (bytes in, a validated value or a *valid.Error out) so that the fuzz
// targets in edge_fuzz_test.go exercise exactly what the handlers run.

// Limits of text at the edge that no domain package owns.
const (
	// MaxIdempotencyKeyLen bounds an Idempotency-Key header.
	MaxIdempotencyKeyLen = 255
	// MaxCouponUserLen bounds a coupon request's user_id.
	MaxCouponUserLen = 128
	maxRequestIDLen  = 128
	maxWorkflowIDLen = 255
	maxBaseURLLen    = 2048
	maxCredentialLen = 512
	maxMarketLen     = 64
)

// readBody reads the whole body (within the size limit requestContext set).
func readBody(c *gin.Context) ([]byte, error) {
	raw, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var maxBytes *http.MaxBytesError
		if errors.As(err, &maxBytes) {
			return nil, err
		}
		return nil, valid.New("body", "could not be read: %s", err.Error())
	}
	return raw, nil
}

// parseBody reads the body (readBody) and parses it with parse.
func parseBody[T any](c *gin.Context, parse func([]byte) (T, error)) (T, error) {
	raw, err := readBody(c)
	if err != nil {
		var zero T
		return zero, err
	}
	return parse(raw)
}

// bindJSON reads the body and decodes it into v with decodeJSON.
func bindJSON(c *gin.Context, v any, optional bool) error {
	raw, err := readBody(c)
	if err != nil {
		return err
	}
	return decodeJSON(raw, v, optional)
}

// decodeJSON decodes raw, one JSON value, into v. It refuses invalid UTF-8
// before decoding (encoding/json would silently turn it into U+FFFD),
// unknown fields, values of the wrong type and trailing data, each with a
// *valid.Error naming the field ("body" when it is the body as a whole).
// An empty body is allowed when optional.
func decodeJSON(raw []byte, v any, optional bool) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		if optional {
			return nil
		}
		return valid.New("body", "is required; send a JSON object")
	}
	if !utf8.Valid(raw) {
		return valid.New("body", "is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return valid.New("body", "must be one JSON value; found more after it")
	}
	return nil
}

// jsonProblem names what encoding/json found wrong.
func jsonProblem(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return valid.New("body", "is not valid JSON at byte %d: %s", syntax.Offset, syntax.Error())
	case errors.Is(err, io.ErrUnexpectedEOF):
		return valid.New("body", "is not valid JSON: it ends too early")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return valid.New("body", "must be a JSON object, got %s", typ.Value)
		}
		return valid.New(field, "must be %s, got %s", jsonTypeName(typ.Type.String()), typ.Value)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		// The name was sent by the client: quoted, so a control character
		// in it is shown escaped.
		return valid.New("body", "unknown field %q", strings.TrimSuffix(strings.TrimPrefix(name, `"`), `"`))
	}
	// time.Time and other UnmarshalJSON methods fail with their own errors.
	var perr *time.ParseError
	if errors.As(err, &perr) {
		return valid.New("body", "a time must be RFC 3339 (2026-12-01T09:00:00Z): %s", perr.Error())
	}
	return valid.New("body", "is not the expected JSON: %s", err.Error())
}

func jsonTypeName(goType string) string {
	switch {
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "*int"):
		return "an integer"
	case goType == "string", goType == "*string":
		return "a string"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "map["):
		return "an object"
	case strings.HasSuffix(goType, "time.Time"):
		return "an RFC 3339 time string"
	}
	return "a " + goType
}

// uuidParam is the path parameter name if it is a canonical UUID (lowercase,
// 8-4-4-4-12), else a *valid.Error naming it. Every id of a resource
// sagaflow made is in this form; another spelling of the same UUID
// (urn:uuid:, braces, uppercase) is refused rather than guessed.
func uuidParam(c *gin.Context, name string) (string, error) {
	id := c.Param(name)
	if !valid.UUID(id) {
		return "", valid.New(name, "must be a UUID in canonical form (lowercase 8-4-4-4-12 hex), got %q", strings.ToValidUTF8(id, "?"))
	}
	return id, nil
}

// validJoinID reports whether id has the form meeting.JoinID gives: "j_"
// and 26 characters of lowercase base32.
func validJoinID(id string) bool {
	if len(id) != 28 || !strings.HasPrefix(id, "j_") {
		return false
	}
	for i := 2; i < len(id); i++ {
		if c := id[i]; (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

func joinIDParam(c *gin.Context) (string, error) {
	id := c.Param("id")
	if !validJoinID(id) {
		return "", valid.New("id", "must be a join id (j_ and 26 of [a-z2-7]), got %q", strings.ToValidUTF8(id, "?"))
	}
	return id, nil
}

func skuParam(c *gin.Context) (string, error) {
	sku := c.Param("sku")
	if !catalog.ValidSKU(sku) {
		return "", valid.New("sku", "must be 1-64 of [A-Za-z0-9._-], starting with a letter or digit, got %q", strings.ToValidUTF8(sku, "?"))
	}
	return sku, nil
}

// couponUserProblem is the rule of a coupon user id, in a body or a path:
// an opaque token, as the queue keys and the coupon rows carry it.
func couponUserProblem(user string) string { return valid.TokenProblem(user, MaxCouponUserLen) }

// idempotencyKey is the request's Idempotency-Key header, required.
func idempotencyKey(c *gin.Context) (string, error) {
	key := c.GetHeader("Idempotency-Key")
	if msg := valid.TokenProblem(key, MaxIdempotencyKeyLen); msg != "" {
		return "", valid.New("header Idempotency-Key", "%s; send one (1-%d printable ASCII characters) so that a retried request joins once", msg, MaxIdempotencyKeyLen)
	}
	return key, nil
}

// parseCreateMeeting is the body of POST /v1/meetings as a valid meeting.
func parseCreateMeeting(raw []byte) (meeting.Meeting, error) {
	var body createMeetingBody
	if err := decodeJSON(raw, &body, false); err != nil {
		return meeting.Meeting{}, err
	}
	m := meeting.Meeting{Title: strings.TrimSpace(body.Title), Capacity: body.Capacity, Fee: body.Fee, CancelDeadline: body.CancelDeadline}
	if err := m.Validate(); err != nil {
		return meeting.Meeting{}, err
	}
	return m, nil
}

// parseJoin is the body of POST /v1/meetings/{id}/joins as a normalized
// request for meetingID (already checked).
func parseJoin(raw []byte, meetingID string) (meeting.JoinRequest, error) {
	var body joinBody
	if err := decodeJSON(raw, &body, false); err != nil {
		return meeting.JoinRequest{}, err
	}
	return meeting.JoinRequest{MeetingID: meetingID, UserID: body.UserID, PaymentToken: body.PaymentToken, Channels: body.Channels}.Normalize()
}

// parseCreateCampaign is the body of POST /v1/campaigns as a valid campaign
// at now.
func parseCreateCampaign(raw []byte, now time.Time) (coupon.Campaign, error) {
	var body createCampaignBody
	if err := decodeJSON(raw, &body, false); err != nil {
		return coupon.Campaign{}, err
	}
	in := coupon.Campaign{Name: strings.TrimSpace(body.Name), Stock: body.Stock, StartsAt: body.StartsAt, EndsAt: body.EndsAt}
	if err := in.Validate(now); err != nil {
		return coupon.Campaign{}, err
	}
	return in, nil
}

// parseCouponRequest is the user_id of POST /v1/campaigns/{id}/requests.
func parseCouponRequest(raw []byte) (string, error) {
	var body couponRequestBody
	if err := decodeJSON(raw, &body, false); err != nil {
		return "", err
	}
	if msg := couponUserProblem(body.UserID); msg != "" {
		return "", valid.New("user_id", "%s", msg)
	}
	return body.UserID, nil
}

// parseProduct is the body of PUT /v1/products/{sku} as a valid product.
func parseProduct(raw []byte, sku string) (catalog.Product, error) {
	var body productBody
	if err := decodeJSON(raw, &body, false); err != nil {
		return catalog.Product{}, err
	}
	var v valid.Errors
	v.Check(body.Price != nil, "price", "is required")
	v.Check(body.Stock != nil, "stock", "is required")
	if err := v.Err(); err != nil {
		return catalog.Product{}, err
	}
	p := catalog.Product{SKU: sku, Name: body.Name, Price: *body.Price, Stock: *body.Stock, Attributes: body.Attributes}
	if p.Attributes == nil {
		p.Attributes = map[string]string{}
	}
	if err := p.Validate(); err != nil {
		return catalog.Product{}, err
	}
	return p, nil
}

// parseChannel is the body of POST /v1/channels with the shape of its text
// checked (the market and the URL's meaning are the handler's to check): a
// NUL or a control character must not reach PostgreSQL or a market's
// request headers.
func parseChannel(raw []byte) (channelBody, error) {
	var body channelBody
	if err := decodeJSON(raw, &body, false); err != nil {
		return channelBody{}, err
	}
	var v valid.Errors
	v.Text("market", body.Market, 1, maxMarketLen, false)
	if body.BaseURL != "" {
		v.Text("base_url", body.BaseURL, 1, maxBaseURLLen, false)
	}
	v.Text("credentials", body.Credentials, 1, maxCredentialLen, false)
	if err := v.Err(); err != nil {
		return channelBody{}, err
	}
	return body, nil
}
