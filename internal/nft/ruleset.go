package nft

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// keyType is the type of a set's keys.
type keyType int

const (
	keyIPv4 keyType = iota
	keyIPv6
	keyService
	keyIfname
	keyIPv4Service // ipv4_addr . inet_service
	keyIPv6Service // ipv6_addr . inet_service
)

func (k keyType) nft() (string, nftables.SetDatatype) {
	switch k {
	case keyIPv4:
		return "ipv4_addr", nftables.TypeIPAddr
	case keyIPv6:
		return "ipv6_addr", nftables.TypeIP6Addr
	case keyService:
		return "inet_service", nftables.TypeInetService
	case keyIPv4Service:
		return "ipv4_addr . inet_service", nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	case keyIPv6Service:
		return "ipv6_addr . inet_service", nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService)
	default:
		return "ifname", nftables.TypeIFName
	}
}

// interval is one closed range of keys, [lo, hi], encoded as the kernel
// stores them (network byte order; ifnames NUL-padded to 16 bytes). text is
// how nft(8) writes it.
type interval struct {
	lo, hi []byte
	text   string
}

// setDef describes one named set of the ruleset.
type setDef struct {
	name     string
	key      keyType
	interval bool
	timeout  bool
	size     int
	elems    []interval
	// keep marks sets whose elements belong to the running daemon, not to
	// the configuration (blocked, blocked6): reinstalling never touches them.
	keep bool
	// inuse marks the sets of ports with live listeners (SetInUse).
	inuse bool
}

// ruleDef is one rule: nft text and the netlink expressions it compiles to,
// built together from fragments so that the two cannot drift apart.
type ruleDef struct {
	text  string
	exprs []expr.Any
}

// chainDef is one base chain and its rules.
type chainDef struct {
	name     string
	hook     *nftables.ChainHook
	hookText string
	prio     int
	prioText string
	rules    []ruleDef
}

// Ruleset is the complete description of table inet portsentry for one
// configuration.
type Ruleset struct {
	sets   []*setDef
	chains []*chainDef
	// Group is the NFLOG group the log rules send to.
	Group uint16
	// Queue is the NFQUEUE number, when the probe rules queue (mode nfqueue).
	Queue  uint16
	queued bool
	logQ   uint16 // the log rules' queue-threshold: 1 when the group batches (see SetFlood)
	compat bool   // queue through the xtables NFQUEUE target (no nft_queue in the kernel)
}

// Build derives the ruleset from a validated configuration.
func Build(cfg *config.Config) *Ruleset {
	rs := &Ruleset{Group: uint16(cfg.Capture.Group), Queue: uint16(cfg.Capture.Queue), queued: cfg.Capture.Mode == "nfqueue"}
	if cfg.Capture.QueueThreshold > 1 {
		rs.logQ = 1
	}
	size := cfg.Block.SetSize
	rs.sets = append(rs.sets,
		&setDef{name: SetBlocked, key: keyIPv4, timeout: true, size: size, keep: true},
		&setDef{name: SetBlocked6, key: keyIPv6, timeout: true, size: size, keep: true},
	)
	var ign4, ign6 []netip.Prefix
	for _, p := range cfg.IgnorePrefixes {
		if p.Addr().Is4() {
			ign4 = append(ign4, p)
		} else {
			ign6 = append(ign6, p)
		}
	}
	rs.sets = append(rs.sets,
		&setDef{name: setIgnore, key: keyIPv4, interval: true, elems: prefixIntervals(ign4)},
		&setDef{name: setIgnore6, key: keyIPv6, interval: true, elems: prefixIntervals(ign6)},
	)
	if len(cfg.WatchAddrs) > 0 {
		var w4, w6 []netip.Prefix
		for _, a := range cfg.WatchAddrs {
			if a.Is4() {
				w4 = append(w4, netip.PrefixFrom(a, 32))
			} else {
				w6 = append(w6, netip.PrefixFrom(a, 128))
			}
		}
		rs.sets = append(rs.sets,
			&setDef{name: setWatch, key: keyIPv4, interval: true, elems: prefixIntervals(w4)},
			&setDef{name: setWatch6, key: keyIPv6, interval: true, elems: prefixIntervals(w6)},
		)
	}
	if !cfg.AllInterfaces {
		s := &setDef{name: setIfaces, key: keyIfname}
		for _, n := range cfg.Interfaces {
			k := ifname(n)
			s.elems = append(s.elems, interval{lo: k, hi: k, text: fmt.Sprintf("%q", n)})
		}
		rs.sets = append(rs.sets, s)
	}
	if len(cfg.TCP.Monitored) > 0 {
		rs.sets = append(rs.sets, &setDef{name: setTCPPorts, key: keyService, interval: true, elems: portIntervals(cfg.TCP.Monitored)})
	}
	if len(cfg.UDP.Monitored) > 0 {
		rs.sets = append(rs.sets, &setDef{name: setUDPPorts, key: keyService, interval: true, elems: portIntervals(cfg.UDP.Monitored)})
	}

	// Routed traffic, optional: blocked sources dropped before routing and
	// before conntrack makes state for them (forwarded and DNAT'd traffic
	// too), and tripwires watched on forwarded traffic.
	if cfg.Routed.Block {
		pre := rs.chain(ChainPrerouting, nftables.ChainHookPrerouting, "prerouting", int(*nftables.ChainPriorityRaw), "raw")
		pre.add(saddrIn(keyIPv4, setIgnore, false), verdict(expr.VerdictReturn))
		pre.add(saddrIn(keyIPv6, setIgnore6, false), verdict(expr.VerdictReturn))
		pre.add(saddrIn(keyIPv4, SetBlocked, false), counter(), verdict(expr.VerdictDrop))
		pre.add(saddrIn(keyIPv6, SetBlocked6, false), counter(), verdict(expr.VerdictDrop))
	}

	// The input chain, in order: loopback and ignored sources are never
	// looked at; blocked sources are dropped on every interface; then only the
	// watched interfaces and addresses; then probes of monitored ports go to
	// the daemon.
	in := rs.chain(ChainInput, nftables.ChainHookInput, "input", chainPriority, "filter - 10")
	rule := in.add
	rule(iifLoopback(), verdict(expr.VerdictReturn))
	rule(saddrIn(keyIPv4, setIgnore, false), verdict(expr.VerdictReturn))
	rule(saddrIn(keyIPv6, setIgnore6, false), verdict(expr.VerdictReturn))
	rule(saddrIn(keyIPv4, SetBlocked, false), counter(), verdict(expr.VerdictDrop))
	rule(saddrIn(keyIPv6, SetBlocked6, false), counter(), verdict(expr.VerdictDrop))
	if !cfg.AllInterfaces {
		rule(iifnameIn(setIfaces, true), verdict(expr.VerdictReturn))
	}
	if len(cfg.WatchAddrs) > 0 {
		rule(daddrIn(keyIPv4, setWatch, true), verdict(expr.VerdictReturn))
		rule(daddrIn(keyIPv6, setWatch6, true), verdict(expr.VerdictReturn))
	}
	// Ports with a live listener are never tripwires: the daemon keeps these
	// sets equal to the host's listening sockets (SetInUse, UpdateInUse).
	for _, p := range []struct {
		name  string
		proto byte
		on    bool
	}{{"tcp", 6, len(cfg.TCP.Monitored) > 0}, {"udp", 17, len(cfg.UDP.Monitored) > 0}} {
		if !p.on {
			continue
		}
		rs.sets = append(rs.sets,
			&setDef{name: p.name + "_inuse", key: keyService, inuse: true},
			&setDef{name: p.name + "_inuse4", key: keyIPv4Service, inuse: true},
			&setDef{name: p.name + "_inuse6", key: keyIPv6Service, inuse: true},
		)
		rule(dportIn(p.proto, p.name, p.name+"_inuse"), verdict(expr.VerdictReturn))
		rule(daddrDportIn(keyIPv4, p.proto, p.name, p.name+"_inuse4"), verdict(expr.VerdictReturn))
		rule(daddrDportIn(keyIPv6, p.proto, p.name, p.name+"_inuse6"), verdict(expr.VerdictReturn))
	}
	rs.probeRules(in, cfg)
	if cfg.Routed.Watch {
		fwd := rs.chain(ChainForward, nftables.ChainHookForward, "forward", chainPriority, "filter - 10")
		fwd.add(saddrIn(keyIPv4, setIgnore, false), verdict(expr.VerdictReturn))
		fwd.add(saddrIn(keyIPv6, setIgnore6, false), verdict(expr.VerdictReturn))
		fwd.add(saddrIn(keyIPv4, SetBlocked, false), counter(), verdict(expr.VerdictDrop))
		fwd.add(saddrIn(keyIPv6, SetBlocked6, false), counter(), verdict(expr.VerdictDrop))
		rs.probeRules(fwd, cfg)
	}
	return rs
}

// probeRules sends probes of the monitored ports to the daemon.
func (rs *Ruleset) probeRules(ch *chainDef, cfg *config.Config) {
	if len(cfg.TCP.Monitored) > 0 {
		// No ACK or RST: SYN, FIN, NULL, XMAS and odd flag sets are probes;
		// replies to our own connections carry ACK. The flags are enough,
		// with no conntrack lookup: TCP probes are seen on hosts that
		// untrack their traffic (notrack), and a rule of ours is no reason
		// for the kernel to track every spoofed SYN.
		ch.add(dportIn(6, "tcp", setTCPPorts), tcpFlagsNone(0x10|0x04, "ack | rst"), counter(), rs.toDaemon())
	}
	if len(cfg.UDP.Monitored) > 0 {
		// pkttype host: broadcasts and multicasts (DHCP, NetBIOS) are no scans;
		// ct state new: replies to our own queries are not either (several
		// monitored ports lie in the kernel's ephemeral range 32768-60999).
		ch.add(dportIn(17, "udp", setUDPPorts), pkttypeHost(), ctState(ctNew, "new"), counter(), rs.toDaemon())
	}
}

// toDaemon is how a probe reaches the daemon: a copy to NFLOG, or the
// packet itself to NFQUEUE, bypassed (accepted) when no daemon listens.
func (rs *Ruleset) toDaemon() fragment {
	if rs.queued {
		return queueTo(rs.Queue)
	}
	return logGroup(rs.Group, rs.logQ)
}

// SetFlood lets the kernel gather log messages in batches of the NFLOG
// group's queue threshold (capture.queue_threshold) instead of sending each
// at once: a flood needs it, or NFLOG drops messages. The kernel takes the
// smaller of the rule's and the group's threshold, so the rules normally
// carry queue-threshold 1 (each probe at once, the lowest latency) and a
// flood drops it. No effect in NFQUEUE mode.
func (rs *Ruleset) SetFlood() {
	for _, c := range rs.chains {
		for i := range c.rules {
			r := &c.rules[i]
			for j, e := range r.exprs {
				if l, ok := e.(*expr.Log); ok && l.Key&(1<<unix.NFTA_LOG_QTHRESHOLD) != 0 {
					r.exprs[j] = logGroup(l.Group, 0).exprs[0]
					r.text = strings.Replace(r.text, logGroup(l.Group, 1).text, logGroup(l.Group, 0).text, 1)
				}
			}
		}
	}
}

// Queued reports whether probes go to NFQUEUE.
func (rs *Ruleset) Queued() bool { return rs.queued }

// UseCompatQueue makes the probe rules queue through the xtables NFQUEUE
// target (nft_compat), for kernels built without nft_queue. The text form
// stays "queue num N bypass", what nft(8) would install on such kernels.
func (rs *Ruleset) UseCompatQueue() {
	if !rs.queued || rs.compat {
		return
	}
	rs.compat = true
	for _, c := range rs.chains {
		for i := range c.rules {
			for j, e := range c.rules[i].exprs {
				if q, ok := e.(*expr.Queue); ok {
					c.rules[i].exprs[j] = xtQueue(q.Num)
				}
			}
		}
	}
}

func (rs *Ruleset) chain(name string, hook *nftables.ChainHook, hookText string, prio int, prioText string) *chainDef {
	c := &chainDef{name: name, hook: hook, hookText: hookText, prio: prio, prioText: prioText}
	rs.chains = append(rs.chains, c)
	return c
}

func (c *chainDef) add(frags ...fragment) { c.rules = append(c.rules, join(frags)) }

// Text renders the ruleset as nft(8) input.
func (rs *Ruleset) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", TableName)
	for _, s := range rs.sets {
		typ, _ := s.key.nft()
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n", s.name, typ)
		if s.size > 0 {
			fmt.Fprintf(&b, "\t\tsize %d\n", s.size)
		}
		switch {
		case s.timeout:
			b.WriteString("\t\tflags timeout\n")
		case s.interval:
			b.WriteString("\t\tflags interval\n")
		}
		if len(s.elems) > 0 {
			b.WriteString("\t\telements = {")
			for i, e := range s.elems {
				if i > 0 {
					b.WriteString(",")
				}
				if i%8 == 0 {
					b.WriteString("\n\t\t\t")
				} else {
					b.WriteString(" ")
				}
				b.WriteString(e.text)
			}
			b.WriteString("\n\t\t}\n")
		}
		b.WriteString("\t}\n\n")
	}
	for i, c := range rs.chains {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype filter hook %s priority %s; policy accept;\n", c.name, c.hookText, c.prioText)
		for _, r := range c.rules {
			fmt.Fprintf(&b, "\t\t%s\n", r.text)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// prefixIntervals merges prefixes (overlapping or adjacent) into ranges.
func prefixIntervals(ps []netip.Prefix) []interval {
	type rng struct{ lo, hi netip.Addr }
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b netip.Prefix) int { return a.Masked().Addr().Compare(b.Masked().Addr()) })
	var rs []rng
	for _, p := range ps {
		p = p.Masked()
		lo := p.Addr()
		hi := lastAddr(p)
		if n := len(rs); n > 0 {
			if last := &rs[n-1]; !last.hi.Next().IsValid() || lo.Compare(last.hi.Next()) <= 0 {
				if hi.Compare(last.hi) > 0 {
					last.hi = hi
				}
				continue
			}
		}
		rs = append(rs, rng{lo, hi})
	}
	out := make([]interval, len(rs))
	for i, r := range rs {
		out[i] = interval{lo: r.lo.AsSlice(), hi: r.hi.AsSlice(), text: rangeText(r.lo, r.hi)}
	}
	return out
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// rangeText writes lo-hi as nft(8) prints it: an address, a prefix, or a range.
func rangeText(lo, hi netip.Addr) string {
	if lo == hi {
		return lo.String()
	}
	for bits := 0; bits <= lo.BitLen(); bits++ {
		p := netip.PrefixFrom(lo, bits)
		if p.Masked().Addr() == lo && lastAddr(p) == hi {
			return p.String()
		}
	}
	return lo.String() + "-" + hi.String()
}

// portIntervals merges sorted ports into ranges.
func portIntervals(ports []uint16) []interval {
	var out []interval
	for i := 0; i < len(ports); {
		j := i
		for j+1 < len(ports) && ports[j+1] == ports[j]+1 {
			j++
		}
		lo, hi := ports[i], ports[j]
		text := fmt.Sprint(lo)
		if hi != lo {
			text = fmt.Sprintf("%d-%d", lo, hi)
		}
		out = append(out, interval{lo: be16(lo), hi: be16(hi), text: text})
		i = j + 1
	}
	return out
}

func be16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

// ifname encodes an interface name as the kernel compares it: 16 bytes, NUL padded.
func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}

// InUse is what the in-use sets hold: ports with a listener on every
// address, and (address, port) pairs for listeners on one address.
type InUse struct {
	TCPAny, UDPAny []uint16
	TCP4, UDP4     []AddrPort
	TCP6, UDP6     []AddrPort
}

// AddrPort is one listener on one address.
type AddrPort struct {
	Addr netip.Addr
	Port uint16
}

// SetInUse puts the in-use elements into the ruleset, so that Install
// writes them in the same transaction as everything else.
func (rs *Ruleset) SetInUse(u InUse) {
	for _, s := range rs.sets {
		if !s.inuse {
			continue
		}
		s.elems = nil
		switch s.name {
		case "tcp_inuse":
			s.elems = portElems(u.TCPAny)
		case "udp_inuse":
			s.elems = portElems(u.UDPAny)
		case "tcp_inuse4":
			s.elems = pairElems(u.TCP4)
		case "udp_inuse4":
			s.elems = pairElems(u.UDP4)
		case "tcp_inuse6":
			s.elems = pairElems(u.TCP6)
		case "udp_inuse6":
			s.elems = pairElems(u.UDP6)
		}
	}
}

func portElems(ports []uint16) []interval {
	out := make([]interval, len(ports))
	for i, p := range ports {
		out[i] = interval{lo: be16(p), hi: be16(p), text: fmt.Sprint(p)}
	}
	return out
}

func pairElems(ps []AddrPort) []interval {
	out := make([]interval, len(ps))
	for i, p := range ps {
		// Concatenation fields each take whole 32-bit registers: the port is padded.
		k := append(p.Addr.AsSlice(), byte(p.Port>>8), byte(p.Port), 0, 0)
		out[i] = interval{lo: k, hi: k, text: fmt.Sprintf("%s . %d", p.Addr, p.Port)}
	}
	return out
}
