// Package catalog holds the rules of sellers' products and of their sync to
// external marketplaces: products with versions, the channels that connect a
// tenant to a market, the envelope of a change event on the bus, and how
// SKUs are spread over sync shards. It has no I/O.
package catalog

import (
	"encoding/json"
	"errors"
	"hash/fnv"
	"maps"
	"regexp"
	"slices"

	"github.com/sagaflow/sagaflow/internal/valid"
)

var (
	// ErrNotFound means no such product (or channel, or parked item).
	ErrNotFound = errors.New("not found")
	// ErrInvalid wraps every validation error of this package, so the edge
	// can answer 400 for all of them in one place. It is valid.ErrInvalid:
	// one sentinel for bad input in every package.
	ErrInvalid = valid.ErrInvalid
)

// Limits of a product, as every market accepts at least these.
const (
	MaxNameLen       = 200
	MaxAttributes    = 50
	MaxAttributeLen  = 200
	MaxAmount        = 1_000_000_000_00 // a billion in major units
	MaxStock         = 10_000_000
	maxAttributeName = 64
)

var skuPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidSKU reports whether sku is a SKU sagaflow accepts: 1-64 characters of
// letters, digits, '.', '_' and '-', starting with a letter or digit (it is
// part of URLs, idempotency keys and workflow state).
func ValidSKU(sku string) bool { return skuPattern.MatchString(sku) }

// Currencies sagaflow prices in, with their minor-unit exponent.
var Currencies = map[string]int{"KRW": 0, "USD": 2, "EUR": 2, "JPY": 0}

// Money is an amount in the currency's minor units (cents; won have none).
type Money struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// Product is a seller's product as sagaflow keeps it: the canonical form
// every market's translator starts from. Version grows by one with every
// change; markets must never apply an older version after a newer one.
type Product struct {
	SKU        string            `json:"sku"`
	Name       string            `json:"name"`
	Price      Money             `json:"price"`
	Stock      int64             `json:"stock"`
	Attributes map[string]string `json:"attributes"`
	Version    int64             `json:"version"`
	// TraceID is the trace id of the change that made this version (the
	// envelope's trace_id); stored with the product, never sent to a market.
	TraceID string `json:"-"`
}

// HeldVersion is a product's current version next to the version one
// channel holds of it (0: none).
type HeldVersion struct {
	SKU     string
	Version int64
	Held    int64
}

// Window is what a backfill read of one stretch of the catalogue found: the
// products of the shard the channel lacks (holds an older version of, or
// none), in SKU order, the last SKU of the stretch and how many products it
// had (all shards), so that the next read starts after Last and the catalogue
// is done when Scanned falls short of the stretch asked for.
type Window struct {
	Lacking []HeldVersion
	Last    string
	Scanned int
}

// Validate checks the product's content (not its version) and returns a
// *valid.Error that names every bad field ("sku", "name", "price.amount",
// "price.currency", "stock", "attributes", "attributes[color]"). A product it
// accepts can be stored by PostgreSQL, carried in an envelope ParseChange
// accepts, and shown by every market: its text has no NUL or other control
// characters and is valid UTF-8.
func (p Product) Validate() error {
	var v valid.Errors
	if !ValidSKU(p.SKU) {
		v.Add("sku", "must be 1-64 of [A-Za-z0-9._-], starting with a letter or digit, got %q", p.SKU)
	}
	v.Text("name", p.Name, 1, MaxNameLen, false)
	if _, ok := Currencies[p.Price.Currency]; !ok {
		v.Add("price.currency", "%q is not one of KRW, USD, EUR, JPY", p.Price.Currency)
	}
	if p.Price.Amount < 0 || p.Price.Amount > MaxAmount {
		v.Add("price.amount", "must be 0..%d minor units, got %d", int64(MaxAmount), p.Price.Amount)
	}
	if p.Stock < 0 || p.Stock > MaxStock {
		v.Add("stock", "must be 0..%d, got %d", MaxStock, p.Stock)
	}
	if len(p.Attributes) > MaxAttributes {
		v.Add("attributes", "at most %d attributes, got %d", MaxAttributes, len(p.Attributes))
	}
	// Sorted, so the same product always gets the same answer.
	for _, k := range slices.Sorted(maps.Keys(p.Attributes)) {
		if msg := valid.TextProblem(k, 1, maxAttributeName, false); msg != "" {
			v.Add("attributes", "name %q %s", k, msg)
			continue
		}
		if len(k) > maxAttributeName {
			v.Add("attributes", "name %q must be at most %d bytes", k, maxAttributeName)
			continue
		}
		val := p.Attributes[k]
		if msg := valid.TextProblem(val, 0, MaxAttributeLen, false); msg != "" {
			v.Add("attributes["+k+"]", "%s", msg)
		} else if len(val) > MaxAttributeLen {
			v.Add("attributes["+k+"]", "must be at most %d bytes, got %d", MaxAttributeLen, len(val))
		}
	}
	if v.Empty() {
		if n, ok := fitsEnvelope(p); !ok {
			v.Add("attributes", "the product is %d bytes as JSON; a change message carries at most %d", n, maxPayloadBytes)
		}
	}
	return v.Err()
}

// maxPayloadBytes is the largest product JSON an envelope can carry within
// maxEnvelopeBytes, with room for the envelope's own fields.
const maxPayloadBytes = maxEnvelopeBytes - 1024

// fitsEnvelope reports whether p's JSON fits maxPayloadBytes, and its size
// when it had to measure. encoding/json writes <, > and & as six bytes, so
// attributes at their limits can exceed it; the bound below (six bytes per
// byte) spares the encoding for every ordinary product.
func fitsEnvelope(p Product) (int, bool) {
	n := len(p.SKU) + len(p.Name) + len(p.Price.Currency)
	for k, val := range p.Attributes {
		n += len(k) + len(val)
	}
	if 6*n+8*len(p.Attributes)+256 <= maxPayloadBytes {
		return 0, true
	}
	b, err := json.Marshal(p)
	if err != nil {
		return 0, false
	}
	return len(b), len(b) <= maxPayloadBytes
}

// Shard is the sync shard of sku among n: the same SKU always lands in the
// same shard, so one workflow orders all its changes. It is ShardHash(sku)
// modulo n.
func Shard(sku string, n int) int {
	if n <= 1 {
		return 0
	}
	return int(ShardHash(sku) % uint32(n))
}

// ShardHash is the 32-bit FNV-1a hash of sku's bytes, which Shard reduces
// modulo the number of shards. The store keeps it with every product
// (products.sku_hash, and the tenant schema's function fnv1a32(text)
// computes the same), so that a shard's backfill reads its own SKUs in
// PostgreSQL.
func ShardHash(sku string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(sku))
	return h.Sum32()
}
