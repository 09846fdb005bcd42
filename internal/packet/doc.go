// Package packet turns one raw packet, as the kernel copies it to user space
// over NFLOG or NFQUEUE (starting at the IPv4 or IPv6 header), into a Probe:
// who sent it, to which port, with which TCP flags, and which kind of port
// scan it looks like.
//
// It exists because this is the daemon's hot path. Every packet the
// nftables ruleset logs passes through Decode on the single capture
// goroutine, so decoding must be fast, must never allocate, and must treat
// its input as hostile: the sender controls every byte, and the capture may
// be cut short by the snap length. Decode reads only the headers it needs
// (IPv4 header or IPv6 header and extension headers, the first 20 bytes of
// TCP or 8 of UDP, and TCP options as far as they were captured), bounds
// every walk by the bytes captured, and reports problems with a small set
// of sentinel errors that callers test with errors.Is and can count without
// allocating.
//
// A sender can push the transport header past any snap length (a chain of
// IPv6 extension headers, one large destination options header), but not
// its own address, which sits in the fixed IP header. So when the copy ends
// before the transport header and the IP header says the packet goes on,
// Decode returns ErrTransportUnreachable with Src and Dst filled in: the
// caller, which knows which rule logged the packet, can still act on the
// sender.
//
// The standard library is enough for this job; a general packet library
// would add size and dependencies for no gain.
//
// # Scan kinds
//
// Classify maps TCP flags to a Kind whose String is the name PortSentry
// used in its log lines ("TCP SYN scan", "TCP FIN scan", ...). Only the six
// classic flag bits count; ECE and CWR never change the kind. A segment with
// ACK or RST set is a reply or part of an established connection, not a
// probe (KindNone).
//
// A bare SYN is either a half-open "TCP SYN scan" from a raw-socket scanner
// (nmap -sS, hping3, masscan) or a full "TCP connect" from an operating
// system's TCP stack (nmap -sT, telnet, a browser). Operating systems put
// the SACK-permitted or timestamp option on their SYNs; raw-socket scanners
// send no options or only an MSS. Decode uses that to tell them apart. A
// host with both SACK and timestamps turned off is therefore reported as a
// SYN scan, which is the more cautious name, not a missed probe.
//
// # The tool
//
// Decode also names the tool that sent a probe (Probe.Tool), from the
// header fields it reads anyway (IP ID, TTL, window, sequence number, TCP
// options): internal/scanner holds the rules, Decode hands it the fields
// without copying. A probe whose transport header was not captured has
// scanner.Unknown.
package packet
