package market

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/sagaflow/sagaflow/internal/catalog"
)

// Bazaar's rules.
const (
	bazaarMaxName = 100
	// bazaarPriceStep: Bazaar prices in whole tens of won, as most Korean
	// markets do.
	bazaarPriceStep = 10
	bazaarMaxBatch  = 200
)

// bazaarProduct is one product of POST /bulk/products.
type bazaarProduct struct {
	Key         string         `json:"key"`
	ProductCode string         `json:"productCode"`
	ProductName string         `json:"productName"`
	SalePrice   int64          `json:"salePrice"` // won
	StockQty    int64          `json:"stockQty"`
	Options     []bazaarOption `json:"options"`
	Seq         int64          `json:"seq"`
}

type bazaarOption struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type bazaarReply struct {
	Items []struct {
		ProductCode string `json:"productCode"`
		Result      string `json:"result"`
		Message     string `json:"message"`
	} `json:"items"`
}

// translateBazaar makes p a Bazaar product: priced in KRW only, in whole
// tens of won (anything else is rejected, never rounded: the seller set the
// price), the name cut to 100 runes, the attributes as options sorted by
// name.
func translateBazaar(p catalog.Product, key string) (bazaarProduct, error) {
	if err := checkCurrency(Bazaar, p.Price.Currency, "KRW", "KRW"); err != nil {
		return bazaarProduct{}, err
	}
	if p.Price.Amount%bazaarPriceStep != 0 {
		return bazaarProduct{}, fmt.Errorf("%w: bazaar prices must be a multiple of %d won, got %d", ErrUnsupported, bazaarPriceStep, p.Price.Amount)
	}
	if err := checkCanonical(p); err != nil {
		return bazaarProduct{}, err
	}
	opts := make([]bazaarOption, 0, len(p.Attributes))
	for k, v := range p.Attributes {
		opts = append(opts, bazaarOption{Name: k, Value: v})
	}
	slices.SortFunc(opts, func(a, b bazaarOption) int { return strings.Compare(a.Name, b.Name) })
	return bazaarProduct{
		Key:         key,
		ProductCode: p.SKU,
		ProductName: truncate(p.Name, bazaarMaxName),
		SalePrice:   p.Price.Amount,
		StockQty:    p.Stock,
		Options:     opts,
		Seq:         p.Version,
	}, nil
}

var bazaarSpec = &codec[bazaarProduct]{
	meta: Info{
		Name:        Bazaar,
		Format:      "json",
		Description: "Korean marketplace; JSON bulk API with an API key. Prices in KRW only, in whole tens of won; names up to 100 characters.",
		MaxBatch:    bazaarMaxBatch,
	},
	endpoint: "/bulk/products",
	media:    "application/json",
	auth: func(h http.Header, cred string) {
		h.Set("X-Api-Key", cred)
	},
	translateL: translateBazaar,
	encodeL: func(ps []bazaarProduct) ([]byte, error) {
		return json.Marshal(struct {
			Products []bazaarProduct `json:"products"`
		}{ps})
	},
	decodeL: func(b []byte) ([]answer, error) {
		var r bazaarReply
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("decode bazaar reply: %w", err)
		}
		out := make([]answer, len(r.Items))
		for i, it := range r.Items {
			a, err := bazaarWords.answer("bazaar", i, it.ProductCode, it.Result, it.Message)
			if err != nil {
				return nil, err
			}
			out[i] = a
		}
		return out, nil
	},
}

// bazaarWords are the words the market answers an item with.
var bazaarWords = statusWords{"OK": Applied, "DUPLICATE": Duplicate, "FAIL": Rejected}
