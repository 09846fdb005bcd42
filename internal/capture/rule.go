package capture

// Rule is which of the ruleset's rules sent a packet to the daemon. NFLOG
// tells it by the log prefix each probe rule sets (PrefixTCP, PrefixUDP);
// the decoder needs it only when it cannot read the transport header (see
// packet.ErrTransportUnreachable): the rule that matched already found the
// transport header, however deep, so the packet was a probe of that
// protocol.
type Rule uint8

// The rules. NFQUEUE carries no prefix: its packets are RuleUnknown.
const (
	RuleUnknown Rule = iota // no prefix, or one that is not ours
	RuleTCP                 // the TCP probe rule
	RuleUDP                 // the UDP probe rule
)

// The NFLOG prefixes of the probe rules (nft: log prefix "..." group N).
// Short, as every log message carries one.
const (
	PrefixTCP = "portsentry tcp"
	PrefixUDP = "portsentry udp"
)

// RuleOf is the rule whose log prefix is prefix.
func RuleOf(prefix string) Rule {
	switch prefix {
	case PrefixTCP:
		return RuleTCP
	case PrefixUDP:
		return RuleUDP
	}
	return RuleUnknown
}

// String returns "tcp", "udp" or "unknown".
func (r Rule) String() string {
	switch r {
	case RuleTCP:
		return "tcp"
	case RuleUDP:
		return "udp"
	}
	return "unknown"
}
