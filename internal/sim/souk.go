package sim

import (
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// The souk dialect: XML, token header, prices as decimals in major units.

type soukBatch struct {
	XMLName xml.Name   `xml:"items"`
	Items   []soukItem `xml:"item"`
}

type soukItem struct {
	Key   string `xml:"key,attr"`
	Ref   string `xml:"ref,attr"`
	Rev   int64  `xml:"rev,attr"`
	Name  string `xml:"name"`
	Price struct {
		Currency string `xml:"currency,attr"`
		Value    string `xml:",chardata"`
	} `xml:"price"`
	Qty   int64 `xml:"qty"`
	Attrs []struct {
		Name  string `xml:"name,attr"`
		Value string `xml:",chardata"`
	} `xml:"attr"`
}

// soukPrice is a price in major units with exactly two decimals; soukWon
// one in won, which have none.
var (
	soukPrice = regexp.MustCompile(`^(0|[1-9][0-9]{0,12})\.([0-9]{2})$`)
	soukWon   = regexp.MustCompile(`^(0|[1-9][0-9]{0,15})$`)
)

// item decodes and checks one Souk item.
func (it soukItem) item() marketItem {
	out := marketItem{key: it.Key, sku: it.Ref, listing: MarketListing{
		Version: it.Rev, Name: it.Name, Currency: it.Price.Currency, Quantity: it.Qty, Attributes: map[string]string{},
	}}
	if out.invalid = firstReason(checkCommon(it.Key, it.Ref, it.Rev, "rev"), checkText("name", it.Name, 60)); out.invalid != "" {
		return out
	}
	switch it.Price.Currency {
	case "USD", "EUR":
		mm := soukPrice.FindStringSubmatch(it.Price.Value)
		if mm == nil {
			out.invalid = fmt.Sprintf("price %q: want a decimal with two places, such as 12.34", it.Price.Value)
			return out
		}
		major, _ := strconv.ParseInt(mm[1], 10, 64)
		cents, _ := strconv.ParseInt(mm[2], 10, 64)
		out.listing.AmountMinor = major*100 + cents
	case "KRW":
		if !soukWon.MatchString(it.Price.Value) {
			out.invalid = fmt.Sprintf("price %q: won are whole numbers, such as 15000", it.Price.Value)
			return out
		}
		out.listing.AmountMinor, _ = strconv.ParseInt(it.Price.Value, 10, 64)
	default:
		out.invalid = fmt.Sprintf("price currency %q: souk sells only in USD, EUR and KRW", it.Price.Currency)
		return out
	}
	if it.Qty < 0 {
		out.invalid = fmt.Sprintf("qty must be >= 0, got %d", it.Qty)
		return out
	}
	if len(it.Attrs) > 20 {
		out.invalid = fmt.Sprintf("at most 20 attributes, got %d", len(it.Attrs))
		return out
	}
	for _, a := range it.Attrs {
		if a.Name == "" {
			out.invalid = "attribute names must not be empty"
			return out
		}
		if _, dup := out.listing.Attributes[a.Name]; dup {
			out.invalid = fmt.Sprintf("attribute %q given twice", a.Name)
			return out
		}
		out.listing.Attributes[a.Name] = a.Value
	}
	return out
}

func writeSoukError(w http.ResponseWriter, status int, code, message string) {
	writeXML(w, status, struct {
		XMLName xml.Name `xml:"error"`
		Code    string   `xml:"code,attr"`
		Message string   `xml:",chardata"`
	}{Code: code, Message: message})
}

func writeXML(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, xml.Header)
	_ = xml.NewEncoder(w).Encode(v)
}

var soukDialect = &dialect{
	path:     "/api/items/bulk",
	maxBatch: 100,
	account: func(h http.Header) string {
		return strings.TrimSpace(h.Get("X-Souk-Token"))
	},
	authHeader: "X-Souk-Token",
	decode: func(b []byte) ([]marketItem, error) {
		var batch soukBatch
		if err := xml.Unmarshal(b, &batch); err != nil {
			return nil, fmt.Errorf("invalid XML: %w", err)
		}
		items := make([]marketItem, len(batch.Items))
		for i, it := range batch.Items {
			items[i] = it.item()
		}
		return items, nil
	},
	reply: func(w http.ResponseWriter, answers []itemAnswer) {
		type result struct {
			Ref    string `xml:"ref,attr"`
			Status string `xml:"status,attr"`
			Reason string `xml:"reason,attr,omitempty"`
		}
		out := make([]result, len(answers))
		for i, a := range answers {
			out[i] = result{Ref: a.sku, Status: a.status, Reason: a.reason}
		}
		writeXML(w, http.StatusOK, struct {
			XMLName xml.Name `xml:"results"`
			Results []result `xml:"result"`
		}{Results: out})
	},
	writeError: writeSoukError,
}
