package nft

import (
	"time"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// Peers (block.peer_window): an address with a TCP connection to this host
// whose handshake completed is a peer, and one packet anyone can forge
// from its address must neither block it nor end its sessions. The packet
// path keeps the sets peers/peers6 current: every TCP packet into the host
// of a connection conntrack holds as assured (a completed handshake; a
// forged SYN, a repeated one or a ping reaches "established" but never
// "assured") refreshes its source for the window. The probe rules log a
// peer's probes under a prefix of their own before the first strike (so
// the kernel never strikes a peer), and the decision asks for
// decide.PeerPorts ports before it blocks one.
const (
	SetPeers  = "peers"
	SetPeers6 = "peers6"
	// PeersSize caps each peers set. A full set takes no new peer until
	// elements expire (a new peer is then blocked as any source is); only
	// completed handshakes fill it.
	PeersSize = 1 << 16
)

// ipsAssured is conntrack's IPS_ASSURED status bit.
const ipsAssured = 1 << 2

// peerWindow is how long a source stays in peers/peers6; 0: no peers.
func peerWindow(cfg *config.Config) time.Duration { return time.Duration(cfg.Block.PeerWindow) }

// peerSets declares peers/peers6: their elements belong to the packet
// path, and a reinstall carries them over (keep), or a reload would make
// every peer blockable on one packet again.
func (rs *Ruleset) peerSets() {
	rs.sets = append(rs.sets,
		&setDef{name: SetPeers, key: keyIPv4, timeout: true, dynamic: true, size: PeersSize, keep: true},
		&setDef{name: SetPeers6, key: keyIPv6, timeout: true, dynamic: true, size: PeersSize, keep: true},
	)
}

// peerUpdates keeps peers/peers6 current. They come before the in-use
// rules, which return for traffic to a service (the connections that make
// peers), and before the interface filter: a peer is one on any interface.
func (rs *Ruleset) peerUpdates(c *chainDef) {
	for _, k := range []keyType{keyIPv4, keyIPv6} {
		c.add(tcpAssured(k), updateSaddr(k, peersOf(k), rs.peerWindow))
	}
}

// peerProbes logs the probes of peers under the protocol's peer prefix and
// returns: no first strike, and no second copy from the plain rule. In
// NFQUEUE mode there are none (a queued packet carries no prefix: the
// pipeline asks the peers sets itself).
func (rs *Ruleset) peerProbes(c *chainDef, probe fragment, prefix string) {
	if rs.peerWindow == 0 || rs.queued {
		return
	}
	for _, k := range []keyType{keyIPv4, keyIPv6} {
		c.add(probe, saddrIn(k, peersOf(k), false), rs.floodBound(), counter(), logGroup(prefix, rs.Group, rs.logQ), verdict(expr.VerdictReturn))
	}
}

func peersOf(k keyType) string {
	if k == keyIPv6 {
		return SetPeers6
	}
	return SetPeers
}

// tcpAssured matches TCP packets of family k whose connection completed
// its handshake (conntrack status assured).
func tcpAssured(k keyType) fragment {
	ex := append(nfproto(k),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		cmpEq([]byte{unix.IPPROTO_TCP}),
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ipsAssured), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)})
	return fragment{text: "meta l4proto tcp ct status assured", exprs: ex}
}

// updateSaddr adds the packet's source to set, or refreshes its timeout
// (nft: update @set { ip saddr timeout 30m }).
func updateSaddr(k keyType, set string, timeout time.Duration) fragment {
	f := addSaddr(k, set, timeout)
	f.text = "update" + f.text[len("add"):]
	d := *f.exprs[1].(*expr.Dynset)
	d.Operation = unix.NFT_DYNSET_OP_UPDATE
	f.exprs[1] = &d
	return f
}
