// Package outbound builds the HTTP clients sagaflow uses to call systems it
// does not own (payment gateway, notification providers, marketplaces).
package outbound

import (
	"net/http"
	"time"
)

// NewHTTPClient returns a client whose calls, reading the reply included,
// take at most timeout, with a connection pool sized for bursts: sagas call
// out in bursts (a popular meeting opens, a campaign ends), and the default
// of 2 idle connections per host would make most calls dial anew. Safe for
// concurrent use; build one per process and system.
func NewHTTPClient(timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 200
	tr.MaxIdleConnsPerHost = 100
	tr.IdleConnTimeout = 90 * time.Second
	return &http.Client{Timeout: timeout, Transport: tr}
}
