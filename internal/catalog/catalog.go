// Package catalog holds the rules of sellers' products and of their sync to
// external marketplaces: products with versions, the channels that connect a
// tenant to a market, the envelope of a change event on the bus, and how
// SKUs are spread over sync shards. It has no I/O.
package catalog

import (
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"strings"
	"unicode/utf8"

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
}

// HeldVersion is a product's current version next to the version one
// channel holds of it (0: none).
type HeldVersion struct {
	SKU     string
	Version int64
	Held    int64
}

// Validate checks the product's content (not its version), naming every
// problem.
func (p Product) Validate() error {
	var errs []string
	if !ValidSKU(p.SKU) {
		errs = append(errs, fmt.Sprintf("sku %q: want 1-64 of [A-Za-z0-9._-], starting with a letter or digit", p.SKU))
	}
	if n := strings.TrimSpace(p.Name); n == "" || utf8.RuneCountInString(p.Name) > MaxNameLen || !utf8.ValidString(p.Name) {
		errs = append(errs, fmt.Sprintf("name must be 1-%d characters of UTF-8", MaxNameLen))
	}
	if _, ok := Currencies[p.Price.Currency]; !ok {
		errs = append(errs, fmt.Sprintf("price.currency %q: want one of KRW, USD, EUR, JPY", p.Price.Currency))
	}
	if p.Price.Amount < 0 || p.Price.Amount > MaxAmount {
		errs = append(errs, fmt.Sprintf("price.amount must be 0..%d minor units, got %d", int64(MaxAmount), p.Price.Amount))
	}
	if p.Stock < 0 || p.Stock > MaxStock {
		errs = append(errs, fmt.Sprintf("stock must be 0..%d, got %d", MaxStock, p.Stock))
	}
	if len(p.Attributes) > MaxAttributes {
		errs = append(errs, fmt.Sprintf("at most %d attributes, got %d", MaxAttributes, len(p.Attributes)))
	}
	for k, v := range p.Attributes {
		if k == "" || len(k) > maxAttributeName || !utf8.ValidString(k) {
			errs = append(errs, fmt.Sprintf("attribute name %q: want 1-%d bytes of UTF-8", k, maxAttributeName))
			break
		}
		if len(v) > MaxAttributeLen || !utf8.ValidString(v) {
			errs = append(errs, fmt.Sprintf("attribute %q: value must be at most %d bytes of UTF-8", k, MaxAttributeLen))
			break
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	return nil
}

// Shard is the sync shard of sku among n: the same SKU always lands in the
// same shard, so one workflow orders all its changes.
func Shard(sku string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(sku))
	return int(h.Sum32() % uint32(n))
}
