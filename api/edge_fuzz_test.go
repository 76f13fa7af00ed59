package api

import (
	"errors"
	"slices"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/valid"
)

// The fuzz targets of every body decoder (`make fuzz` runs each for a few
// seconds; seeds in testdata/fuzz/). The property of each: it never panics;
// what it refuses it refuses with a *valid.Error that names a field; what it
// accepts passes the domain's validation and carries no NUL, no other
// control character and no invalid UTF-8 anywhere.

// cleanText: valid UTF-8 without control characters.
func cleanText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.Is(unicode.Cc, r) {
			return false
		}
	}
	return true
}

// refusedWithFields fails the target unless err names at least one field.
func refusedWithFields(t *testing.T, err error) {
	t.Helper()
	ps, ok := valid.Problems(err)
	if !ok || len(ps) == 0 || !errors.Is(err, valid.ErrInvalid) {
		t.Fatalf("refused without naming a field: %v", err)
	}
	for _, p := range ps {
		if p.Field == "" || !cleanText(p.Field) || !cleanText(p.Message) {
			t.Fatalf("problem %q: %q is not clean text", p.Field, p.Message)
		}
	}
}

func seed(f *testing.F, bodies ...string) {
	for _, b := range bodies {
		f.Add([]byte(b))
	}
}

func FuzzParseCreateMeeting(f *testing.F) {
	seed(f, okMeeting, `{"title":"a\u0000b","capacity":1,"fee":{"amount":0,"currency":"KRW"}}`,
		`{"title":"t","capacity":1,"fee":{"amount":0,"currency":"KRW"},"cancel_deadline":"2026-12-01T09:00:00Z"}`, "{\"title\":\"\xff\"}", `{} {}`)
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := parseCreateMeeting(raw)
		if err != nil {
			refusedWithFields(t, err)
			return
		}
		if err := m.Validate(); err != nil || !cleanText(m.Title) || !cleanText(m.Fee.Currency) {
			t.Fatalf("accepted %+v: %v", m, err)
		}
	})
}

func FuzzParseJoin(f *testing.F) {
	seed(f, `{"user_id":"u@x.io","payment_token":"tok_ok"}`, `{"user_id":"u","payment_token":"tok","channels":["sms","email","sms"]}`,
		`{"user_id":"a\u0000b","payment_token":"tok"}`, `{"user_id":"u","payment_token":"t k"}`)
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := parseJoin(raw, aUUID)
		if err != nil {
			refusedWithFields(t, err)
			return
		}
		again, err := r.Normalize()
		if err != nil || again.Hash() != r.Hash() {
			t.Fatalf("accepted %+v does not normalize to itself: %v", r, err)
		}
		texts := append([]string{r.UserID, r.PaymentToken}, r.Channels...)
		for _, s := range texts {
			if !cleanText(s) || s == "" {
				t.Fatalf("accepted %+v with text %q", r, s)
			}
		}
		for _, c := range r.Channels {
			if !slices.Contains(meeting.Channels, c) {
				t.Fatalf("accepted channel %q", c)
			}
		}
	})
}

func FuzzParseCreateCampaign(f *testing.F) {
	seed(f, `{"name":"Black Friday","stock":10,"starts_at":"2026-12-01T00:00:00Z","ends_at":"2026-12-02T00:00:00Z"}`,
		`{"name":"a\u0000b","stock":1,"starts_at":"2026-12-01T00:00:00Z","ends_at":"2026-12-02T00:00:00Z"}`,
		`{"name":"n","stock":"1"}`, `{"starts_at":"tomorrow"}`)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := parseCreateCampaign(raw, now)
		if err != nil {
			refusedWithFields(t, err)
			return
		}
		if err := c.Validate(now); err != nil || !cleanText(c.Name) {
			t.Fatalf("accepted %+v: %v", c, err)
		}
	})
}

func FuzzParseCouponRequest(f *testing.F) {
	seed(f, `{"user_id":"run-u1"}`, `{"user_id":"a\u0000b"}`, `{"user_id":"a b"}`, `{"user_id":5}`, `{"user_id":"u"}x`)
	f.Fuzz(func(t *testing.T, raw []byte) {
		user, err := parseCouponRequest(raw)
		if err != nil {
			refusedWithFields(t, err)
			return
		}
		if !valid.IsToken(user) || len(user) > MaxCouponUserLen {
			t.Fatalf("accepted user %q", user)
		}
	})
}

// FuzzParseProduct is the property of the first point: any product
// the API accepts yields an envelope that ParseChange, the ingest's rule,
// accepts, with the trace id the API derives.
func FuzzParseProduct(f *testing.F) {
	for _, b := range []string{okProduct, `{"name":"a\u0000b","price":{"amount":1,"currency":"KRW"},"stock":1}`,
		`{"name":"<&>","price":{"amount":1,"currency":"USD"},"stock":0,"attributes":{"<":"&&&"}}`,
		`{"name":"n","price":{"amount":1,"currency":"KRW"},"stock":1,"attributes":{"a\u0000":"x"}}`} {
		f.Add([]byte(b), "SKU-1")
	}
	f.Add([]byte(okProduct), "a b")
	f.Fuzz(func(t *testing.T, raw []byte, sku string) {
		if !catalog.ValidSKU(sku) {
			sku = "SKU-1" // the path parameter is checked before the body
		}
		p, err := parseProduct(raw, sku)
		if err != nil {
			refusedWithFields(t, err)
			return
		}
		if err := p.Validate(); err != nil || !cleanText(p.Name) {
			t.Fatalf("accepted %+v: %v", p, err)
		}
		for k, v := range p.Attributes {
			if !cleanText(k) || !cleanText(v) {
				t.Fatalf("accepted attribute %q=%q", k, v)
			}
		}
		if _, _, err := catalog.ParseChange(envelopeOf(t, "demo", p, newTraceID()), catalog.RoutingKey("demo")); err != nil {
			t.Fatalf("accepted %+v, but the ingest would dead-letter its change: %v", p, err)
		}
	})
}

func FuzzParseChannel(f *testing.F) {
	seed(f, okChannel, `{"market":"shopwave","base_url":"http://127.0.0.1:8093","credentials":"s","rate_limit_per_sec":5}`,
		`{"market":"shopwave","credentials":"s\r\nX: y"}`, `{"market":"shop\u0000wave","credentials":"s"}`)
	f.Fuzz(func(t *testing.T, raw []byte) {
		b, err := parseChannel(raw)
		if err != nil {
			refusedWithFields(t, err)
			return
		}
		for _, s := range []string{b.Market, b.BaseURL, b.Credentials} {
			if !cleanText(s) {
				t.Fatalf("accepted %+v with text %q", b, s)
			}
		}
	})
}

func FuzzTraceIDFromParent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")
	f.Add("my trace")
	f.Fuzz(func(t *testing.T, h string) {
		id, ok := traceIDFromParent(h)
		if ok && (!isW3CTraceID(id) || !catalog.ValidTraceID(id)) {
			t.Fatalf("traceparent %q gave trace id %q", h, id)
		}
	})
}
