package market

import (
	"fmt"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sagaflow/sagaflow/internal/catalog"
)

// answer is a market's answer about one item of a batch, in our terms.
type answer struct {
	sku     string
	outcome Outcome // Applied, Duplicate or Rejected
	reason  string
}

// statusWords maps the words a market answers an item with to outcomes.
type statusWords map[string]Outcome

// answer is the i-th item's answer of market's reply, or an error naming a
// word the market should not have said.
func (w statusWords) answer(market string, i int, sku, word, reason string) (answer, error) {
	o, ok := w[word]
	if !ok {
		// The word is not quoted: a reply's bytes never reach an error text.
		return answer{}, fmt.Errorf("decode %s reply: item %d has an unknown status", market, i)
	}
	return answer{sku: sku, outcome: o, reason: cleanReason(reason)}, nil
}

// spec is what the client knows of one market: its rules, its wire format
// and how it authenticates.
type spec interface {
	info() Info
	// translate turns p into the market's listing (an opaque value for
	// encode), or returns an error wrapping ErrUnsupported.
	translate(p catalog.Product, key string) (any, error)
	// encode returns the body of one batch request carrying listings, each
	// made by translate.
	encode(listings []any) ([]byte, error)
	// decode reads the per-item answers of a 2xx reply, in request order.
	decode(body []byte) ([]answer, error)
	// path is the batch endpoint, appended to the channel's base URL.
	path() string
	// mediaType is the Content-Type of requests and the Accept of replies.
	mediaType() string
	// authorize puts credentials on a request.
	authorize(h http.Header, credentials string)
}

// codec implements spec for a market whose listing type is L.
type codec[L any] struct {
	meta       Info
	endpoint   string
	media      string
	auth       func(h http.Header, credentials string)
	translateL func(p catalog.Product, key string) (L, error)
	encodeL    func([]L) ([]byte, error)
	decodeL    func([]byte) ([]answer, error)
}

func (c *codec[L]) info() Info                           { return c.meta }
func (c *codec[L]) path() string                         { return c.endpoint }
func (c *codec[L]) mediaType() string                    { return c.media }
func (c *codec[L]) authorize(h http.Header, cred string) { c.auth(h, cred) }
func (c *codec[L]) decode(b []byte) ([]answer, error)    { return c.decodeL(b) }

func (c *codec[L]) translate(p catalog.Product, key string) (any, error) {
	return c.translateL(p, key)
}

func (c *codec[L]) encode(listings []any) ([]byte, error) {
	typed := make([]L, len(listings))
	for i, l := range listings {
		typed[i] = l.(L)
	}
	return c.encodeL(typed)
}

// specs are the markets by name.
var specs = map[string]spec{
	Shopwave: shopwaveSpec,
	Souk:     soukSpec,
	Bazaar:   bazaarSpec,
}

// ellipsis ends a text a market made us cut.
const ellipsis = "…"

// truncate returns s if it has at most n runes, or else its first n-1 runes,
// trailing spaces trimmed, followed by "…": n runes at most either way.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	cut, runes := 0, 0
	for i := range s {
		if runes == n-1 {
			cut = i
			break
		}
		runes++
	}
	return strings.TrimRightFunc(s[:cut], unicode.IsSpace) + ellipsis
}

// checkCanonical is the part of every translator that does not depend on
// the market: the product must be valid and have a version.
func checkCanonical(p catalog.Product) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	if p.Version < 1 {
		return fmt.Errorf("%w: version must be at least 1, got %d", ErrUnsupported, p.Version)
	}
	return nil
}

// checkCurrency refuses a currency the market does not sell in.
func checkCurrency(market, currency, sells string, allowed ...string) error {
	for _, c := range allowed {
		if c == currency {
			return nil
		}
	}
	return fmt.Errorf("%w: %s sells only in %s, not %q", ErrUnsupported, market, sells, currency)
}

// cleanReason makes a market's reason for refusing one item fit to store
// and show: valid UTF-8 on one line without control characters, at most
// maxMessageLen runes. It is the one piece of a reply that is kept, and only
// from a 2xx reply in the market's own format.
func cleanReason(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	return truncate(strings.TrimSpace(s), maxMessageLen)
}

// errReplyMismatch builds the error of a 2xx reply that does not answer the
// request it came for.
func errReplyMismatch(format string, args ...any) error {
	return fmt.Errorf("%w: reply does not match the request: %s", ErrTransient, fmt.Sprintf(format, args...))
}
