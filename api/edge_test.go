package api

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/testenv"
)

const (
	aUUID   = "177f30f0-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
	urnUUID = "urn:uuid:" + aUUID
	upUUID  = "177F30F0-1C2D-4E5F-8A9B-0C1D2E3F4A5B"
	aJoinID = "j_abcdefghijklmnopqrstuvwxyz"
)

// edgeRequest sends one request to h with demo-key and the headers given.
func edgeRequest(h http.Handler, method, path, body string, headers map[string]string) (*httptest.ResponseRecorder, errorBody) {
	req := httptest.NewRequest(method, "http://sagaflow.test/", strings.NewReader(body))
	req.URL.Path = path // set after parsing, so a path may carry any byte
	req.URL.RawPath = ""
	req.Header.Set("Authorization", "Bearer demo-key")
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header[k] = []string{v}
	}
	return serve(h, req)
}

const (
	okMeeting = `{"title":"Go meetup","capacity":10,"fee":{"amount":1000,"currency":"KRW"}}`
	okProduct = `{"name":"Mug","price":{"amount":1200,"currency":"KRW"},"stock":3,"attributes":{"color":"blue"}}`
	okChannel = `{"market":"shopwave","credentials":"secret"}`
)

// okCampaign is a valid campaign body: open now, for a day.
var okCampaign = `{"name":"Black Friday","stock":10,"starts_at":"` + time.Now().UTC().Format(time.RFC3339) +
	`","ends_at":"` + time.Now().UTC().Add(24*time.Hour).Format(time.RFC3339) + `"}`

var idem = map[string]string{"Idempotency-Key": "key-1"}

// Every route, every field that flows anywhere: a bad value is a 400 that
// names the field, and nothing reaches a store.
func TestAPI_edge_refuses_bad_text_with_a_400_naming_the_field(t *testing.T) {
	testenv.Chaos(t, "2, 11. NUL, controls, invalid UTF-8, huge text, urn:uuid ids, odd headers on every route", "a 400 naming the field; no store is called")
	t.Parallel()
	long := strings.Repeat("x", 300)
	tests := []struct {
		name, method, path, body string
		headers                  map[string]string
		field                    string
	}{
		// POST /v1/meetings
		{"meeting_title_nul", "POST", "/v1/meetings", `{"title":"a\u0000b","capacity":1,"fee":{"amount":0,"currency":"KRW"}}`, nil, "title"},
		{"meeting_title_escape_char", "POST", "/v1/meetings", `{"title":"a\u001b[31mb","capacity":1,"fee":{"amount":0,"currency":"KRW"}}`, nil, "title"},
		{"meeting_title_newline", "POST", "/v1/meetings", `{"title":"a\nb","capacity":1,"fee":{"amount":0,"currency":"KRW"}}`, nil, "title"},
		{"meeting_title_bidi_override", "POST", "/v1/meetings", `{"title":"a\u202eb","capacity":1,"fee":{"amount":0,"currency":"KRW"}}`, nil, "title"},
		{"meeting_title_huge", "POST", "/v1/meetings", `{"title":"` + long + `","capacity":1,"fee":{"amount":0,"currency":"KRW"}}`, nil, "title"},
		{"meeting_invalid_utf8", "POST", "/v1/meetings", "{\"title\":\"a\xffb\",\"capacity\":1,\"fee\":{\"amount\":0,\"currency\":\"KRW\"}}", nil, "body"},
		{"meeting_fee_currency_nul", "POST", "/v1/meetings", `{"title":"t","capacity":1,"fee":{"amount":0,"currency":"KR\u0000"}}`, nil, "fee.currency"},
		{"meeting_fee_amount_huge", "POST", "/v1/meetings", `{"title":"t","capacity":1,"fee":{"amount":100000000000000,"currency":"KRW"}}`, nil, "fee.amount"},
		{"meeting_capacity_wrong_type", "POST", "/v1/meetings", `{"title":"t","capacity":"ten","fee":{"amount":0,"currency":"KRW"}}`, nil, "capacity"},
		{"meeting_unknown_field", "POST", "/v1/meetings", `{"title":"t","capacity":1,"fee":{"amount":0,"currency":"KRW"},"x\u0000":1}`, nil, "body"},
		{"meeting_trailing_garbage", "POST", "/v1/meetings", okMeeting + `garbage`, nil, "body"},
		{"meeting_not_an_object", "POST", "/v1/meetings", `[1,2]`, nil, "body"},
		{"meeting_empty_body", "POST", "/v1/meetings", ``, nil, "body"},
		{"meeting_id_urn", "GET", "/v1/meetings/" + urnUUID, "", nil, "id"},
		{"meeting_id_uppercase", "GET", "/v1/meetings/" + upUUID, "", nil, "id"},
		{"meeting_id_nul", "GET", "/v1/meetings/a\x00b", "", nil, "id"},
		{"close_meeting_id_urn", "POST", "/v1/meetings/" + urnUUID + "/close", "", nil, "id"},
		// POST /v1/meetings/{id}/joins
		{"join_meeting_id_urn", "POST", "/v1/meetings/" + urnUUID + "/joins", `{"user_id":"u","payment_token":"tok"}`, idem, "id"},
		{"join_no_idempotency_key", "POST", "/v1/meetings/" + aUUID + "/joins", `{"user_id":"u","payment_token":"tok"}`, nil, "header Idempotency-Key"},
		{"join_idempotency_key_space", "POST", "/v1/meetings/" + aUUID + "/joins", `{"user_id":"u","payment_token":"tok"}`, map[string]string{"Idempotency-Key": "a b"}, "header Idempotency-Key"},
		{"join_idempotency_key_control", "POST", "/v1/meetings/" + aUUID + "/joins", `{"user_id":"u","payment_token":"tok"}`, map[string]string{"Idempotency-Key": "a\x01b"}, "header Idempotency-Key"},
		{"join_idempotency_key_non_ascii", "POST", "/v1/meetings/" + aUUID + "/joins", `{"user_id":"u","payment_token":"tok"}`, map[string]string{"Idempotency-Key": "열쇠"}, "header Idempotency-Key"},
		{"join_idempotency_key_huge", "POST", "/v1/meetings/" + aUUID + "/joins", `{"user_id":"u","payment_token":"tok"}`, map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}, "header Idempotency-Key"},
		{"join_user_nul", "POST", "/v1/meetings/" + aUUID + "/joins", `{"user_id":"a\u0000b","payment_token":"tok"}`, idem, "user_id"},
		{"join_payment_token_nul", "POST", "/v1/meetings/" + aUUID + "/joins", `{"user_id":"u","payment_token":"t\u0000k"}`, idem, "payment_token"},
		{"join_payment_token_huge", "POST", "/v1/meetings/" + aUUID + "/joins", `{"user_id":"u","payment_token":"` + long + `"}`, idem, "payment_token"},
		{"join_channel_nul", "POST", "/v1/meetings/" + aUUID + "/joins", `{"user_id":"u","payment_token":"tok","channels":["sms\u0000"]}`, idem, "channels"},
		{"join_invalid_utf8", "POST", "/v1/meetings/" + aUUID + "/joins", "{\"user_id\":\"\xc3\",\"payment_token\":\"tok\"}", idem, "body"},
		{"get_join_id_uuid", "GET", "/v1/joins/" + aUUID, "", nil, "id"},
		{"get_join_id_uppercase", "GET", "/v1/joins/" + strings.ToUpper(aJoinID), "", nil, "id"},
		{"cancel_join_id_nul", "POST", "/v1/joins/j_\x00/cancel", "", nil, "id"},
		// campaigns and coupons
		{"campaign_name_nul", "POST", "/v1/campaigns", `{"name":"a\u0000b","stock":1,"starts_at":"2026-01-01T00:00:00Z","ends_at":"2999-01-01T00:00:00Z"}`, nil, "name"},
		{"campaign_name_huge", "POST", "/v1/campaigns", `{"name":"` + long + `","stock":1,"starts_at":"2026-01-01T00:00:00Z","ends_at":"2999-01-01T00:00:00Z"}`, nil, "name"},
		{"campaign_stock_wrong_type", "POST", "/v1/campaigns", `{"name":"n","stock":"1","starts_at":"2026-01-01T00:00:00Z","ends_at":"2999-01-01T00:00:00Z"}`, nil, "stock"},
		{"campaign_invalid_utf8", "POST", "/v1/campaigns", "{\"name\":\"\xfe\",\"stock\":1}", nil, "body"},
		{"campaign_id_urn", "GET", "/v1/campaigns/" + urnUUID, "", nil, "id"},
		{"coupon_request_user_nul", "POST", "/v1/campaigns/" + aUUID + "/requests", `{"user_id":"a\u0000b"}`, nil, "user_id"},
		{"coupon_request_user_space", "POST", "/v1/campaigns/" + aUUID + "/requests", `{"user_id":"a b"}`, nil, "user_id"},
		{"coupon_request_user_huge", "POST", "/v1/campaigns/" + aUUID + "/requests", `{"user_id":"` + long + `"}`, nil, "user_id"},
		{"coupon_request_user_missing", "POST", "/v1/campaigns/" + aUUID + "/requests", `{}`, nil, "user_id"},
		{"coupon_request_user_number", "POST", "/v1/campaigns/" + aUUID + "/requests", `{"user_id":5}`, nil, "user_id"},
		{"coupon_request_invalid_utf8", "POST", "/v1/campaigns/" + aUUID + "/requests", "{\"user_id\":\"a\xffb\"}", nil, "body"},
		{"coupon_request_campaign_urn", "POST", "/v1/campaigns/" + urnUUID + "/requests", `{"user_id":"u"}`, nil, "id"},
		{"coupon_get_user_nul", "GET", "/v1/campaigns/" + aUUID + "/coupons/a\x00b", "", nil, "user_id"},
		{"coupon_get_campaign_urn", "GET", "/v1/campaigns/" + urnUUID + "/coupons/u", "", nil, "id"},
		// products
		{"product_name_nul", "PUT", "/v1/products/SKU-1", `{"name":"a\u0000b","price":{"amount":1,"currency":"KRW"},"stock":1}`, nil, "name"},
		{"product_name_huge", "PUT", "/v1/products/SKU-1", `{"name":"` + long + `","price":{"amount":1,"currency":"KRW"},"stock":1}`, nil, "name"},
		{"product_attribute_key_nul", "PUT", "/v1/products/SKU-1", `{"name":"n","price":{"amount":1,"currency":"KRW"},"stock":1,"attributes":{"a\u0000":"x"}}`, nil, "attributes"},
		{"product_attribute_value_control", "PUT", "/v1/products/SKU-1", `{"name":"n","price":{"amount":1,"currency":"KRW"},"stock":1,"attributes":{"color":"b\u0007"}}`, nil, "attributes[color]"},
		{"product_invalid_utf8", "PUT", "/v1/products/SKU-1", "{\"name\":\"\xff\",\"price\":{\"amount\":1,\"currency\":\"KRW\"},\"stock\":1}", nil, "body"},
		{"product_price_missing", "PUT", "/v1/products/SKU-1", `{"name":"n","stock":1}`, nil, "price"},
		{"product_amount_wrong_type", "PUT", "/v1/products/SKU-1", `{"name":"n","price":{"amount":"1","currency":"KRW"},"stock":1}`, nil, "price.amount"},
		{"product_sku_space", "PUT", "/v1/products/a b", okProduct, nil, "sku"},
		{"product_sku_nul", "PUT", "/v1/products/a\x00b", okProduct, nil, "sku"},
		{"get_product_sku_bad", "GET", "/v1/products/a\x00b", "", nil, "sku"},
		{"product_sync_sku_bad", "GET", "/v1/products/" + long + "/sync", "", nil, "sku"},
		// channels, parking lot, workflows, probes
		{"channel_credentials_nul", "POST", "/v1/channels", `{"market":"shopwave","credentials":"s\u0000"}`, nil, "credentials"},
		{"channel_credentials_newline", "POST", "/v1/channels", `{"market":"shopwave","credentials":"s\r\nX-Evil: 1"}`, nil, "credentials"},
		{"channel_base_url_control", "POST", "/v1/channels", `{"market":"shopwave","base_url":"http://a/\u0000","credentials":"s"}`, nil, "base_url"},
		{"channel_market_nul", "POST", "/v1/channels", `{"market":"shop\u0000wave","credentials":"s"}`, nil, "market"},
		{"channel_rate_wrong_type", "POST", "/v1/channels", `{"market":"shopwave","credentials":"s","rate_limit_per_sec":"fast"}`, nil, "rate_limit_per_sec"},
		{"delete_channel_urn", "DELETE", "/v1/channels/" + urnUUID, "", nil, "id"},
		{"dlq_limit_not_a_number", "GET", "/v1/dlq?limit=ten", "", nil, "limit"},
		{"dlq_retry_urn", "POST", "/v1/dlq/" + urnUUID + "/retry", "", nil, "id"},
		{"dlq_discard_uppercase", "POST", "/v1/dlq/" + upUUID + "/discard", "", nil, "id"},
		{"workflow_id_nul", "GET", "/v1/workflows/demo:probe:\x00", "", nil, "id"},
		{"probe_unknown_field", "POST", "/v1/probes", `{"x":1}`, nil, "body"},
		{"probe_invalid_utf8", "POST", "/v1/probes", "{\"\xff\":1}", nil, "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, s, _ := newEdgeHandler(t)
			path, query, _ := strings.Cut(tt.path, "?")
			rec, e := edgeRequestQuery(h, tt.method, path, query, tt.body, tt.headers)
			if rec.Code != http.StatusBadRequest || e.Error.Code != "bad_request" {
				t.Fatalf("%s %q = %d %s, want 400 bad_request", tt.method, tt.path, rec.Code, rec.Body)
			}
			var fields []string
			for _, p := range e.Error.Fields {
				fields = append(fields, p.Field)
			}
			if !slices.Contains(fields, tt.field) {
				t.Fatalf("%s %q: fields %v, want %q named (%s)", tt.method, tt.path, fields, tt.field, rec.Body)
			}
			if n := s.calls.Load(); n != 0 {
				t.Fatalf("a bad input reached a store (%d calls)", n)
			}
		})
	}
}

func edgeRequestQuery(h http.Handler, method, path, query, body string, headers map[string]string) (*httptest.ResponseRecorder, errorBody) {
	if query == "" {
		return edgeRequest(h, method, path, body, headers)
	}
	req := httptest.NewRequest(method, "http://sagaflow.test"+path+"?"+query, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer demo-key")
	return serve(h, req)
}

// The good inputs of the same routes still pass the edge.
func TestAPI_edge_lets_good_input_through(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, method, path, body string
		headers                  map[string]string
		status                   int
	}{
		{"meeting", "POST", "/v1/meetings", okMeeting, nil, http.StatusCreated},
		{"meeting_korean_title", "POST", "/v1/meetings", `{"title":"고 모임 ☕","capacity":1,"fee":{"amount":0,"currency":"KRW"}}`, nil, http.StatusCreated},
		{"get_meeting", "GET", "/v1/meetings/" + aUUID, "", nil, http.StatusNotFound},
		{"join", "POST", "/v1/meetings/" + aUUID + "/joins", `{"user_id":"u@x.io","payment_token":"tok_ok"}`, idem, http.StatusNotFound},
		{"get_join", "GET", "/v1/joins/" + aJoinID, "", nil, http.StatusNotFound},
		{"campaign", "POST", "/v1/campaigns", okCampaign, nil, http.StatusCreated},
		{"coupon_request", "POST", "/v1/campaigns/" + aUUID + "/requests", `{"user_id":"run-u1"}`, nil, http.StatusAccepted},
		{"coupon_get", "GET", "/v1/campaigns/" + aUUID + "/coupons/run-u1", "", nil, http.StatusNotFound},
		{"product", "PUT", "/v1/products/SKU-1", okProduct, nil, http.StatusCreated},
		{"product_empty_attribute_value", "PUT", "/v1/products/SKU-1", `{"name":"n","price":{"amount":1,"currency":"KRW"},"stock":1,"attributes":{"note":""}}`, nil, http.StatusCreated},
		{"get_product", "GET", "/v1/products/SKU-1", "", nil, http.StatusNotFound},
		{"delete_channel", "DELETE", "/v1/channels/" + aUUID, "", nil, http.StatusNotFound},
		{"dlq_retry", "POST", "/v1/dlq/" + aUUID + "/retry", "", nil, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, _, _ := newEdgeHandler(t)
			rec, _ := edgeRequest(h, tt.method, tt.path, tt.body, tt.headers)
			if rec.Code != tt.status {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, rec.Code, rec.Body, tt.status)
			}
		})
	}
}
