package nft

import (
	"net/netip"

	"github.com/google/nftables"
)

// Names fixed for users (README, "Names fixed for users"): scripts and
// admins rely on them.
const (
	TableName       = "portsentry"
	SetBlocked      = "blocked"
	SetBlocked6     = "blocked6"
	ChainInput      = "input"
	ChainPrerouting = "prerouting"
	ChainForward    = "forward"
	setIgnore       = "ignore"
	setIgnore6      = "ignore6"
	setTCPPorts     = "tcp_ports"
	setUDPPorts     = "udp_ports"
	setIfaces       = "interfaces"
	setWatch        = "watch_addr"
	setWatch6       = "watch_addr6"
	// The guard rails of the kernel's first strike (Shape.Protected): the
	// host's own addresses, default gateways, nameservers and never_block,
	// which the add rules skip, and the limit they share.
	SetProtected  = "protected"
	SetProtected6 = "protected6"
	// seen/seen6: sources whose probe fell through the first strike (over
	// its cap) in the last SeenTimeout; their next probe strikes within a
	// cap of its own (LimitStrikeSeen), which a spoofed flood, each source
	// seen once, never reaches.
	SetSeen  = "seen"
	SetSeen6 = "seen6"
	// seen_port/seen_port6: the ports those sources probed, so that only
	// a probe of another port strikes within LimitStrikeSeen.
	SetSeenPort     = "seen_port"
	SetSeenPort6    = "seen_port6"
	LimitStrike     = "strike"
	LimitStrikeSeen = "strike_seen"
	// The in-use sets (Shape.InUse): monitored ports with a live listener
	// on every address, and (address . port) pairs for one address.
	setTCPInUse   = "tcp_inuse"
	setTCPInUse4  = "tcp_inuse4"
	setTCPInUse6  = "tcp_inuse6"
	setUDPInUse   = "udp_inuse"
	setUDPInUse4  = "udp_inuse4"
	setUDPInUse6  = "udp_inuse6"
	chainPriority = -10 // before the usual filter chains (priority 0), after conntrack (-200)
)

// Table is the nftables table every object of ours lives in.
func Table() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
}

// SetOf is the set that holds a's block: blocked or blocked6.
func SetOf(a netip.Addr) string {
	if a.Is6() {
		return SetBlocked6
	}
	return SetBlocked
}
