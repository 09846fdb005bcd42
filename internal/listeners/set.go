package listeners

import (
	"net/netip"
	"slices"
)

// portBits is a bitmap of the 65536 ports.
type portBits [1024]uint64

func (b *portBits) set(p uint16)      { b[p>>6] |= 1 << (p & 63) }
func (b *portBits) has(p uint16) bool { return b[p>>6]&(1<<(p&63)) != 0 }

// addrKey is a listener on one address.
type addrKey struct {
	addr  netip.Addr
	port  uint16
	proto uint8
}

// Set is an immutable snapshot of the host's listening sockets, built once
// per change (NewSet) and then shared freely: every method is safe for
// concurrent use, and InUse does not allocate. A nil *Set is empty.
type Set struct {
	sockets []Socket
	// any4[i] / any6[i]: ports with a wildcard listener receiving IPv4 /
	// IPv6 (i: 0 TCP, 1 UDP).
	any4, any6 [2]portBits
	exact      map[addrKey]struct{}
}

func protoIndex(proto uint8) int {
	switch proto {
	case ProtoTCP:
		return 0
	case ProtoUDP:
		return 1
	}
	return -1
}

// NewSet builds a snapshot of sockets. Sockets that differ only in the
// inode (SO_REUSEPORT groups, several processes sharing one socket's port)
// are kept once, the lowest inode. Sockets of other protocols than TCP and
// UDP, without a valid address or with port 0 are dropped. sockets is not
// retained.
func NewSet(sockets []Socket) *Set {
	s := &Set{}
	for _, sk := range sockets {
		if protoIndex(sk.Proto) < 0 || !sk.Addr.IsValid() || sk.Port == 0 {
			continue
		}
		sk.Addr = sk.Addr.Unmap().WithZone("")
		if sk.Addr.Is4() {
			sk.V6Only = false
		}
		s.sockets = append(s.sockets, sk)
	}
	slices.SortFunc(s.sockets, compareSocket)
	s.sockets = slices.CompactFunc(s.sockets, func(a, b Socket) bool { return compareEndpoint(a, b) == 0 })
	s.sockets = slices.Clip(s.sockets)
	for _, sk := range s.sockets {
		i := protoIndex(sk.Proto)
		v4, v6 := sk.wildcard()
		switch {
		case v4 || v6:
			if v4 {
				s.any4[i].set(sk.Port)
			}
			if v6 {
				s.any6[i].set(sk.Port)
			}
		default:
			if s.exact == nil {
				s.exact = make(map[addrKey]struct{})
			}
			s.exact[addrKey{sk.Addr, sk.Port, sk.Proto}] = struct{}{}
		}
	}
	return s
}

// InUse reports whether a packet of protocol proto to dst, port would reach
// a socket of the set (see Covers). It does not allocate.
func (s *Set) InUse(proto uint8, dst netip.Addr, port uint16) bool {
	if s == nil {
		return false
	}
	i := protoIndex(proto)
	if i < 0 {
		return false
	}
	dst = dst.Unmap()
	switch {
	case dst.Is4():
		if s.any4[i].has(port) {
			return true
		}
	case dst.Is6():
		if s.any6[i].has(port) {
			return true
		}
	default:
		return false
	}
	if s.exact == nil {
		return false
	}
	_, ok := s.exact[addrKey{dst.WithZone(""), port, proto}]
	return ok
}

// Sockets returns the sockets of the set, sorted by protocol, port, address
// and V6Only, one per address and port. The slice is shared: do not modify it.
func (s *Set) Sockets() []Socket {
	if s == nil {
		return nil
	}
	return s.sockets
}

// Len is the number of sockets in the set.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.sockets)
}

// Diff returns the sockets of next that are not in s (added) and those of s
// that are not in next (removed), comparing address, port, protocol and
// V6Only (not the inode). Both results are sorted; either may be nil.
func (s *Set) Diff(next *Set) (added, removed []Socket) {
	a, b := s.Sockets(), next.Sockets()
	for len(a) > 0 || len(b) > 0 {
		switch {
		case len(a) == 0:
			added = append(added, b...)
			b = nil
		case len(b) == 0:
			removed = append(removed, a...)
			a = nil
		default:
			switch c := compareEndpoint(a[0], b[0]); {
			case c < 0:
				removed = append(removed, a[0])
				a = a[1:]
			case c > 0:
				added = append(added, b[0])
				b = b[1:]
			default:
				a, b = a[1:], b[1:]
			}
		}
	}
	return added, removed
}
