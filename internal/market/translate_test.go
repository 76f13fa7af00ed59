package market

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sagaflow/sagaflow/internal/catalog"
)

// product returns a valid product priced amount minor units of currency.
func product(currency string, amount int64) catalog.Product {
	return catalog.Product{
		SKU:        "SKU-1",
		Name:       "Linen shirt",
		Price:      catalog.Money{Amount: amount, Currency: currency},
		Stock:      5,
		Attributes: map[string]string{"size": "M", "color": "white"},
		Version:    3,
	}
}

func withName(p catalog.Product, name string) catalog.Product { p.Name = name; return p }

func withStock(p catalog.Product, stock int64) catalog.Product { p.Stock = stock; return p }

func withVersion(p catalog.Product, v int64) catalog.Product { p.Version = v; return p }

func withAttributes(p catalog.Product, n int) catalog.Product {
	p.Attributes = map[string]string{}
	for i := range n {
		p.Attributes[fmt.Sprintf("attr%02d", i)] = fmt.Sprintf("v%d", i)
	}
	return p
}

// wantRejected checks that err is an ErrUnsupported naming reason.
func wantRejected(t *testing.T, err error, reason string) {
	t.Helper()
	if !errors.Is(err, ErrUnsupported) || !IsPermanent(err) {
		t.Fatalf("error %v, want one wrapping ErrUnsupported", err)
	}
	if !strings.Contains(err.Error(), reason) {
		t.Fatalf("error %q does not say %q", err, reason)
	}
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		n    int
		want string
	}{
		{"short_kept", "abc", 5, "abc"},
		{"exact_length_kept", "abcde", 5, "abcde"},
		{"long_cut_with_ellipsis", "abcdefgh", 5, "abcd…"},
		{"runes_not_bytes", "가나다라마바", 4, "가나다…"},
		{"trailing_space_trimmed_before_ellipsis", "ab  cdefgh", 5, "ab…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := truncate(tt.in, tt.n)
			if got != tt.want || utf8.RuneCountInString(got) > tt.n {
				t.Fatalf("truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
		})
	}
}

func TestTranslateShopwave(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("가", 200)
	tests := []struct {
		name    string
		in      catalog.Product
		wantErr string
		check   func(t *testing.T, l shopwaveListing)
	}{
		{name: "fields_carried_over", in: product("USD", 1999), check: func(t *testing.T, l shopwaveListing) {
			if l.IdempotencyKey != "key-1" || l.SKU != "SKU-1" || l.Title != "Linen shirt" || l.Revision != 3 ||
				l.Price != (shopwavePrice{1999, "USD"}) || l.Quantity != 5 || l.Attributes["color"] != "white" {
				t.Fatalf("listing %+v", l)
			}
		}},
		{name: "title_truncated_to_120_runes", in: withName(product("KRW", 15000), long), check: func(t *testing.T, l shopwaveListing) {
			if utf8.RuneCountInString(l.Title) != 120 || l.Title != strings.Repeat("가", 119)+"…" {
				t.Fatalf("title %q (%d runes)", l.Title, utf8.RuneCountInString(l.Title))
			}
		}},
		{name: "title_of_120_runes_kept", in: withName(product("KRW", 15000), long[:120*3]), check: func(t *testing.T, l shopwaveListing) {
			if l.Title != long[:120*3] {
				t.Fatalf("title %q", l.Title)
			}
		}},
		{name: "quantity_clamped_to_99999", in: withStock(product("EUR", 100), 1_000_000), check: func(t *testing.T, l shopwaveListing) {
			if l.Quantity != 99_999 {
				t.Fatalf("quantity %d, want 99999", l.Quantity)
			}
		}},
		{name: "quantity_at_limit_kept", in: withStock(product("EUR", 100), 99_999), check: func(t *testing.T, l shopwaveListing) {
			if l.Quantity != 99_999 {
				t.Fatalf("quantity %d", l.Quantity)
			}
		}},
		{name: "jpy_in_minor_units", in: product("JPY", 1200), check: func(t *testing.T, l shopwaveListing) {
			if l.Price != (shopwavePrice{1200, "JPY"}) {
				t.Fatalf("price %+v", l.Price)
			}
		}},
		{name: "no_attributes_is_an_empty_object", in: withAttributes(product("USD", 1), 0), check: func(t *testing.T, l shopwaveListing) {
			if l.Attributes == nil || len(l.Attributes) != 0 {
				t.Fatalf("attributes %#v", l.Attributes)
			}
		}},
		{name: "other_currency_rejected", in: product("GBP", 100), wantErr: "shopwave sells only in KRW, USD, EUR and JPY"},
		{name: "invalid_product_rejected", in: withName(product("USD", 100), " "), wantErr: "name: is required"},
		{name: "version_zero_rejected", in: withVersion(product("USD", 100), 0), wantErr: "version must be at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, err := translateShopwave(tt.in, "key-1")
			if tt.wantErr != "" {
				wantRejected(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, l)
		})
	}
}

func TestTranslateSouk(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      catalog.Product
		wantErr string
		check   func(t *testing.T, it soukItem)
	}{
		{name: "fields_carried_over", in: product("USD", 1234), check: func(t *testing.T, it soukItem) {
			if it.Key != "key-1" || it.Ref != "SKU-1" || it.Rev != 3 || it.Name != "Linen shirt" || it.Qty != 5 ||
				it.Price != (soukPrice{"USD", "12.34"}) {
				t.Fatalf("item %+v", it)
			}
		}},
		{name: "cents_padded", in: product("EUR", 5), check: func(t *testing.T, it soukItem) {
			if it.Price != (soukPrice{"EUR", "0.05"}) {
				t.Fatalf("price %+v", it.Price)
			}
		}},
		{name: "zero_price", in: product("EUR", 0), check: func(t *testing.T, it soukItem) {
			if it.Price.Value != "0.00" {
				t.Fatalf("price %+v", it.Price)
			}
		}},
		{name: "whole_amount", in: product("USD", 100_000_000_00), check: func(t *testing.T, it soukItem) {
			if it.Price.Value != "100000000.00" {
				t.Fatalf("price %+v", it.Price)
			}
		}},
		{name: "name_truncated_to_60_runes", in: withName(product("USD", 1), strings.Repeat("x", 61)), check: func(t *testing.T, it soukItem) {
			if it.Name != strings.Repeat("x", 59)+"…" {
				t.Fatalf("name %q", it.Name)
			}
		}},
		{name: "attributes_in_name_order", in: product("USD", 1), check: func(t *testing.T, it soukItem) {
			want := []soukAttr{{"color", "white"}, {"size", "M"}}
			if fmt.Sprint(it.Attrs) != fmt.Sprint(want) {
				t.Fatalf("attrs %v, want %v", it.Attrs, want)
			}
		}},
		{name: "first_20_attributes_by_name_kept", in: withAttributes(product("USD", 1), 25), check: func(t *testing.T, it soukItem) {
			if len(it.Attrs) != 20 {
				t.Fatalf("%d attrs, want 20", len(it.Attrs))
			}
			for i, a := range it.Attrs {
				if a.Name != fmt.Sprintf("attr%02d", i) || a.Value != fmt.Sprintf("v%d", i) {
					t.Fatalf("attr %d is %+v", i, a)
				}
			}
		}},
		{name: "won_are_whole_numbers", in: product("KRW", 15000), check: func(t *testing.T, it soukItem) {
			if it.Price != (soukPrice{"KRW", "15000"}) {
				t.Errorf("price = %+v", it.Price)
			}
		}},
		{name: "jpy_rejected", in: product("JPY", 1500), wantErr: "souk sells only in USD, EUR and KRW"},
		{name: "version_zero_rejected", in: withVersion(product("USD", 100), 0), wantErr: "version must be at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			it, err := translateSouk(tt.in, "key-1")
			if tt.wantErr != "" {
				wantRejected(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, it)
		})
	}
}

func TestTranslateBazaar(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      catalog.Product
		wantErr string
		check   func(t *testing.T, p bazaarProduct)
	}{
		{name: "fields_carried_over", in: product("KRW", 15000), check: func(t *testing.T, p bazaarProduct) {
			if p.Key != "key-1" || p.ProductCode != "SKU-1" || p.ProductName != "Linen shirt" || p.SalePrice != 15000 ||
				p.StockQty != 5 || p.Seq != 3 {
				t.Fatalf("product %+v", p)
			}
		}},
		{name: "zero_won_accepted", in: product("KRW", 0), check: func(t *testing.T, p bazaarProduct) {
			if p.SalePrice != 0 {
				t.Fatalf("salePrice %d", p.SalePrice)
			}
		}},
		{name: "options_sorted_by_name", in: withAttributes(product("KRW", 10), 12), check: func(t *testing.T, p bazaarProduct) {
			if len(p.Options) != 12 {
				t.Fatalf("%d options", len(p.Options))
			}
			for i, o := range p.Options {
				if o.Name != fmt.Sprintf("attr%02d", i) || o.Value != fmt.Sprintf("v%d", i) {
					t.Fatalf("option %d is %+v", i, o)
				}
			}
		}},
		{name: "no_attributes_is_an_empty_list", in: withAttributes(product("KRW", 10), 0), check: func(t *testing.T, p bazaarProduct) {
			if p.Options == nil || len(p.Options) != 0 {
				t.Fatalf("options %#v", p.Options)
			}
		}},
		{name: "name_truncated_to_100_runes", in: withName(product("KRW", 10), strings.Repeat("상", 150)), check: func(t *testing.T, p bazaarProduct) {
			if p.ProductName != strings.Repeat("상", 99)+"…" {
				t.Fatalf("name %q", p.ProductName)
			}
		}},
		{name: "won_not_multiple_of_10_rejected", in: product("KRW", 15005), wantErr: "multiple of 10 won, got 15005"},
		{name: "usd_rejected", in: product("USD", 1500), wantErr: "bazaar sells only in KRW"},
		{name: "version_zero_rejected", in: withVersion(product("KRW", 100), 0), wantErr: "version must be at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := translateBazaar(tt.in, "key-1")
			if tt.wantErr != "" {
				wantRejected(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, p)
		})
	}
}

// TestWireFormats pins each market's request body byte for byte.
func TestWireFormats(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		market string
		in     catalog.Product
		want   string
	}{
		{"shopwave_json", Shopwave, product("USD", 1999),
			`{"listings":[{"idempotency_key":"ch:SKU-1:3","sku":"SKU-1","title":"Linen shirt","price":{"amount_minor":1999,"currency":"USD"},"quantity":5,"attributes":{"color":"white","size":"M"},"revision":3}]}`},
		{"souk_xml", Souk, withName(product("EUR", 1250), "Tea & <cups>"),
			`<items><item key="ch:SKU-1:3" ref="SKU-1" rev="3"><name>Tea &amp; &lt;cups&gt;</name><price currency="EUR">12.50</price><qty>5</qty><attr name="color">white</attr><attr name="size">M</attr></item></items>`},
		{"bazaar_json", Bazaar, product("KRW", 15000),
			`{"products":[{"key":"ch:SKU-1:3","productCode":"SKU-1","productName":"Linen shirt","salePrice":15000,"stockQty":5,"options":[{"name":"color","value":"white"},{"name":"size","value":"M"}],"seq":3}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := specs[tt.market]
			l, err := s.translate(tt.in, "ch:SKU-1:3")
			if err != nil {
				t.Fatal(err)
			}
			b, err := s.encode([]any{l})
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Fatalf("body\n%s\nwant\n%s", b, tt.want)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		in   string
		want time.Duration
	}{
		{"absent_means_1s", "", time.Second},
		{"seconds", "7", 7 * time.Second},
		{"zero_seconds", "0", 0},
		{"negative_means_1s", "-3", time.Second},
		{"garbage_means_1s", "soon", time.Second},
		{"http_date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"http_date_in_the_past_means_0", now.Add(-time.Minute).Format(http.TimeFormat), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseRetryAfter(tt.in, now); got != tt.want {
				t.Fatalf("parseRetryAfter(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestMarkets(t *testing.T) {
	t.Parallel()
	got := Markets()
	want := []struct {
		name, format string
		batch        int
	}{{"bazaar", "json", 200}, {"shopwave", "json", 500}, {"souk", "xml", 100}}
	if len(got) != len(want) {
		t.Fatalf("markets %+v", got)
	}
	for i, w := range want {
		if got[i].Name != w.name || got[i].Format != w.format || got[i].MaxBatch != w.batch || got[i].Description == "" {
			t.Fatalf("market %d is %+v, want %+v", i, got[i], w)
		}
	}
	if names := strings.Join(Names(), ","); names != "bazaar,shopwave,souk" {
		t.Fatalf("names %s", names)
	}
	if err := Translate("etsy", product("USD", 1)); !errors.Is(err, ErrUnknownMarket) || !IsPermanent(err) {
		t.Fatalf("unknown market: %v", err)
	}
	if err := Translate(Souk, product("USD", 1)); err != nil {
		t.Fatalf("souk USD: %v", err)
	}
}

func TestErrorKinds(t *testing.T) {
	t.Parallel()
	throttled := fmt.Errorf("push: %w", &ThrottledError{RetryAfter: 3 * time.Second})
	rejected := fmt.Errorf("push: %w", &RejectedError{Status: 401, Message: "unauthorized"})
	tests := []struct {
		name      string
		err       error
		permanent bool
		after     time.Duration
		throttled bool
		transient bool
	}{
		{"throttled", throttled, false, 3 * time.Second, true, false},
		{"rejected", rejected, true, 0, false, false},
		{"transient", fmt.Errorf("push: %w: 503", ErrTransient), false, 0, false, true},
		{"circuit_open", fmt.Errorf("push: %w", ErrCircuitOpen), false, 0, false, true},
		{"unsupported", fmt.Errorf("%w: no", ErrUnsupported), true, 0, false, false},
		{"invalid_target", fmt.Errorf("%w: no", ErrInvalidTarget), true, 0, false, false},
		{"nil", nil, false, 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after, ok := RetryAfter(tt.err)
			if IsPermanent(tt.err) != tt.permanent || ok != tt.throttled || after != tt.after || errors.Is(tt.err, ErrTransient) != tt.transient {
				t.Fatalf("%v: permanent %v, retry after %s %v, transient %v", tt.err, IsPermanent(tt.err), after, ok, errors.Is(tt.err, ErrTransient))
			}
		})
	}
}
