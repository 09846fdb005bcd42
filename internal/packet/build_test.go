package packet

import (
	"encoding/binary"
	"net/netip"
)

// Builders for real packets: full headers with lengths and checksums
// filled in, as a kernel or a scanner would put them on the wire.

var (
	src4 = netip.MustParseAddr("192.0.2.1")
	dst4 = netip.MustParseAddr("198.51.100.2")
	src6 = netip.MustParseAddr("2001:db8::1")
	dst6 = netip.MustParseAddr("2001:db8::2")
)

const (
	testSrcPort = 40000
	testDstPort = 2000
)

// TCP option lists as scanners and stacks send them on a SYN.
var (
	// nmap -sS: MSS only.
	optsMSS = []byte{2, 4, 0x05, 0xb4}
	// Linux connect(): MSS, SACK-permitted, timestamp, NOP, window scale.
	optsLinux = []byte{2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0, 1, 3, 3, 7}
	// Windows connect(): MSS, NOP, window scale, NOP, NOP, SACK-permitted.
	optsWindows = []byte{2, 4, 0x05, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2}
	// Timestamp only (SACK turned off).
	optsTSOnly = []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0}
)

// tcpHdr builds a TCP header with the given options, padded with
// end-of-options to a multiple of 4 bytes. The checksum is filled in by
// ip4 or ip6.
func tcpHdr(sport, dport uint16, flags TCPFlags, opts []byte) []byte {
	n := tcpHeaderLen + (len(opts)+3)&^3
	h := make([]byte, n)
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint32(h[4:], 0x1a2b3c4d) // sequence number
	if flags&FlagACK != 0 {
		binary.BigEndian.PutUint32(h[8:], 0x01020304)
	}
	h[12] = byte(n/4) << 4
	h[13] = byte(flags)
	binary.BigEndian.PutUint16(h[14:], 1024) // window
	copy(h[tcpHeaderLen:], opts)
	return h
}

// udpHdr builds a UDP header followed by payload.
func udpHdr(sport, dport uint16, payload []byte) []byte {
	h := make([]byte, udpHeaderLen+len(payload))
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint16(h[4:], uint16(len(h)))
	copy(h[udpHeaderLen:], payload)
	return h
}

func tcpSYN(opts []byte) []byte  { return tcpHdr(testSrcPort, testDstPort, FlagSYN, opts) }
func tcpFlags(f TCPFlags) []byte { return tcpHdr(testSrcPort, testDstPort, f, nil) }
func udpProbe() []byte           { return udpHdr(testSrcPort, testDstPort, nil) }

// csum adds b to a running ones'-complement sum.
func csum(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// setL4Checksum fills in the TCP or UDP checksum of l4, given the partial
// sum of the pseudo header (without protocol and length).
func setL4Checksum(pseudo uint32, proto byte, l4 []byte) {
	var at int
	switch Proto(proto) {
	case TCP:
		at = 16
	case UDP:
		at = 6
	default:
		return
	}
	if len(l4) < at+2 {
		return
	}
	l4[at], l4[at+1] = 0, 0
	sum := csum(pseudo+uint32(proto)+uint32(len(l4)), l4)
	binary.BigEndian.PutUint16(l4[at:], fold(sum))
}

// ip4 builds an IPv4 packet carrying l4 as protocol proto, with the IP
// options opts (a multiple of 4 bytes).
func ip4(proto byte, l4 []byte, opts ...byte) []byte {
	hl := ipv4HeaderLen + len(opts)
	b := make([]byte, hl+len(l4))
	b[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], 0x4242) // identification
	b[8] = 64                                 // TTL
	b[9] = proto
	s, d := src4.As4(), dst4.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[ipv4HeaderLen:], opts)
	binary.BigEndian.PutUint16(b[10:], fold(csum(0, b[:hl])))
	copy(b[hl:], l4)
	setL4Checksum(csum(csum(0, s[:]), d[:]), proto, b[hl:])
	return b
}

// ext is an IPv6 extension header. Its next-header byte is filled in by ip6.
type ext struct {
	typ  byte
	data []byte
}

// padOpts builds a hop-by-hop or destination options header of 8 bytes
// holding one PadN option.
func padOpts(typ byte) ext { return ext{typ, []byte{0, 0, 1, 4, 0, 0, 0, 0}} }

func hopByHop() ext { return padOpts(nhHopByHop) }

// bigDestOpts builds a destination options header of n bytes (a multiple
// of 8, at most 2048) holding PadN options.
func bigDestOpts(n int) ext {
	d := make([]byte, n)
	d[1] = byte(n/8 - 1)
	for i := 2; i < n; {
		if n-i == 1 {
			break // one byte left: Pad1 (zero)
		}
		l := min(n-i-2, 255)
		d[i], d[i+1] = 1, byte(l)
		i += 2 + l
	}
	return ext{nhDestOpts, d}
}

// ipOpts is n bytes (a multiple of 4, at most 40) of IPv4 NOP options
// ended by end-of-options.
func ipOpts(n int) []byte {
	o := make([]byte, n)
	for i := range n - 1 {
		o[i] = 1
	}
	return o
}
func destOpts() ext { return padOpts(nhDestOpts) }

// routing builds a type 4 (segment routing) header with no segments left
// and one segment.
func routing() ext {
	d := make([]byte, 24)
	d[1] = 2 // (2+1)*8 = 24 bytes
	d[2] = 4
	copy(d[8:], dst6.AsSlice())
	return ext{nhRouting, d}
}

// fragment builds a fragment header at fragment offset off (in 8-byte
// units), with the more-fragments flag set as given.
func fragment(off uint16, more bool) ext {
	d := make([]byte, 8)
	v := off << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(d[2:], v)
	binary.BigEndian.PutUint32(d[4:], 0xdeadbeef)
	return ext{nhFragment, d}
}

// authHeader builds an AH with a 12-byte ICV: 24 bytes, length field 4.
func authHeader() ext {
	d := make([]byte, 24)
	d[1] = 4
	binary.BigEndian.PutUint32(d[4:], 0x100) // SPI
	binary.BigEndian.PutUint32(d[8:], 1)     // sequence number
	return ext{nhAH, d}
}

// ip6 builds an IPv6 packet: the extension headers in order, then l4 as
// upper-layer protocol proto.
func ip6(proto byte, l4 []byte, exts ...ext) []byte {
	n := ipv6HeaderLen
	for _, e := range exts {
		n += len(e.data)
	}
	b := make([]byte, n+len(l4))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-ipv6HeaderLen))
	b[7] = 64 // hop limit
	s, d := src6.As16(), dst6.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	nextAt := 6
	off := ipv6HeaderLen
	for _, e := range exts {
		b[nextAt] = e.typ
		copy(b[off:], e.data)
		nextAt = off
		off += len(e.data)
	}
	b[nextAt] = proto
	copy(b[off:], l4)
	setL4Checksum(csum(csum(0, s[:]), d[:]), proto, b[off:])
	return b
}

// with returns a copy of b changed by f.
func with(b []byte, f func(b []byte)) []byte {
	c := append([]byte(nil), b...)
	f(c)
	return c
}
