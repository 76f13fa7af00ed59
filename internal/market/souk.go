package market

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/sagaflow/sagaflow/internal/catalog"
)

// Souk's rules.
const (
	soukMaxName       = 60
	soukMaxAttributes = 20
	soukMaxBatch      = 100
)

// soukItem is one <item> of POST /api/items/bulk.
type soukItem struct {
	Key   string     `xml:"key,attr"`
	Ref   string     `xml:"ref,attr"`
	Rev   int64      `xml:"rev,attr"`
	Name  string     `xml:"name"`
	Price soukPrice  `xml:"price"`
	Qty   int64      `xml:"qty"`
	Attrs []soukAttr `xml:"attr"`
}

type soukPrice struct {
	Currency string `xml:"currency,attr"`
	Value    string `xml:",chardata"` // decimal, in major units: "12.34"
}

type soukAttr struct {
	Name  string `xml:"name,attr"`
	Value string `xml:",chardata"`
}

type soukReply struct {
	XMLName xml.Name `xml:"results"`
	Results []struct {
		Ref    string `xml:"ref,attr"`
		Status string `xml:"status,attr"`
		Reason string `xml:"reason,attr"`
	} `xml:"result"`
}

// translateSouk makes p a Souk item: the name cut to 60 runes, the price a
// decimal in major units of USD, EUR or KRW (won have no decimals), and
// the first 20 attributes by name
// (Souk keeps no more), in name order.
func translateSouk(p catalog.Product, key string) (soukItem, error) {
	if err := checkCurrency(Souk, p.Price.Currency, "USD, EUR and KRW", "USD", "EUR", "KRW"); err != nil {
		return soukItem{}, err
	}
	if err := checkCanonical(p); err != nil {
		return soukItem{}, err
	}
	names := make([]string, 0, len(p.Attributes))
	for k := range p.Attributes {
		names = append(names, k)
	}
	slices.Sort(names)
	names = names[:min(len(names), soukMaxAttributes)]
	attrs := make([]soukAttr, len(names))
	for i, k := range names {
		attrs[i] = soukAttr{Name: k, Value: p.Attributes[k]}
	}
	return soukItem{
		Key:   key,
		Ref:   p.SKU,
		Rev:   p.Version,
		Name:  truncate(p.Name, soukMaxName),
		Price: soukPrice{Currency: p.Price.Currency, Value: majorUnits(p.Price.Amount, catalog.Currencies[p.Price.Currency])},
		Qty:   p.Stock,
		Attrs: attrs,
	}, nil
}

// majorUnits writes amount minor units (amount >= 0) of a currency with
// exponent exp as a decimal in major units: 1234, 2 → "12.34".
func majorUnits(amount int64, exp int) string {
	if exp <= 0 {
		return strconv.FormatInt(amount, 10)
	}
	unit := int64(1)
	for range exp {
		unit *= 10
	}
	return fmt.Sprintf("%d.%0*d", amount/unit, exp, amount%unit)
}

var soukSpec = &codec[soukItem]{
	meta: Info{
		Name:        Souk,
		Format:      "xml",
		Description: "Regional marketplace; XML bulk API with a token header. Names up to 60 characters, at most 20 attributes, prices in USD, EUR or KRW only.",
		MaxBatch:    soukMaxBatch,
	},
	endpoint: "/api/items/bulk",
	media:    "application/xml",
	auth: func(h http.Header, cred string) {
		h.Set("X-Souk-Token", cred)
	},
	translateL: translateSouk,
	encodeL: func(items []soukItem) ([]byte, error) {
		return xml.Marshal(struct {
			XMLName xml.Name   `xml:"items"`
			Items   []soukItem `xml:"item"`
		}{Items: items})
	},
	decodeL: func(b []byte) ([]answer, error) {
		var r soukReply
		if err := xml.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("decode souk reply: %w", err)
		}
		out := make([]answer, len(r.Results))
		for i, res := range r.Results {
			a, err := soukWords.answer("souk", i, res.Ref, res.Status, res.Reason)
			if err != nil {
				return nil, err
			}
			out[i] = a
		}
		return out, nil
	},
}

// soukWords are the words the market answers an item with.
var soukWords = statusWords{"applied": Applied, "duplicate": Duplicate, "invalid": Rejected}
