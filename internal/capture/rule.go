package capture

// Rule is which of the ruleset's rules sent a packet to the daemon. NFLOG
// tells it by the log prefix each rule sets. The pipeline needs it for two
// things: what the kernel already did with the packet (nothing, a first
// strike, or a drop of a source it holds as blocked), and the protocol
// when the decoder cannot read the transport header (see
// packet.ErrTransportUnreachable): the rule that matched already found the
// transport header, however deep, so the packet was a probe of that
// protocol.
type Rule uint8

// The rules. NFQUEUE carries no prefix: its packets are RuleUnknown.
const (
	RuleUnknown Rule = iota // no prefix, or one that is not ours
	RuleTCP                 // the TCP probe rule: the daemon decides
	RuleUDP                 // the UDP probe rule: the daemon decides
	// RuleTCPStrike, RuleUDPStrike: the kernel's first strike added the
	// source to blocked/blocked6 and dropped the probe; the daemon follows.
	RuleTCPStrike
	RuleUDPStrike
	// RuleTCPAgain, RuleUDPAgain: a probe from a source the kernel holds as
	// blocked, dropped (a sample of them, limited): the second probe that
	// makes a block rest on more than one packet.
	RuleTCPAgain
	RuleUDPAgain
	// RuleTCPPeer, RuleUDPPeer: a probe from a peer of this host (an
	// address in peers/peers6: a TCP handshake with this host completed
	// lately). The kernel never strikes one; the decision needs more than
	// one forgeable packet (decide.PeerPorts) to block it.
	RuleTCPPeer
	RuleUDPPeer
)

// The NFLOG prefixes of the rules (nft: log prefix "..." group N). Short,
// as every log message carries one.
const (
	PrefixTCP       = "portsentry tcp"
	PrefixUDP       = "portsentry udp"
	PrefixTCPStrike = "portsentry tcp blocked"
	PrefixUDPStrike = "portsentry udp blocked"
	PrefixTCPAgain  = "portsentry tcp again"
	PrefixUDPAgain  = "portsentry udp again"
	PrefixTCPPeer   = "portsentry tcp peer"
	PrefixUDPPeer   = "portsentry udp peer"
)

var prefixes = map[string]Rule{
	PrefixTCP: RuleTCP, PrefixUDP: RuleUDP,
	PrefixTCPStrike: RuleTCPStrike, PrefixUDPStrike: RuleUDPStrike,
	PrefixTCPAgain: RuleTCPAgain, PrefixUDPAgain: RuleUDPAgain,
	PrefixTCPPeer: RuleTCPPeer, PrefixUDPPeer: RuleUDPPeer,
}

// RuleOf is the rule whose log prefix is prefix.
func RuleOf(prefix string) Rule { return prefixes[prefix] }

// UDP reports a rule of the UDP probes (else TCP, when known).
func (r Rule) UDP() bool {
	return r == RuleUDP || r == RuleUDPStrike || r == RuleUDPAgain || r == RuleUDPPeer
}

// Struck reports a first strike: the kernel blocked the source.
func (r Rule) Struck() bool { return r == RuleTCPStrike || r == RuleUDPStrike }

// Again reports a probe from a source the kernel holds as blocked.
func (r Rule) Again() bool { return r == RuleTCPAgain || r == RuleUDPAgain }

// Peer reports a probe from a peer of this host (the peer rules).
func (r Rule) Peer() bool { return r == RuleTCPPeer || r == RuleUDPPeer }

// String returns the rule's log prefix without "portsentry " ("tcp",
// "udp blocked", ...), or "unknown".
func (r Rule) String() string {
	for p, rr := range prefixes {
		if rr == r {
			return p[len("portsentry "):]
		}
	}
	return "unknown"
}
