package meeting

import (
	"strings"
	"testing"
	"time"
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
	if JoinID("demo", "k1") != JoinID("demo", "k1") {
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
