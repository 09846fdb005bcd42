package packet

import (
	"encoding/binary"
	"errors"
	"math"
	"net/netip"

	"github.com/portsentry-nft/portsentry-nft/internal/scanner"
)

// Probe is what Decode extracts from one packet.
type Probe struct {
	Src, Dst         netip.Addr // IPv4 addresses for IPv4 packets, IPv6 (never unmapped) for IPv6
	Proto            Proto      // TCP or UDP
	SrcPort, DstPort uint16
	Flags            TCPFlags // TCP only; 0 for UDP
	Kind             Kind
	// Tool is the scanner that sent it, as its headers say
	// (internal/scanner); Unknown when the transport header was not read.
	Tool scanner.Tool
}

// Errors returned by Decode. They are returned as is, never wrapped, so
// that Decode does not allocate; test them with errors.Is.
var (
	ErrTruncated = errors.New("packet: truncated")          // shorter than a header says
	ErrVersion   = errors.New("packet: not IPv4 or IPv6")   // version nibble is not 4 or 6
	ErrHeader    = errors.New("packet: malformed header")   // e.g. IHL < 5, TCP data offset < 5, total length < header
	ErrFragment  = errors.New("packet: non-first fragment") // no transport header to read
	ErrProto     = errors.New("packet: not TCP or UDP")     // incl. ICMP, ESP, no next header
	// ErrTransportUnreachable: the IP header is valid, but the transport
	// header lies past the bytes captured (the copy was cut by the snap
	// length behind long IPv6 extension headers or IPv4 options). Decode
	// still fills in Src and Dst: who sent the packet is known, its ports
	// and flags are not.
	ErrTransportUnreachable = errors.New("packet: transport header not captured")
)

const (
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	tcpHeaderLen  = 20
	udpHeaderLen  = 8
)

// IPv6 next-header values of extension headers and of the payloads that
// end a walk without a transport header.
const (
	nhHopByHop = 0
	nhRouting  = 43
	nhFragment = 44
	nhESP      = 50
	nhAH       = 51
	nhNone     = 59
	nhDestOpts = 60
)

// Decode parses one packet that starts at the IPv4 or IPv6 header (the
// version nibble decides) into *p, without allocating.
//
// The capture may be cut short by a snap length: Decode needs only the
// IP header (and IPv6 extension headers), the first 20 bytes of TCP or 8
// of UDP, and reads TCP options only as far as they were captured. The
// IPv4 total length is used only to reject malformed headers and to tell
// a cut copy from a short packet, never to demand the whole payload.
//
// IPv6 extension headers are walked for as long as the copy lasts: each is
// at least 8 bytes, so the walk is bounded by the copy's length, and no
// count of headers is too many.
//
// A TCP segment with ACK or RST set decodes without error and has Kind
// KindNone, so callers can count replies separately from garbage.
//
// When the fixed IP header is valid but the copy ends before the transport
// header does, and the packet's own length says it goes on (the copy was
// cut), Decode returns ErrTransportUnreachable and sets *p to a Probe that
// holds only Src and Dst: the caller may still know from elsewhere (the
// rule that logged the packet) that it was a probe. On any other error
// Decode returns one of ErrTruncated, ErrVersion, ErrHeader, ErrFragment
// or ErrProto, unwrapped, and leaves *p unchanged.
func Decode(b []byte, p *Probe) error {
	if len(b) == 0 {
		return ErrTruncated
	}
	switch b[0] >> 4 {
	case 4:
		return decode4(b, p)
	case 6:
		return decode6(b, p)
	}
	return ErrVersion
}

func decode4(b []byte, p *Probe) error {
	hl := int(b[0]&0x0f) * 4
	if hl < ipv4HeaderLen {
		return ErrHeader
	}
	if len(b) < ipv4HeaderLen {
		return ErrTruncated
	}
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if total < hl {
		if len(b) < hl {
			return ErrTruncated // the packet ends inside its own header
		}
		return ErrHeader
	}
	// Fragment offset is the low 13 bits; a first fragment (offset 0,
	// more-fragments set) still starts with the transport header.
	if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
		return ErrFragment
	}
	src, dst := netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
	if len(b) < hl {
		return cut(b, total, src, dst, p)
	}
	f := scanner.Fields{TTL: b[8], IPID: binary.BigEndian.Uint16(b[4:6]), Dst4: binary.BigEndian.Uint32(b[16:20])}
	err := decodeTransport(b[hl:], Proto(b[9]), src, dst, &f, p)
	if err == ErrTruncated {
		return cut(b, total, src, dst, p)
	}
	return err
}

func decode6(b []byte, p *Probe) error {
	if len(b) < ipv6HeaderLen {
		return ErrTruncated
	}
	// A payload length of 0 is a jumbogram or a GRO super-packet: its
	// length is not here, so any copy may have been cut.
	end := ipv6HeaderLen + int(binary.BigEndian.Uint16(b[4:6]))
	if end == ipv6HeaderLen {
		end = math.MaxInt
	}
	src, dst := netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
	next := b[6]
	off := ipv6HeaderLen
	// Every extension header moves off on by 8 bytes or more, and every
	// pass reads at off first: the walk ends within len(b)/8+1 passes.
	for {
		switch next {
		case byte(TCP), byte(UDP):
			if off > len(b) {
				return cut(b, end, src, dst, p)
			}
			f := scanner.Fields{IPv6: true, TTL: b[7]}
			err := decodeTransport(b[off:], Proto(next), src, dst, &f, p)
			if err == ErrTruncated {
				return cut(b, end, src, dst, p)
			}
			return err
		case nhHopByHop, nhRouting, nhDestOpts:
			// Next header, length in 8-octet units not counting the first.
			if len(b)-off < 2 {
				return cut(b, end, src, dst, p)
			}
			next = b[off]
			off += (int(b[off+1]) + 1) * 8
		case nhFragment:
			// Next header, reserved, offset (13 bits) + flags, identification.
			if len(b)-off < 8 {
				return cut(b, end, src, dst, p)
			}
			if binary.BigEndian.Uint16(b[off+2:off+4])>>3 != 0 {
				return ErrFragment
			}
			next = b[off]
			off += 8
		case nhAH:
			// Next header, length in 4-octet units minus 2.
			if len(b)-off < 2 {
				return cut(b, end, src, dst, p)
			}
			next = b[off]
			off += (int(b[off+1]) + 2) * 4
		default: // ESP (encrypted), no next header, ICMPv6, anything else
			return ErrProto
		}
	}
}

// cut is the error for a copy b that ends before the transport header
// does. When the packet's own length (end: the IPv4 total length, the IPv6
// header plus payload length) says it is longer than b, the copy was cut:
// *p gets the addresses and the error is ErrTransportUnreachable. When the
// packet itself ends there, it is malformed: ErrTruncated, *p unchanged.
func cut(b []byte, end int, src, dst netip.Addr, p *Probe) error {
	if len(b) >= end {
		return ErrTruncated
	}
	*p = Probe{Src: src, Dst: dst}
	return ErrTransportUnreachable
}

// decodeTransport reads the TCP or UDP header at the start of t and, on
// success only, fills *p; f holds the IP header's fields the scanner's
// name needs, and gets the transport's.
func decodeTransport(t []byte, proto Proto, src, dst netip.Addr, f *scanner.Fields, p *Probe) error {
	switch proto {
	case TCP:
		if len(t) < tcpHeaderLen {
			return ErrTruncated
		}
		doff := int(t[12]>>4) * 4
		if doff < tcpHeaderLen {
			return ErrHeader
		}
		flags := TCPFlags(t[13])
		opts := t[tcpHeaderLen:min(doff, len(t))]
		stack := false
		if flags&(FlagSYN|FlagFIN|FlagACK|FlagRST) == FlagSYN {
			stack = stackSYNOptions(opts)
		}
		f.Proto, f.Flags, f.Options = scanner.TCP, uint8(flags), opts
		f.Seq, f.Window = binary.BigEndian.Uint32(t[4:8]), binary.BigEndian.Uint16(t[14:16])
		*p = Probe{
			Src:     src,
			Dst:     dst,
			Proto:   TCP,
			SrcPort: binary.BigEndian.Uint16(t[0:2]),
			DstPort: binary.BigEndian.Uint16(t[2:4]),
			Flags:   flags,
			Kind:    Classify(flags, stack),
		}
		p.Tool = identify(f, t)
		return nil
	case UDP:
		if len(t) < udpHeaderLen {
			return ErrTruncated
		}
		*p = Probe{
			Src:     src,
			Dst:     dst,
			Proto:   UDP,
			SrcPort: binary.BigEndian.Uint16(t[0:2]),
			DstPort: binary.BigEndian.Uint16(t[2:4]),
			Kind:    KindUDP,
		}
		f.Proto = scanner.UDP
		f.PayloadLen = int(binary.BigEndian.Uint16(t[4:6])) - udpHeaderLen
		f.Payload = t[udpHeaderLen:]
		p.Tool = identify(f, t)
		return nil
	}
	return ErrProto
}

// identify completes f with the ports of transport header t and names
// the scanner.
func identify(f *scanner.Fields, t []byte) scanner.Tool {
	f.SrcPort, f.DstPort = binary.BigEndian.Uint16(t[0:2]), binary.BigEndian.Uint16(t[2:4])
	return scanner.Identify(f)
}

// TCP option kinds.
const (
	optEnd           = 0
	optNOP           = 1
	optSACKPermitted = 4 // length 2
	optTimestamp     = 8 // length 10
)

// stackSYNOptions reports whether TCP options o contain a well-formed
// SACK-permitted or timestamp option, which operating system stacks put on
// their SYNs and raw-socket scanners do not. It stops at the end-of-options
// option, at a malformed length, or at an option that runs past o.
func stackSYNOptions(o []byte) bool {
	for i := 0; i < len(o); {
		kind := o[i]
		switch kind {
		case optEnd:
			return false
		case optNOP:
			i++
			continue
		}
		if len(o)-i < 2 {
			return false
		}
		n := int(o[i+1])
		if n < 2 || n > len(o)-i {
			return false
		}
		if (kind == optSACKPermitted && n == 2) || (kind == optTimestamp && n == 10) {
			return true
		}
		i += n
	}
	return false
}
