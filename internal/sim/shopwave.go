package sim

import (
	"fmt"
	"net/http"
	"strings"
)

// The shopwave dialect: JSON, bearer token.

type shopwaveBatch struct {
	Listings []shopwaveListing `json:"listings"`
}

type shopwaveListing struct {
	IdempotencyKey string `json:"idempotency_key"`
	SKU            string `json:"sku"`
	Title          string `json:"title"`
	Price          struct {
		AmountMinor int64  `json:"amount_minor"`
		Currency    string `json:"currency"`
	} `json:"price"`
	Quantity   int64             `json:"quantity"`
	Attributes map[string]string `json:"attributes"`
	Revision   int64             `json:"revision"`
}

var shopwaveCurrencies = map[string]bool{"KRW": true, "USD": true, "EUR": true, "JPY": true}

func (l shopwaveListing) check() string {
	reason := firstReason(
		checkCommon(l.IdempotencyKey, l.SKU, l.Revision, "revision"),
		checkText("title", l.Title, 120),
	)
	switch {
	case reason != "":
		return reason
	case l.Price.AmountMinor < 0:
		return fmt.Sprintf("price.amount_minor must be >= 0, got %d", l.Price.AmountMinor)
	case !shopwaveCurrencies[l.Price.Currency]:
		return fmt.Sprintf("price.currency %q: shopwave sells in KRW, USD, EUR and JPY", l.Price.Currency)
	case l.Quantity < 0 || l.Quantity > 99_999:
		return fmt.Sprintf("quantity must be within 0..99999, got %d", l.Quantity)
	case len(l.Attributes) > 50:
		return fmt.Sprintf("at most 50 attributes, got %d", len(l.Attributes))
	}
	for k := range l.Attributes {
		if k == "" {
			return "attribute names must not be empty"
		}
	}
	return ""
}

var shopwaveDialect = &dialect{
	path:     "/v2/listings:batch",
	maxBatch: 500,
	account: func(h http.Header) string {
		tok, ok := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
		if !ok {
			return ""
		}
		return strings.TrimSpace(tok)
	},
	authHeader: "Authorization: Bearer",
	decode: func(b []byte) ([]marketItem, error) {
		var batch shopwaveBatch
		if err := decodeStrict(b, &batch); err != nil {
			return nil, err
		}
		items := make([]marketItem, len(batch.Listings))
		for i, l := range batch.Listings {
			if l.Attributes == nil {
				l.Attributes = map[string]string{}
			}
			items[i] = marketItem{key: l.IdempotencyKey, sku: l.SKU, invalid: l.check(), listing: MarketListing{
				Version: l.Revision, Name: l.Title, AmountMinor: l.Price.AmountMinor, Currency: l.Price.Currency,
				Quantity: l.Quantity, Attributes: l.Attributes,
			}}
		}
		return items, nil
	},
	reply: func(w http.ResponseWriter, answers []itemAnswer) {
		type result struct {
			SKU    string `json:"sku"`
			Status string `json:"status"`
			Error  string `json:"error"`
		}
		out := make([]result, len(answers))
		for i, a := range answers {
			out[i] = result{SKU: a.sku, Status: a.status, Error: a.reason}
		}
		writeJSON(w, http.StatusOK, struct {
			Results []result `json:"results"`
		}{out})
	},
	writeError: writeError,
}
