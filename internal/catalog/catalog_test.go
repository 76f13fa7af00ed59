package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/valid"
)

func validProduct() Product {
	return Product{SKU: "SKU-1", Name: "Mug", Price: Money{Amount: 15000, Currency: "KRW"}, Stock: 3,
		Attributes: map[string]string{"color": "white"}, Version: 1}
}

func TestProduct_Validate(t *testing.T) {
	cases := []struct {
		name string
		edit func(*Product)
		// wantFields are the fields the error names, in order; none: valid.
		wantFields []string
	}{
		{"valid", func(*Product) {}, nil},
		{"sku_with_space", func(p *Product) { p.SKU = "a b" }, []string{"sku"}},
		{"sku_too_long", func(p *Product) { p.SKU = strings.Repeat("a", 65) }, []string{"sku"}},
		{"empty_name", func(p *Product) { p.Name = "  " }, []string{"name"}},
		{"name_of_200_runes", func(p *Product) { p.Name = strings.Repeat("가", 200) }, nil},
		{"name_of_201_runes", func(p *Product) { p.Name = strings.Repeat("가", 201) }, []string{"name"}},
		{"name_with_nul", func(p *Product) { p.Name = "a\x00b" }, []string{"name"}},
		{"name_with_newline", func(p *Product) { p.Name = "a\nb" }, []string{"name"}},
		{"name_invalid_utf8", func(p *Product) { p.Name = "a\xffb" }, []string{"name"}},
		{"unknown_currency", func(p *Product) { p.Price.Currency = "GBP" }, []string{"price.currency"}},
		{"negative_amount", func(p *Product) { p.Price.Amount = -1 }, []string{"price.amount"}},
		{"negative_stock", func(p *Product) { p.Stock = -1 }, []string{"stock"}},
		{"empty_attribute_name", func(p *Product) { p.Attributes[""] = "x" }, []string{"attributes"}},
		{"attribute_name_with_nul", func(p *Product) { p.Attributes["a\x00"] = "x" }, []string{"attributes"}},
		{"attribute_value_with_control", func(p *Product) { p.Attributes["color"] = "wh\x1bite" }, []string{"attributes[color]"}},
		{"attribute_value_invalid_utf8", func(p *Product) { p.Attributes["color"] = "\xc3" }, []string{"attributes[color]"}},
		{"attribute_value_of_201_bytes", func(p *Product) { p.Attributes["color"] = strings.Repeat("x", 201) }, []string{"attributes[color]"}},
		{"empty_attribute_value", func(p *Product) { p.Attributes["color"] = "" }, nil},
		{"attributes_that_escape_past_the_envelope_limit", func(p *Product) {
			for i := range MaxAttributes {
				p.Attributes[fmt.Sprintf("%s%02d", strings.Repeat("<", maxAttributeName-2), i)] = strings.Repeat("&", MaxAttributeLen)
			}
			delete(p.Attributes, "color")
		}, []string{"attributes"}},
		{"several_problems_named_together", func(p *Product) { p.Stock, p.Price.Currency = -1, "" }, []string{"price.currency", "stock"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := validProduct()
			tc.edit(&p)
			err := p.Validate()
			if tc.wantFields == nil {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			ps, ok := valid.Problems(err)
			if !errors.Is(err, ErrInvalid) || !ok {
				t.Fatalf("want a *valid.Error, got %v", err)
			}
			var fields []string
			for _, pr := range ps {
				fields = append(fields, pr.Field)
			}
			if !slices.Equal(fields, tc.wantFields) {
				t.Fatalf("fields %v, want %v (%v)", fields, tc.wantFields, err)
			}
		})
	}
}

func envelope(t *testing.T, edit func(map[string]any)) []byte {
	t.Helper()
	p, err := json.Marshal(validProduct())
	if err != nil {
		t.Fatal(err)
	}
	e := map[string]any{
		"message_id": "m-1", "tenant_id": "demo", "type": TypeProductChanged,
		"occurred_at": time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC), "trace_id": "t-1", "payload": json.RawMessage(p),
	}
	edit(e)
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseChange(t *testing.T) {
	cases := []struct {
		name       string
		body       func(t *testing.T) []byte
		routingKey string
		wantField  string // the field the error names
	}{
		{"valid", func(t *testing.T) []byte { return envelope(t, func(map[string]any) {}) }, "product.changed.demo", ""},
		{"not_json", func(*testing.T) []byte { return []byte("{oops") }, "product.changed.demo", "body"},
		{"routing_key_of_another_tenant", func(t *testing.T) []byte { return envelope(t, func(map[string]any) {}) }, "product.changed.acme", "routing_key"},
		{"wrong_type", func(t *testing.T) []byte { return envelope(t, func(e map[string]any) { e["type"] = "order.placed" }) }, "product.changed.demo", "type"},
		{"no_message_id", func(t *testing.T) []byte { return envelope(t, func(e map[string]any) { delete(e, "message_id") }) }, "product.changed.demo", "message_id"},
		{"no_occurred_at", func(t *testing.T) []byte { return envelope(t, func(e map[string]any) { delete(e, "occurred_at") }) }, "product.changed.demo", "occurred_at"},
		{"no_payload", func(t *testing.T) []byte { return envelope(t, func(e map[string]any) { delete(e, "payload") }) }, "product.changed.demo", "payload"},
		{"payload_not_a_product", func(t *testing.T) []byte {
			return envelope(t, func(e map[string]any) { e["payload"] = json.RawMessage(`[1,2]`) })
		}, "product.changed.demo", "payload"},
		{"payload_without_version", func(t *testing.T) []byte {
			return envelope(t, func(e map[string]any) {
				p := validProduct()
				p.Version = 0
				b, _ := json.Marshal(p)
				e["payload"] = json.RawMessage(b)
			})
		}, "product.changed.demo", "payload.version"},
		{"invalid_product", func(t *testing.T) []byte {
			return envelope(t, func(e map[string]any) {
				p := validProduct()
				p.Stock = -5
				b, _ := json.Marshal(p)
				e["payload"] = json.RawMessage(b)
			})
		}, "product.changed.demo", "payload.stock"},
		{"tenant_not_a_name", func(t *testing.T) []byte { return envelope(t, func(e map[string]any) { e["tenant_id"] = "../x" }) }, "product.changed.../x", "tenant_id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, p, err := ParseChange(tc.body(t), tc.routingKey)
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				if e.MessageID != "m-1" || p.SKU != "SKU-1" || p.Version != 1 {
					t.Fatalf("parsed %+v %+v", e, p)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !hasField(err, tc.wantField) {
				t.Fatalf("want an error naming %q, got %v", tc.wantField, err)
			}
		})
	}
}

// FuzzParseChange: no input panics, and what passes is a valid product of
// the tenant the routing key names.
func FuzzParseChange(f *testing.F) {
	f.Add([]byte(`{"message_id":"m","tenant_id":"demo","type":"product.changed","occurred_at":"2026-01-01T00:00:00Z","payload":{"sku":"A","name":"n","price":{"amount":1,"currency":"KRW"},"stock":1,"version":1}}`), "product.changed.demo")
	f.Add([]byte(`{}`), "")
	f.Add([]byte(`null`), "product.changed.x")
	f.Add([]byte(`{"payload":null}`), "product.changed.demo")
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		e, p, err := ParseChange(body, key)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if p.Validate() != nil || p.Version < 1 || key != RoutingKey(e.TenantID) {
			t.Fatalf("accepted an invalid change: %+v %+v (key %q)", e, p, key)
		}
	})
}

func TestShard_is_stable_and_in_range(t *testing.T) {
	counts := make([]int, 8)
	for i := range 8000 {
		s := Shard("SKU-"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('0'+i%10))+string(rune(i)), 8)
		if s < 0 || s >= 8 {
			t.Fatalf("shard %d out of range", s)
		}
		counts[s]++
	}
	if first, again := Shard("SKU-1", 8), Shard("SKU-1", 8); first != again || Shard("SKU-1", 1) != 0 || Shard("SKU-1", 0) != 0 {
		t.Fatal("shard is not stable")
	}
	for i, n := range counts {
		if n == 0 {
			t.Errorf("shard %d never used: %v", i, counts)
		}
	}
}

func TestChannel_Validate(t *testing.T) {
	markets := []string{"bazaar", "shopwave", "souk"}
	dev := ChannelPolicy{AllowHTTP: true, Hosts: map[string][]string{"souk": {"127.0.0.1:8094"}}}
	ok := Channel{Market: "souk", BaseURL: "http://127.0.0.1:8094", Credentials: "tok", RateLimitPerSec: 10}
	if err := ok.Validate(markets, dev); err != nil {
		t.Fatal(err)
	}
	bad := Channel{Market: "ebay", BaseURL: "ftp://x", Credentials: "", RateLimitPerSec: 0}
	err := bad.Validate(markets, dev)
	for _, want := range []string{"market", "base_url", "credentials", "rate_limit_per_sec"} {
		if !hasField(err, want) {
			t.Errorf("want an error naming %s, got %v", want, err)
		}
	}
}

func hasField(err error, field string) bool {
	ps, _ := valid.Problems(err)
	for _, p := range ps {
		if p.Field == field {
			return true
		}
	}
	return false
}

// Every base_url that is more than scheme, host and port, or names a host
// the market does not allow, or is http outside dev, is a 400 naming
// base_url.
func TestChannel_Validate_base_url(t *testing.T) {
	markets := []string{"bazaar", "shopwave", "souk"}
	prod := ChannelPolicy{Hosts: map[string][]string{"shopwave": {"api.shopwave.example", "eu.shopwave.example:8443"}}}
	dev := ChannelPolicy{AllowHTTP: true, Hosts: map[string][]string{"shopwave": {"127.0.0.1:8093"}}}
	tests := []struct {
		name   string
		policy ChannelPolicy
		url    string
		ok     bool
	}{
		{"https_allowed_host", prod, "https://api.shopwave.example", true},
		{"https_allowed_host_slash", prod, "https://api.shopwave.example/", true},
		{"https_allowed_host_default_port", prod, "https://api.shopwave.example:443", true},
		{"https_allowed_host_case", prod, "https://API.Shopwave.example", true},
		{"https_allowed_host_port", prod, "https://eu.shopwave.example:8443", true},
		{"dev_simulator", dev, "http://127.0.0.1:8093", true},
		{"empty", prod, "", false},
		{"http_outside_dev", prod, "http://api.shopwave.example", false},
		{"host_not_allowed", prod, "https://evil.example", false},
		{"allowed_host_other_port", prod, "https://api.shopwave.example:8443", false},
		{"port_of_another_entry", prod, "https://eu.shopwave.example", false},
		{"loopback_outside_dev", prod, "https://127.0.0.1", false},
		{"metadata_ip", prod, "https://169.254.169.254", false},
		{"private_ip", prod, "https://10.0.0.1", false},
		{"ipv6_loopback", prod, "https://[::1]:443", false},
		{"dev_other_host", dev, "http://10.1.2.3:8093", false},
		{"dev_other_port", dev, "http://127.0.0.1:22", false},
		{"path", prod, "https://api.shopwave.example/v2", false},
		{"path_with_question_mark", prod, "https://api.shopwave.example/x?", false},
		{"empty_query", prod, "https://api.shopwave.example?", false},
		{"query", prod, "https://api.shopwave.example/?a=b", false},
		{"fragment", prod, "https://api.shopwave.example#x", false},
		{"userinfo", prod, "https://user:pw@api.shopwave.example", false},
		{"user_only", prod, "https://user@api.shopwave.example", false},
		{"ftp", prod, "ftp://api.shopwave.example", false},
		{"no_scheme", prod, "api.shopwave.example", false},
		{"no_host", prod, "https://", false},
		{"port_only", prod, "https://:443", false},
		{"bad_port", prod, "https://api.shopwave.example:99999", false},
		{"encoded_path", prod, "https://api.shopwave.example/%2e%2e", false},
		{"opaque", prod, "https:api.shopwave.example", false},
		{"control_char", prod, "https://api.shopwave.example/\n", false},
		{"backslash_trick", prod, "https://api.shopwave.example\\@evil.example", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := Channel{Market: "shopwave", BaseURL: tt.url, Credentials: "tok", RateLimitPerSec: 10}
			err := ch.Validate(markets, tt.policy)
			if tt.ok {
				if err != nil {
					t.Fatalf("Validate(%q) = %v", tt.url, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !hasField(err, "base_url") {
				t.Fatalf("Validate(%q) = %v, want a problem with base_url", tt.url, err)
			}
		})
	}
}
