package nft

import (
	"net/netip"

	"github.com/google/nftables/expr"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// IPv6 by prefix (detect.prefix6_sources): a scanner that takes a new
// address of its /64 for every probe would learn as much as it likes from
// blocks of single addresses. The daemon blocks the /64 instead, in
// blocked6_64: a hash set of /64 prefixes (their first address), matched
// on the source masked to 64 bits. Interval sets would hold prefixes as
// they are, but nothing can be added to them from the packet path; a hash
// set can, should the kernel strike per /64 one day. A peer's own address
// (peers6) stays reachable inside a blocked /64.
const (
	SetBlocked64 = "blocked6_64"
	// Blocked64Size caps blocked6_64.
	Blocked64Size = 1 << 14
)

// prefix64On reports whether the ruleset has blocked6_64.
func prefix64On(cfg *config.Config) bool { return cfg.Detect.Prefix6Sources > 0 }

// IsPrefix64 reports whether p is an IPv6 /64 as blocked6_64 holds it
// (its host bits zero).
func IsPrefix64(p netip.Prefix) bool {
	return p.Addr().Is6() && !p.Addr().Is4In6() && p.Bits() == 64 && p.Masked() == p
}

// Prefix64 is the /64 of a, as blocked6_64 holds it.
func Prefix64(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, 64).Masked() }

// blocked64Set declares blocked6_64: its elements are the daemon's, kept
// over a reinstall like blocked6's.
func blocked64Set() *setDef {
	return &setDef{name: SetBlocked64, key: keyIPv6, timeout: true, size: Blocked64Size, keep: true}
}

// blocked64Drop drops sources of a blocked /64, but a peer's own address.
func (rs *Ruleset) blocked64Drop(c *chainDef) {
	frags := []fragment{saddr64In(SetBlocked64)}
	if rs.peerWindow > 0 {
		frags = append(frags, saddrIn(keyIPv6, SetPeers6, true))
	}
	c.add(append(frags, counter(), verdict(expr.VerdictDrop))...)
}

// saddr64In matches the IPv6 source's /64 against set
// (ip6 saddr & ffff:ffff:ffff:ffff:: @set).
func saddr64In(set string) fragment {
	mask := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0}
	ex := append(nfproto(keyIPv6),
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 16, Mask: mask, Xor: make([]byte, 16)},
		lookup(set, false))
	return fragment{text: "ip6 saddr & ffff:ffff:ffff:ffff:: @" + set, exprs: ex}
}
