package meeting

import (
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/valid"
)

func TestMeeting_Validate(t *testing.T) {
	ok := Meeting{Title: "Go", Capacity: 10, Fee: Money{Amount: 0, Currency: "KRW"}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid meeting refused: %v", err)
	}
	tests := []struct {
		name string
		edit func(*Meeting)
		want string
	}{
		{"empty_title", func(m *Meeting) { m.Title = "  " }, "title"},
		{"no_capacity", func(m *Meeting) { m.Capacity = 0 }, "capacity"},
		{"negative_fee", func(m *Meeting) { m.Fee.Amount = -1 }, "fee.amount"},
		{"lowercase_currency", func(m *Meeting) { m.Fee.Currency = "krw" }, "fee.currency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := ok
			tt.edit(&m)
			err := m.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

func TestJoinRequest_Normalize_defaults_and_sorts_channels(t *testing.T) {
	r, err := JoinRequest{UserID: "u1", PaymentToken: "tok"}.Normalize()
	if err != nil || strings.Join(r.Channels, ",") != "email,push,sms" {
		t.Fatalf("default channels = %v, %v", r.Channels, err)
	}
	a, _ := JoinRequest{MeetingID: "m", UserID: "u1", PaymentToken: "tok", Channels: []string{"sms", "email", "sms"}}.Normalize()
	b, _ := JoinRequest{MeetingID: "m", UserID: "u1", PaymentToken: "tok", Channels: []string{"email", "sms"}}.Normalize()
	if a.Hash() != b.Hash() {
		t.Fatal("equal requests hash differently")
	}
	c, _ := JoinRequest{MeetingID: "m", UserID: "u2", PaymentToken: "tok", Channels: []string{"email", "sms"}}.Normalize()
	if a.Hash() == c.Hash() {
		t.Fatal("different users hash the same")
	}
	for _, bad := range []JoinRequest{
		{UserID: "", PaymentToken: "t"},
		{UserID: "has space", PaymentToken: "t"},
		{UserID: "u", PaymentToken: ""},
		{UserID: "u", PaymentToken: "t", Channels: []string{"fax"}},
	} {
		if _, err := bad.Normalize(); err == nil {
			t.Errorf("Normalize(%+v) accepted", bad)
		}
	}
}

func TestJoinID_is_stable_and_tenant_scoped(t *testing.T) {
	if first, again := JoinID("demo", "k1"), JoinID("demo", "k1"); first != again {
		t.Fatal("not stable")
	}
	if JoinID("demo", "k1") == JoinID("acme", "k1") || JoinID("demo", "k1") == JoinID("demo", "k2") {
		t.Fatal("collides across tenants or keys")
	}
	if id := JoinID("demo", "any key / with ? odd chars"); !strings.HasPrefix(id, "j_") || strings.ContainsAny(id, "/?= ") {
		t.Fatalf("not URL-safe: %q", id)
	}
}

func TestCanRefundAt(t *testing.T) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	later := now.Add(time.Hour)
	if (Meeting{}).CanRefundAt(now) {
		t.Error("no deadline: no refunds after confirmation")
	}
	if !(Meeting{CancelDeadline: &later}).CanRefundAt(now) {
		t.Error("before the deadline: refund")
	}
	if (Meeting{CancelDeadline: &now}).CanRefundAt(now) {
		t.Error("at the deadline: no refund")
	}
}

func TestValidate_names_the_field_of_bad_text(t *testing.T) {
	ok := Meeting{Title: "Go", Capacity: 10, Fee: Money{Amount: 0, Currency: "KRW"}}
	for name, title := range map[string]string{"nul": "a\x00b", "newline": "a\nb", "invalid_utf8": "a\xffb", "too_long": strings.Repeat("x", 201)} {
		m := ok
		m.Title = title
		ps, isValid := valid.Problems(m.Validate())
		if !isValid || len(ps) != 1 || ps[0].Field != "title" {
			t.Errorf("%s: problems %+v, want one naming title", name, ps)
		}
	}
	for name, r := range map[string]struct {
		req   JoinRequest
		field string
	}{
		"user_nul":    {JoinRequest{UserID: "a\x00b", PaymentToken: "tok"}, "user_id"},
		"token_nul":   {JoinRequest{UserID: "u", PaymentToken: "t\x00k"}, "payment_token"},
		"token_space": {JoinRequest{UserID: "u", PaymentToken: "t k"}, "payment_token"},
		"token_long":  {JoinRequest{UserID: "u", PaymentToken: strings.Repeat("t", 257)}, "payment_token"},
		"channel_nul": {JoinRequest{UserID: "u", PaymentToken: "tok", Channels: []string{"sms\x00"}}, "channels"},
	} {
		_, err := r.req.Normalize()
		ps, isValid := valid.Problems(err)
		if !isValid || len(ps) != 1 || ps[0].Field != r.field {
			t.Errorf("%s: problems %+v, want one naming %s", name, ps, r.field)
		}
	}
}
