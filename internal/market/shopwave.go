package market

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/sagaflow/sagaflow/internal/catalog"
)

// Shopwave's rules.
const (
	shopwaveMaxTitle    = 120
	shopwaveMaxQuantity = 99_999
	shopwaveMaxBatch    = 500
)

// shopwaveListing is one listing of POST /v2/listings:batch.
type shopwaveListing struct {
	IdempotencyKey string            `json:"idempotency_key"`
	SKU            string            `json:"sku"`
	Title          string            `json:"title"`
	Price          shopwavePrice     `json:"price"`
	Quantity       int64             `json:"quantity"`
	Attributes     map[string]string `json:"attributes"`
	Revision       int64             `json:"revision"`
}

type shopwavePrice struct {
	AmountMinor int64  `json:"amount_minor"`
	Currency    string `json:"currency"`
}

type shopwaveReply struct {
	Results []struct {
		SKU    string `json:"sku"`
		Status string `json:"status"`
		Error  string `json:"error"`
	} `json:"results"`
}

// translateShopwave makes p a Shopwave listing: the title cut to 120 runes,
// the quantity clamped to 99,999 (Shopwave shows "99,999+" anyway), the
// price in minor units of KRW, USD, EUR or JPY.
func translateShopwave(p catalog.Product, key string) (shopwaveListing, error) {
	if err := checkCurrency(Shopwave, p.Price.Currency, "KRW, USD, EUR and JPY", "KRW", "USD", "EUR", "JPY"); err != nil {
		return shopwaveListing{}, err
	}
	if err := checkCanonical(p); err != nil {
		return shopwaveListing{}, err
	}
	attrs := make(map[string]string, len(p.Attributes))
	for k, v := range p.Attributes {
		attrs[k] = v
	}
	return shopwaveListing{
		IdempotencyKey: key,
		SKU:            p.SKU,
		Title:          truncate(p.Name, shopwaveMaxTitle),
		Price:          shopwavePrice{AmountMinor: p.Price.Amount, Currency: p.Price.Currency},
		Quantity:       min(p.Stock, shopwaveMaxQuantity),
		Attributes:     attrs,
		Revision:       p.Version,
	}, nil
}

var shopwaveSpec = &codec[shopwaveListing]{
	meta: Info{
		Name:        Shopwave,
		Format:      "json",
		Description: "Global marketplace; JSON batch API with bearer tokens. Titles up to 120 characters, quantities up to 99,999, prices in KRW, USD, EUR or JPY.",
		MaxBatch:    shopwaveMaxBatch,
	},
	endpoint: "/v2/listings:batch",
	media:    "application/json",
	auth: func(h http.Header, cred string) {
		h.Set("Authorization", "Bearer "+cred)
	},
	translateL: translateShopwave,
	encodeL: func(ls []shopwaveListing) ([]byte, error) {
		return json.Marshal(struct {
			Listings []shopwaveListing `json:"listings"`
		}{ls})
	},
	decodeL: func(b []byte) ([]answer, error) {
		var r shopwaveReply
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("decode shopwave reply: %w", err)
		}
		out := make([]answer, len(r.Results))
		for i, res := range r.Results {
			a, err := shopwaveWords.answer("shopwave", i, res.SKU, res.Status, res.Error)
			if err != nil {
				return nil, err
			}
			out[i] = a
		}
		return out, nil
	},
}

// shopwaveWords are the words the market answers an item with.
var shopwaveWords = statusWords{"applied": Applied, "duplicate": Duplicate, "invalid": Rejected}
