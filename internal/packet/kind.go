package packet

import "strconv"

// Proto is an IP protocol number (the IPv4 protocol field or the IPv6
// upper-layer next header).
type Proto uint8

// The transport protocols Decode understands.
const (
	TCP Proto = 6
	UDP Proto = 17
)

// String returns "TCP", "UDP" or "proto N".
func (p Proto) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	}
	return "proto " + strconv.Itoa(int(p))
}

// TCPFlags holds the TCP flag byte with its bits as on the wire.
type TCPFlags uint8

// TCP flag bits.
const (
	FlagFIN TCPFlags = 0x01
	FlagSYN TCPFlags = 0x02
	FlagRST TCPFlags = 0x04
	FlagPSH TCPFlags = 0x08
	FlagACK TCPFlags = 0x10
	FlagURG TCPFlags = 0x20
	FlagECE TCPFlags = 0x40
	FlagCWR TCPFlags = 0x80
)

// classicFlags are the six flags of RFC 793; ECE and CWR (RFC 3168) are
// congestion signalling and say nothing about what kind of probe a
// segment is.
const classicFlags = FlagFIN | FlagSYN | FlagRST | FlagPSH | FlagACK | FlagURG

// flagNames is indexed by bit number.
var flagNames = [8]string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}

// String returns the set flags joined by "|" in bit order, for example
// "SYN" or "FIN|PSH|URG", or "none" when no flag is set.
func (f TCPFlags) String() string {
	if f == 0 {
		return "none"
	}
	var buf [len("FIN|SYN|RST|PSH|ACK|URG|ECE|CWR")]byte
	b := buf[:0]
	for i, name := range flagNames {
		if f&(1<<i) == 0 {
			continue
		}
		if len(b) > 0 {
			b = append(b, '|')
		}
		b = append(b, name...)
	}
	return string(b)
}

// Kind is what a packet looks like to a port-scan detector.
type Kind uint8

// Kinds of probe. Their String values are the scan names used in log lines
// and must not change.
const (
	// KindNone is not a probe: TCP with ACK or RST set (replies,
	// established traffic).
	KindNone Kind = iota
	// KindSYN is a connection-opening SYN (no FIN, ACK or RST) from a
	// raw-socket scanner: no SACK-permitted or timestamp option.
	KindSYN
	// KindConnect is a connection-opening SYN from an operating system's
	// TCP stack: it carries SACK-permitted and/or timestamp options.
	KindConnect
	// KindFIN is exactly FIN.
	KindFIN
	// KindNULL has no flags at all.
	KindNULL
	// KindXMAS is exactly FIN|PSH|URG.
	KindXMAS
	// KindUnknown is any other flag combination without ACK or RST, for
	// example SYN|FIN, PSH alone or FIN|URG.
	KindUnknown
	// KindUDP is any UDP datagram.
	KindUDP
)

// NumKinds is the number of kinds, for sizing arrays indexed by Kind.
const NumKinds = int(KindUDP) + 1

var kindNames = [NumKinds]string{
	KindNone:    "not a probe",
	KindSYN:     "TCP SYN scan",
	KindConnect: "TCP connect",
	KindFIN:     "TCP FIN scan",
	KindNULL:    "TCP NULL scan",
	KindXMAS:    "TCP XMAS scan",
	KindUnknown: "TCP unknown-flags scan",
	KindUDP:     "UDP scan",
}

// String returns the scan name used in attackalert log lines, for example
// "TCP SYN scan"; KindNone is "not a probe".
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind " + strconv.Itoa(int(k))
}

// Classify returns the kind of a TCP segment with the given flags.
// stackSYN reports whether the segment's options show that an operating
// system's TCP stack sent it (SACK-permitted or timestamp present); it only
// matters for a connection-opening SYN, which it turns from KindSYN into
// KindConnect.
//
// Only the six classic flags count; ECE and CWR are ignored. A SYN without
// FIN, ACK or RST is a SYN whatever PSH and URG say, because that is what
// a listening TCP stack accepts as a connection request.
func Classify(flags TCPFlags, stackSYN bool) Kind {
	f := flags & classicFlags
	switch {
	case f&(FlagACK|FlagRST) != 0:
		return KindNone
	case f == 0:
		return KindNULL
	case f == FlagFIN:
		return KindFIN
	case f == FlagFIN|FlagPSH|FlagURG:
		return KindXMAS
	case f&(FlagSYN|FlagFIN) == FlagSYN:
		if stackSYN {
			return KindConnect
		}
		return KindSYN
	}
	return KindUnknown
}
