package listeners

import (
	"cmp"
	"net/netip"
	"strconv"
)

// IP protocol numbers of the sockets this package reports.
const (
	ProtoTCP uint8 = 6
	ProtoUDP uint8 = 17
)

// Socket is one listening TCP socket or one bound, unconnected UDP socket.
type Socket struct {
	// Proto is ProtoTCP or ProtoUDP.
	Proto uint8
	// Addr is the local address. The unspecified address (0.0.0.0 or ::)
	// means every address of its family; a :: socket without V6Only also
	// receives IPv4. IPv4-mapped addresses of IPv6 sockets are reported
	// unmapped (::ffff:10.0.0.1 as 10.0.0.1), since those sockets receive
	// IPv4 only.
	Addr netip.Addr
	// Port is the local port, never 0.
	Port uint16
	// Inode is the socket's inode number (the N of socket:[N] in
	// /proc/PID/fd), 0 when the kernel does not say; see ProcessName.
	Inode uint32
	// V6Only is set for IPv6 sockets with IPV6_V6ONLY (INET_DIAG_SKV6ONLY):
	// a :: socket with it receives IPv6 only.
	V6Only bool
}

// String writes the socket as "TCP 127.0.0.1:111" or "UDP [::]:69 (IPv6 only)".
func (s Socket) String() string {
	str := ProtoName(s.Proto) + " " + netip.AddrPortFrom(s.Addr, s.Port).String()
	if s.V6Only && s.Addr.Is6() && s.Addr.IsUnspecified() {
		str += " (IPv6 only)"
	}
	return str
}

// ProtoName is "TCP", "UDP", or the protocol number.
func ProtoName(proto uint8) string {
	switch proto {
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	}
	return strconv.Itoa(int(proto))
}

// Covers reports whether s receives packets sent to dst (on s.Port): dst is
// s's address, or s listens on the unspecified address of dst's family, or s
// is a dual-stack :: socket (no V6Only) and dst is IPv4. An IPv4-mapped dst
// (::ffff:a.b.c.d) is treated as the IPv4 address it maps; zones are ignored.
func Covers(s Socket, dst netip.Addr) bool {
	a := s.Addr.Unmap().WithZone("")
	dst = dst.Unmap().WithZone("")
	if !a.IsValid() || !dst.IsValid() {
		return false
	}
	if !a.IsUnspecified() {
		return a == dst
	}
	if a.Is4() {
		return dst.Is4()
	}
	return dst.Is6() || !s.V6Only
}

// wildcard says for which families s is a wildcard listener.
func (s Socket) wildcard() (v4, v6 bool) {
	a := s.Addr.Unmap()
	if !a.IsValid() || !a.IsUnspecified() {
		return false, false
	}
	if a.Is4() {
		return true, false
	}
	return !s.V6Only, true
}

// compareEndpoint orders sockets by protocol, port, address, V6Only: what
// makes two sockets the same for monitoring (the inode, which process holds
// the socket, does not matter).
func compareEndpoint(a, b Socket) int {
	if c := cmp.Compare(a.Proto, b.Proto); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Port, b.Port); c != 0 {
		return c
	}
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	if a.V6Only != b.V6Only {
		if !a.V6Only {
			return -1
		}
		return 1
	}
	return 0
}

// compareSocket is compareEndpoint, then the inode.
func compareSocket(a, b Socket) int {
	if c := compareEndpoint(a, b); c != 0 {
		return c
	}
	return cmp.Compare(a.Inode, b.Inode)
}
