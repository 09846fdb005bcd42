package fleet

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// The buckets of the fleet (JetStream key-value stores, streams KV_<name>).
const (
	BucketBlocks    = "portsentry_blocks"    // <host>.<addr>: host's block of addr, TTL = its remaining time
	BucketLifts     = "portsentry_lifts"     // <host>.<addr>: an admin on host lifted addr fleet-wide
	BucketSightings = "portsentry_sightings" // <addr>.<host>: host saw a tripwire probe from addr, TTL = correlate.window
	BucketHosts     = "portsentry_hosts"     // <host>: the host's own addresses (never blocked by the fleet)
)

// Subject is the subject a record of key in bucket is written to.
func Subject(bucket, key string) string { return "$KV." + bucket + "." + key }

// EncodeAddr writes an address as one key token: an IPv4 address with '-'
// for its dots (203-0-113-7), an IPv6 address with '_' for its colons
// (2001_db8__7). IPv4-mapped IPv6 addresses are written as IPv4; zones are
// dropped (fleet addresses have none). The token matches JetStream's key
// alphabet and is a single NATS subject token, so that permissions and
// filters can use '*' in its place.
func EncodeAddr(a netip.Addr) string {
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return strings.ReplaceAll(a.String(), ".", "-")
	}
	return strings.ReplaceAll(a.String(), ":", "_")
}

// DecodeAddr reads a token EncodeAddr wrote. Only the canonical form is
// accepted: decoding and encoding again gives the same token, so one
// address has one key.
func DecodeAddr(tok string) (netip.Addr, error) {
	var s string
	switch {
	case strings.ContainsAny(tok, ".:"):
		return netip.Addr{}, fmt.Errorf("address token %q has '.' or ':'", tok)
	case strings.Contains(tok, "-"):
		s = strings.ReplaceAll(tok, "-", ".")
	default:
		s = strings.ReplaceAll(tok, "_", ":")
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("address token %q: %w", tok, err)
	}
	if EncodeAddr(a) != tok {
		return netip.Addr{}, fmt.Errorf("address token %q is not canonical (want %q)", tok, EncodeAddr(a))
	}
	return a, nil
}

// HostAddrKey is the key of host's record of addr (blocks, lifts).
func HostAddrKey(host string, a netip.Addr) string { return host + "." + EncodeAddr(a) }

// SightingKey is the key of host's sighting of addr: the address first,
// so that the sightings of one address are the subjects <addr>.*.
func SightingKey(a netip.Addr, host string) string { return EncodeAddr(a) + "." + host }

// ParseHostAddrKey splits a blocks or lifts key into host and address.
func ParseHostAddrKey(key string) (host string, a netip.Addr, err error) {
	host, tok, ok := strings.Cut(key, ".")
	if !ok {
		return "", netip.Addr{}, fmt.Errorf("key %q: want <host>.<address>", key)
	}
	return parsePair(key, host, tok)
}

// ParseSightingKey splits a sightings key into address and host.
func ParseSightingKey(key string) (a netip.Addr, host string, err error) {
	tok, host, ok := strings.Cut(key, ".")
	if !ok {
		return netip.Addr{}, "", fmt.Errorf("key %q: want <address>.<host>", key)
	}
	host, a, err = parsePair(key, host, tok)
	return a, host, err
}

func parsePair(key, host, tok string) (string, netip.Addr, error) {
	if !config.ValidFleetName(host) {
		return "", netip.Addr{}, fmt.Errorf("key %q: %q is not a fleet host name", key, host)
	}
	a, err := DecodeAddr(tok)
	if err != nil {
		return "", netip.Addr{}, fmt.Errorf("key %q: %w", key, err)
	}
	return host, a, nil
}
