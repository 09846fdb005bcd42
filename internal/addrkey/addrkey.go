// Package addrkey is an IP address as a comparable value without a
// pointer: netip.Addr holds one (for its zone), so a map keyed by it, or a
// slice of records holding it, is scanned by the collector. The ledger's
// store and the fleet's view key up to millions of blocks by address; a
// blocked address has no zone.
package addrkey

import "net/netip"

// Key is an address without its zone.
type Key struct {
	a  [16]byte
	v4 bool
}

// Of is a's key (its zone dropped).
func Of(a netip.Addr) Key { return Key{a.As16(), a.Is4()} }

// Addr is the key's address.
func (k Key) Addr() netip.Addr {
	a := netip.AddrFrom16(k.a)
	if k.v4 {
		return a.Unmap()
	}
	return a
}

// Is4 reports whether the key is of an IPv4 address (not IPv4-mapped).
func (k Key) Is4() bool { return k.v4 }

// As16 is the address's 16 bytes (an IPv4 address IPv4-mapped).
func (k Key) As16() [16]byte { return k.a }
