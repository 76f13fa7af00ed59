package sim

import (
	"fmt"
	"net/http"
	"strings"
)

// The bazaar dialect: JSON, API key, whole tens of won.

type bazaarBatch struct {
	Products []bazaarProduct `json:"products"`
}

type bazaarProduct struct {
	Key         string `json:"key"`
	ProductCode string `json:"productCode"`
	ProductName string `json:"productName"`
	SalePrice   int64  `json:"salePrice"`
	StockQty    int64  `json:"stockQty"`
	Options     []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"options"`
	Seq int64 `json:"seq"`
}

func (p bazaarProduct) check() string {
	if reason := firstReason(checkCommon(p.Key, p.ProductCode, p.Seq, "seq"), checkText("productName", p.ProductName, 100)); reason != "" {
		return reason
	}
	switch {
	case p.SalePrice < 0:
		return fmt.Sprintf("salePrice must be >= 0, got %d", p.SalePrice)
	case p.SalePrice%10 != 0:
		return fmt.Sprintf("salePrice must be a multiple of 10 won, got %d", p.SalePrice)
	case p.StockQty < 0:
		return fmt.Sprintf("stockQty must be >= 0, got %d", p.StockQty)
	}
	for i, o := range p.Options {
		if o.Name == "" {
			return "option names must not be empty"
		}
		if i > 0 && p.Options[i-1].Name >= o.Name {
			return "options must be sorted by name, without repeats"
		}
	}
	return ""
}

var bazaarDialect = &dialect{
	path:     "/bulk/products",
	maxBatch: 200,
	account: func(h http.Header) string {
		return strings.TrimSpace(h.Get("X-Api-Key"))
	},
	authHeader: "X-Api-Key",
	decode: func(b []byte) ([]marketItem, error) {
		var batch bazaarBatch
		if err := decodeStrict(b, &batch); err != nil {
			return nil, err
		}
		items := make([]marketItem, len(batch.Products))
		for i, p := range batch.Products {
			attrs := make(map[string]string, len(p.Options))
			for _, o := range p.Options {
				attrs[o.Name] = o.Value
			}
			items[i] = marketItem{key: p.Key, sku: p.ProductCode, invalid: p.check(), listing: MarketListing{
				Version: p.Seq, Name: p.ProductName, AmountMinor: p.SalePrice, Currency: "KRW",
				Quantity: p.StockQty, Attributes: attrs,
			}}
		}
		return items, nil
	},
	reply: func(w http.ResponseWriter, answers []itemAnswer) {
		type item struct {
			ProductCode string `json:"productCode"`
			Result      string `json:"result"`
			Message     string `json:"message"`
		}
		results := map[string]string{itemApplied: "OK", itemDuplicate: "DUPLICATE", itemInvalid: "FAIL"}
		out := make([]item, len(answers))
		for i, a := range answers {
			out[i] = item{ProductCode: a.sku, Result: results[a.status], Message: a.reason}
		}
		writeJSON(w, http.StatusOK, struct {
			Items []item `json:"items"`
		}{out})
	},
	writeError: writeError,
}
