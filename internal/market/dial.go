package market

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/telemetry"
)

// ErrAddressRefused means a base URL's host resolved to an address that is
// not public (loopback, private, link-local, ...) and the client does not
// allow those (Options.AllowPrivateNetworks). It is also ErrInvalidTarget.
var ErrAddressRefused = fmt.Errorf("%w: the host resolves to a non-public address", ErrInvalidTarget)

// nonPublic are the ranges a market never lives in, beyond what netip's
// predicates name: "this network", shared address space (CGNAT), IETF
// protocol assignments, documentation, benchmarking, reserved, and NAT64 /
// 6to4 / Teredo prefixes that can embed any IPv4 address.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2001::/32"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("100::/64"),
}

// PublicAddr reports whether ip is a public unicast address a market may
// live at: not loopback, private, link-local, multicast, unspecified, nor
// any of the special ranges above (IPv4-mapped IPv6 judged as its IPv4).
func PublicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// refusePrivate is the dialer's Control: it runs after DNS resolution, on
// the very address about to be connected, so a host that resolves to a
// public address at validation and a private one later (DNS rebinding) is
// still refused, before any byte is sent.
func refusePrivate(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrAddressRefused, address)
	}
	if !PublicAddr(ap.Addr()) {
		return ErrAddressRefused
	}
	return nil
}

// newHTTPClient is the client of the markets: a pool sized for bursts, no
// proxy (the dialer checks the address it connects to, which must be the
// market's), no redirects followed (a redirect is answered as a refusal),
// and, unless allowPrivate, no connection to a non-public address.
func newHTTPClient(timeout time.Duration, allowPrivate bool) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.Control = refusePrivate
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          200,
		MaxIdleConnsPerHost:   100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
	return &http.Client{
		Timeout:   timeout,
		Transport: telemetry.HTTPTransport(tr),
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// CheckBaseURL checks the form of a channel's base URL with the rule the
// API applies at creation (catalog.BaseURLProblem): http or https, a host
// and an optional port, nothing else. Which hosts are allowed is decided at
// creation (catalog.Channel.Validate); which addresses, at dial time.
func CheckBaseURL(raw string) error {
	if msg := catalog.BaseURLProblem(raw); msg != "" {
		return fmt.Errorf("%w: base URL %s", ErrInvalidTarget, msg)
	}
	return nil
}

// transportError classifies a call that got no reply. Its text names the
// market and the kind of failure; the cause stays reachable with errors.Is
// and errors.As (context.Canceled, ErrAddressRefused).
func transportError(market string, err error) error {
	if errors.Is(err, ErrAddressRefused) {
		return &callError{market: market, reason: "refused: the host resolves to a non-public address", cause: err}
	}
	reason := "connection failed"
	var netErr net.Error
	var dnsErr *net.DNSError
	var tlsErr *tls.CertificateVerificationError
	var recErr tls.RecordHeaderError
	switch {
	case errors.Is(err, context.Canceled):
		reason = "call cancelled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		reason = "timed out"
	case errors.As(err, &dnsErr):
		reason = "host not found"
	case errors.Is(err, syscall.ECONNREFUSED):
		reason = "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		reason = "connection reset"
	case errors.As(err, &tlsErr), errors.As(err, &recErr):
		reason = "TLS handshake failed"
	}
	return &callError{market: market, reason: reason, cause: fmt.Errorf("%w: %w", ErrTransient, err)}
}

// callError is a call that got no reply.
type callError struct {
	market, reason string
	cause          error
}

func (e *callError) Error() string { return "market " + e.market + " unreachable (" + e.reason + ")" }
func (e *callError) Unwrap() error { return e.cause }
