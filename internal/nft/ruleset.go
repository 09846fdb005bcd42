package nft

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/portsentry-nft/portsentry-nft/internal/capture"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/listeners"
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
	// dynamic: rules add elements from the packet path (first strike).
	dynamic bool
	size    int
	elems   []interval
	// keep marks sets whose elements belong to the running daemon, not to
	// the configuration (blocked, blocked6): reinstalling never touches them.
	keep bool
	// inuse marks the sets of ports with live listeners (Shape.InUse).
	inuse bool
	// guard marks the sets of protected addresses (Shape.Protected).
	guard bool
	// transient marks sets whose elements the rules add and that live
	// briefly (seen, seen6): no one else's, and never checked.
	transient bool
}

// ruleDef is one rule: nft text and the netlink expressions it compiles to,
// built together from fragments so that the two cannot drift apart.
// comment, when set, is written as a "#" line above the rule.
type ruleDef struct {
	text    string
	comment string
	exprs   []expr.Any
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

// Shape is everything besides the configuration that shapes the ruleset.
// The zero Shape is the ruleset as shipped (nft/portsentry.nft for the
// default configuration): per-probe logging, the nft queue statement, no
// in-use elements.
type Shape struct {
	// Flood: the NFLOG rules drop "queue-threshold 1", so the kernel
	// gathers log messages in batches of the group's queue threshold
	// (capture.queue_threshold) instead of sending each at once. A flood
	// needs it, or NFLOG drops messages; normally each probe goes at once
	// (the kernel takes the smaller of the rule's and the group's
	// threshold). No effect in NFQUEUE mode or when the group's threshold
	// is 1 anyway.
	Flood bool
	// CompatQueue: the probe rules queue through the xtables NFQUEUE target
	// (nft_compat) instead of the nft queue statement, for kernels built
	// without nft_queue. No effect in NFLOG mode. See Text for how it is
	// written.
	CompatQueue bool
	// InUse holds the elements of the in-use sets: monitored ports with a
	// live listener, which the probe rules skip. It is listeners.Elements
	// as is; Build encodes it.
	InUse InUse
	// Protected holds the addresses the first strike never adds (the
	// guard's: local addresses, default gateways, nameservers, never_block;
	// guard.Guard.Prefixes). Only used when a probe rule strikes.
	Protected []netip.Prefix
	// LateDrop: no prerouting chain (unless routed.block); blocked sources
	// are dropped in the input hook only, after conntrack, as before the
	// early drop. For the benchmark that compares the two.
	LateDrop bool
}

// InUse is what the in-use sets hold, exactly as the listeners package
// computes it (listeners.Elements): the ruleset has one family-agnostic
// port set per protocol (tcp_inuse, udp_inuse, holding the union of the
// Any* lists) and one address . port set per protocol and family.
type InUse = listeners.KernelElements

// Ruleset is the complete description of table inet portsentry for one
// configuration and Shape.
type Ruleset struct {
	sets   []*setDef
	chains []*chainDef
	shape  Shape
	// Group is the NFLOG group the log rules send to.
	Group uint16
	// Queue is the NFQUEUE number, when the probe rules queue (mode nfqueue).
	Queue  uint16
	queued bool
	logQ   uint16 // the log rules' queue-threshold (0: none, the group's applies)
	// strikeTCP, strikeUDP: the probe rules of the protocol carry the
	// kernel's first strike (Strikes), which adds with strikeTimeout.
	strikeTCP, strikeUDP bool
	strikeTimeout        time.Duration
	strikeRate           map[string]int // by limit name
	// peerWindow: block.peer_window, how long peers/peers6 keep a source
	// (0: no peers; see peers.go).
	peerWindow time.Duration
	// floodRate: capture.flood_rate (floodBound).
	floodRate int
}

// Strikes reports which protocols' probe rules carry the kernel's first
// strike: the kernel adds the source of a probe to blocked/blocked6 and
// drops it in the probe's own packet path. It applies where the daemon
// has nothing to decide before the block: block.first_strike on, NFLOG
// capture (NFQUEUE holds the probe for the daemon anyway), scan_trigger 0
// or 1 (one probe is a scan), response block, TCP not in verified mode
// (only completed connections count there), and no command that must run
// before the block (first: true). Everything else keeps user-space
// detection.
func Strikes(cfg *config.Config) (tcp, udp bool) {
	if !cfg.Block.FirstStrike || cfg.Capture.Mode == "nfqueue" || cfg.Detect.ScanTrigger > 1 {
		return false, false
	}
	for _, c := range cfg.Commands {
		if c.First {
			return false, false
		}
	}
	tcp = len(cfg.TCP.Monitored) > 0 && cfg.TCP.Response == config.ResponseBlock && !cfg.TCP.Verified
	udp = len(cfg.UDP.Monitored) > 0 && cfg.UDP.Response == config.ResponseBlock
	return tcp, udp
}

// StrikeRate is the rate cap of the first strike's tiers, a second: half
// of block.max_per_second for LimitStrike, a quarter for LimitStrikeSeen.
// A source's first probe strikes within LimitStrike; under a spoofed flood
// that cap is used up by sources each seen once, and a probe past it marks
// its source in seen/seen6 for SeenTimeout: its next probe strikes within
// LimitStrikeSeen, which such a flood never reaches (forged pairs can: the
// daemon then blocks the scanner from the last quarter, which decide keeps
// for sources of several ports and the kernel never spends). The daemon
// counts each strike against its own budget, so that kernel and daemon
// together add at most block.max_per_second blocks a second (plus the
// bursts).
func StrikeRate(cfg *config.Config, name string) int {
	if name == LimitStrikeSeen {
		return max(1, cfg.Block.MaxPerSecond/4)
	}
	return max(1, cfg.Block.MaxPerSecond/2)
}

// SeenTimeout is how long seen/seen6 remember a source whose probe was
// past the first strike's cap: a scanner's next probe comes within
// milliseconds. SeenSize holds what a flood of some 300k packets a second
// adds in that time and until the kernel collects the expired ones (once a
// second): a full set adds nothing more, and its memory (about 80 bytes an
// element) is only used during a flood.
const (
	SeenTimeout = 500 * time.Millisecond
	SeenSize    = 1 << 18
)

// AgainLogRate bounds the probes a second from sources already blocked
// that the again rules send to the daemon (see capture.RuleTCPAgain).
const AgainLogRate = 100

// Build derives the ruleset from a validated configuration and its
// shape. It is a pure function of the two: text and netlink expressions are
// decided here, once, and nothing changes a Ruleset afterwards.
func Build(cfg *config.Config, shape Shape) *Ruleset {
	rs := &Ruleset{Group: uint16(cfg.Capture.Group), Queue: uint16(cfg.Capture.Queue), queued: cfg.Capture.Mode == "nfqueue", shape: shape}
	rs.strikeTCP, rs.strikeUDP = Strikes(cfg)
	rs.strikeTimeout = cfg.BlockTimeout()
	rs.strikeRate = map[string]int{LimitStrike: StrikeRate(cfg, LimitStrike), LimitStrikeSeen: StrikeRate(cfg, LimitStrikeSeen)}
	rs.peerWindow = peerWindow(cfg)
	rs.floodRate = cfg.Capture.FloodRate
	if cfg.Capture.QueueThreshold > 1 && !shape.Flood {
		rs.logQ = 1
	}
	rs.addSets(cfg)
	if rs.Strikes() {
		p4, p6 := byFamily(shape.Protected)
		rs.sets = append(rs.sets,
			&setDef{name: SetProtected, key: keyIPv4, interval: true, guard: true, elems: prefixIntervals(p4)},
			&setDef{name: SetProtected6, key: keyIPv6, interval: true, guard: true, elems: prefixIntervals(p6)},
			&setDef{name: SetSeen, key: keyIPv4, timeout: true, dynamic: true, size: SeenSize, transient: true},
			&setDef{name: SetSeen6, key: keyIPv6, timeout: true, dynamic: true, size: SeenSize, transient: true},
			&setDef{name: SetSeenPort, key: keyIPv4Service, timeout: true, dynamic: true, size: SeenSize, transient: true},
			&setDef{name: SetSeenPort6, key: keyIPv6Service, timeout: true, dynamic: true, size: SeenSize, transient: true},
		)
	}
	if !shape.LateDrop || cfg.Routed.Block {
		rs.preroutingChain(cfg)
	}
	rs.inputChain(cfg, shape.InUse)
	if cfg.Routed.Watch {
		fwd := rs.chain(ChainForward, nftables.ChainHookForward, "forward", chainPriority, "filter - 10")
		rs.ignoredReturnBlockedDrop(fwd, cfg)
		rs.probeRules(fwd, cfg)
	}
	return rs
}

// addSets declares the blocked, ignore, watched-address, interface and
// port sets (the in-use sets come with their rules, in inputChain).
func (rs *Ruleset) addSets(cfg *config.Config) {
	size := cfg.Block.SetSize
	rs.sets = append(rs.sets,
		&setDef{name: SetBlocked, key: keyIPv4, timeout: true, dynamic: true, size: size, keep: true},
		&setDef{name: SetBlocked6, key: keyIPv6, timeout: true, dynamic: true, size: size, keep: true},
	)
	if prefix64On(cfg) {
		rs.sets = append(rs.sets, blocked64Set())
	}
	if rs.peerWindow > 0 {
		// Kept sets first: a reinstall keeps them where they are.
		rs.peerSets()
	}
	ign4, ign6 := byFamily(cfg.IgnorePrefixes)
	rs.sets = append(rs.sets,
		&setDef{name: setIgnore, key: keyIPv4, interval: true, elems: prefixIntervals(ign4)},
		&setDef{name: setIgnore6, key: keyIPv6, interval: true, elems: prefixIntervals(ign6)},
	)
	if len(cfg.WatchAddrs) > 0 {
		var watch []netip.Prefix
		for _, a := range cfg.WatchAddrs {
			watch = append(watch, netip.PrefixFrom(a, a.BitLen()))
		}
		w4, w6 := byFamily(watch)
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
}

func byFamily(ps []netip.Prefix) (v4, v6 []netip.Prefix) {
	for _, p := range ps {
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return v4, v6
}

// ignoredReturnBlockedDrop: ignored sources are never looked at, blocked
// sources are dropped. Where the kernel strikes, a sample of the probes
// from blocked sources goes to the daemon first (AgainLogRate): a block
// the kernel made on one probe rests on more once its source probes again
// (the daemon sees no other probe of it: the drop comes first).
func (rs *Ruleset) ignoredReturnBlockedDrop(c *chainDef, cfg *config.Config) {
	c.add(saddrIn(keyIPv4, setIgnore, false), verdict(expr.VerdictReturn))
	c.add(saddrIn(keyIPv6, setIgnore6, false), verdict(expr.VerdictReturn))
	for _, k := range []keyType{keyIPv4, keyIPv6} {
		set := SetBlocked
		if k == keyIPv6 {
			set = SetBlocked6
		}
		if rs.strikeTCP {
			c.add(saddrIn(k, set, false), tcpProbe(), limitRate(AgainLogRate, 5), counter(), logGroup(capture.PrefixTCPAgain, rs.Group, rs.logQ), verdict(expr.VerdictDrop))
		}
		if rs.strikeUDP {
			c.add(saddrIn(k, set, false), udpProbe(), limitRate(AgainLogRate, 5), counter(), logGroup(capture.PrefixUDPAgain, rs.Group, rs.logQ), verdict(expr.VerdictDrop))
		}
	}
	c.add(saddrIn(keyIPv4, SetBlocked, false), counter(), verdict(expr.VerdictDrop))
	c.add(saddrIn(keyIPv6, SetBlocked6, false), counter(), verdict(expr.VerdictDrop))
	if prefix64On(cfg) {
		rs.blocked64Drop(c)
	}
}

// preroutingChain drops blocked sources before conntrack looks at their
// packets (priority raw): a flood from a blocked source costs no
// conntrack lookup, no entry made and freed, and nothing of the path up
// to the input hook. Only traffic for this host (fib daddr type local),
// unless routed.block drops blocked sources' forwarded and DNAT'd traffic
// too. The probes of tripwires that the again rules sample (at most
// AgainLogRate a second, to this host) pass on to the input hook, where
// conntrack has run (ct state new) and the sample is logged and dropped;
// the input chain's drops stay as they were, behind this one. With
// routed.watch, the forward chain samples forwarded probes the same way.
func (rs *Ruleset) preroutingChain(cfg *config.Config) {
	pre := rs.chain(ChainPrerouting, nftables.ChainHookPrerouting, "prerouting", int(*nftables.ChainPriorityRaw), "raw")
	pre.add(iifLoopback(), verdict(expr.VerdictReturn))
	pre.add(saddrIn(keyIPv4, setIgnore, false), verdict(expr.VerdictReturn))
	pre.add(saddrIn(keyIPv6, setIgnore6, false), verdict(expr.VerdictReturn))
	// where: which traffic is dropped here; sample: which probes of
	// blocked sources pass on to a hook that samples them (the forward
	// chain's too, with routed.watch).
	var where, sample []fragment
	if !cfg.Routed.Block {
		where = []fragment{daddrLocal()}
	}
	if !cfg.Routed.Watch {
		sample = []fragment{daddrLocal()}
	}
	for _, k := range []keyType{keyIPv4, keyIPv6} {
		set := SetBlocked
		if k == keyIPv6 {
			set = SetBlocked6
		}
		if rs.strikeTCP {
			pre.add(append(append([]fragment{saddrIn(k, set, false), tcpProbe()}, sample...), limitRate(AgainLogRate, 5), verdict(expr.VerdictReturn))...)
		}
		if rs.strikeUDP {
			pre.add(append(append([]fragment{saddrIn(k, set, false), dportIn(17, "udp", setUDPPorts), pkttypeHost()}, sample...), limitRate(AgainLogRate, 5), verdict(expr.VerdictReturn))...)
		}
		pre.add(append(append([]fragment{saddrIn(k, set, false)}, where...), counter(), verdict(expr.VerdictDrop))...)
	}
	if prefix64On(cfg) {
		frags := []fragment{saddr64In(SetBlocked64)}
		if rs.peerWindow > 0 {
			frags = append(frags, saddrIn(keyIPv6, SetPeers6, true))
		}
		pre.add(append(append(frags, where...), counter(), verdict(expr.VerdictDrop))...)
	}
}

// inputChain is the input chain, in order: loopback and ignored sources
// are never looked at; blocked sources are dropped on every interface;
// then only the watched interfaces and addresses; ports in use are
// skipped; then probes of monitored ports go to the daemon.
func (rs *Ruleset) inputChain(cfg *config.Config, u InUse) {
	in := rs.chain(ChainInput, nftables.ChainHookInput, "input", chainPriority, "filter - 10")
	in.add(iifLoopback(), verdict(expr.VerdictReturn))
	rs.ignoredReturnBlockedDrop(in, cfg)
	if rs.peerWindow > 0 {
		rs.peerUpdates(in)
	}
	if !cfg.AllInterfaces {
		in.add(iifnameIn(setIfaces, true), verdict(expr.VerdictReturn))
	}
	if len(cfg.WatchAddrs) > 0 {
		in.add(daddrIn(keyIPv4, setWatch, true), verdict(expr.VerdictReturn))
		in.add(daddrIn(keyIPv6, setWatch6, true), verdict(expr.VerdictReturn))
	}
	rs.inUseRules(in, cfg, u)
	rs.probeRules(in, cfg)
}

// inUseRules: ports with a live listener are never tripwires. The daemon
// keeps these sets equal to the host's listening sockets (Shape.InUse,
// UpdateInUse).
func (rs *Ruleset) inUseRules(in *chainDef, cfg *config.Config, u InUse) {
	for _, p := range []struct {
		name               string
		proto              byte
		on                 bool
		setAny, set4, set6 string
		any                []uint16
		pairs4, pairs6     []netip.AddrPort
	}{
		{"tcp", 6, len(cfg.TCP.Monitored) > 0, setTCPInUse, setTCPInUse4, setTCPInUse6, u.AllAnyTCP(), u.TCP4, u.TCP6},
		{"udp", 17, len(cfg.UDP.Monitored) > 0, setUDPInUse, setUDPInUse4, setUDPInUse6, u.AllAnyUDP(), u.UDP4, u.UDP6},
	} {
		if !p.on {
			continue
		}
		rs.sets = append(rs.sets,
			&setDef{name: p.setAny, key: keyService, inuse: true, elems: portElems(p.any)},
			&setDef{name: p.set4, key: keyIPv4Service, inuse: true, elems: pairElems(p.pairs4)},
			&setDef{name: p.set6, key: keyIPv6Service, inuse: true, elems: pairElems(p.pairs6)},
		)
		in.add(dportIn(p.proto, p.name, p.setAny), verdict(expr.VerdictReturn))
		in.add(daddrDportIn(keyIPv4, p.proto, p.name, p.set4), verdict(expr.VerdictReturn))
		in.add(daddrDportIn(keyIPv6, p.proto, p.name, p.set6), verdict(expr.VerdictReturn))
	}
}

// tcpProbe matches TCP probes of the monitored ports. No ACK or RST: SYN,
// FIN, NULL, XMAS and odd flag sets are probes; replies to our own
// connections carry ACK. The flags are enough, with no conntrack lookup:
// TCP probes are seen on hosts that untrack their traffic (notrack), and a
// rule of ours is no reason for the kernel to track every spoofed SYN.
func tcpProbe() fragment {
	return fragments(dportIn(6, "tcp", setTCPPorts), tcpFlagsNone(0x10|0x04, "ack | rst"))
}

// udpProbe matches UDP probes of the monitored ports. pkttype host:
// broadcasts and multicasts (DHCP, NetBIOS) are no scans; ct state new:
// replies to our own queries are not either (several monitored ports lie
// in the kernel's ephemeral range 32768-60999).
func udpProbe() fragment {
	return fragments(dportIn(17, "udp", setUDPPorts), pkttypeHost(), ctState(ctNew, "new"))
}

// probeRules sends probes of the monitored ports to the daemon. A peer's
// probe goes first, under its own prefix, and never strikes. Where the
// kernel strikes (Strikes), a probe from a source that is not protected
// first adds the source to blocked/blocked6 (with block.timeout) and is
// dropped, within the shared rate cap; its copy tells the daemon, which
// follows. A protected source, a probe over the cap, or one the full set
// refused falls through to the plain rule: the daemon decides, as where
// the kernel does not strike.
func (rs *Ruleset) probeRules(ch *chainDef, cfg *config.Config) {
	if len(cfg.TCP.Monitored) > 0 {
		rs.peerProbes(ch, tcpProbe(), capture.PrefixTCPPeer)
		if rs.strikeTCP {
			rs.strikeRules(ch, tcpProbe(), "tcp", capture.PrefixTCPStrike)
		}
		ch.add(tcpProbe(), rs.floodBound(), counter(), rs.toDaemon(capture.PrefixTCP))
	}
	if len(cfg.UDP.Monitored) > 0 {
		rs.peerProbes(ch, udpProbe(), capture.PrefixUDPPeer)
		if rs.strikeUDP {
			rs.strikeRules(ch, udpProbe(), "udp", capture.PrefixUDPStrike)
		}
		ch.add(udpProbe(), rs.floodBound(), counter(), rs.toDaemon(capture.PrefixUDP))
	}
}

// strikeRules are the first strike for one protocol (name), per family:
// a source seen a moment ago on another port strikes within its own cap
// (a forger repeating a packet to one port, pairs or triples, never gets
// there), any source within the first one; past both, the source and its
// port are marked seen (see StrikeRate).
func (rs *Ruleset) strikeRules(ch *chainDef, probe fragment, name, prefix string) {
	for _, k := range []keyType{keyIPv4, keyIPv6} {
		guard, set, seen, seenPort := SetProtected, SetBlocked, SetSeen, SetSeenPort
		if k == keyIPv6 {
			guard, set, seen, seenPort = SetProtected6, SetBlocked6, SetSeen6, SetSeenPort6
		}
		ch.add(probe, saddrIn(k, guard, true), saddrIn(k, seen, false), saddrDportIn(k, name, seenPort, true), limitNamed(LimitStrikeSeen),
			addSaddr(k, set, rs.strikeTimeout), counter(), logGroup(prefix, rs.Group, rs.logQ), verdict(expr.VerdictDrop))
		ch.add(probe, saddrIn(k, guard, true), limitNamed(LimitStrike), addSaddr(k, set, rs.strikeTimeout),
			counter(), logGroup(prefix, rs.Group, rs.logQ), verdict(expr.VerdictDrop))
		ch.add(probe, saddrIn(k, guard, true), addSaddr(k, seen, SeenTimeout), addSaddrDport(k, name, seenPort, SeenTimeout))
	}
}

// Strikes reports whether any probe rule carries the first strike.
func (rs *Ruleset) Strikes() bool { return rs.strikeTCP || rs.strikeUDP }

// toDaemon is how a probe reaches the daemon: a copy to NFLOG, with the
// rule's log prefix, or the packet itself to NFQUEUE, bypassed (accepted)
// when no daemon listens. A queued packet carries no prefix: NFQUEUE mode
// cannot act on a probe whose transport header lies past the snap length
// (see capture.Queue).
func (rs *Ruleset) toDaemon(prefix string) fragment {
	switch {
	case rs.queued && rs.shape.CompatQueue:
		return xtQueueTo(rs.Queue)
	case rs.queued:
		return queueTo(rs.Queue)
	}
	return logGroup(prefix, rs.Group, rs.logQ)
}

// floodBound: in a flood (Shape.Flood), at most capture.flood_rate probes
// a second go to the daemon (NFLOG), which keeps up with them: its
// backlog, and so the time a real scanner hidden in the flood waits to be
// seen, stays short. The default, 50000, is a ninth of what the daemon
// takes on one core here (about 2.2 us a probe with NFLOG batches of 256,
// ~450k probes/s: BenchmarkFlood's rows with the bound lifted), a tenth
// of a core. The rule's counter, after it, counts what was logged.
func (rs *Ruleset) floodBound() fragment {
	if !rs.shape.Flood || rs.queued || rs.floodRate == 0 {
		return fragment{}
	}
	// A tenth of a second's worth at once.
	return limitRate(uint32(rs.floodRate), uint32(rs.floodRate/10))
}

// Queued reports whether probes go to NFQUEUE (and so whether a Shape
// with CompatQueue makes a different ruleset).
func (rs *Ruleset) Queued() bool { return rs.queued }

// Shape is the shape rs was built with. To change one aspect, build again:
//
//	s := rs.Shape()
//	s.CompatQueue = true
//	rs = Build(cfg, s)
func (rs *Ruleset) Shape() Shape { return rs.shape }

func (rs *Ruleset) chain(name string, hook *nftables.ChainHook, hookText string, prio int, prioText string) *chainDef {
	c := &chainDef{name: name, hook: hook, hookText: hookText, prio: prio, prioText: prioText}
	rs.chains = append(rs.chains, c)
	return c
}

func (c *chainDef) add(frags ...fragment) { c.rules = append(c.rules, join(frags)) }

// Text renders the ruleset as nft(8) input. Loaded with nft -f it makes
// the same table as Install does through netlink, for every Shape but one
// difference: nft(8) has no syntax that loads the xtables NFQUEUE target,
// so with Shape.CompatQueue the probe rules are written as nft would
// install them on a kernel with nft_queue ("queue num N bypass"), each
// under a comment line saying that the daemon installs it through the
// xtables NFQUEUE target (nft_compat) because the kernel lacks nft_queue.
// The packets go to the same queue with the same bypass either way.
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
		case s.timeout && s.dynamic:
			b.WriteString("\t\tflags dynamic,timeout\n")
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
	if rs.Strikes() {
		for _, name := range []string{LimitStrike, LimitStrikeSeen} {
			fmt.Fprintf(&b, "\tlimit %s {\n\t\trate %d/second burst %d packets\n\t}\n\n", name, rs.strikeRate[name], rs.strikeRate[name])
		}
	}
	for i, c := range rs.chains {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype filter hook %s priority %s; policy accept;\n", c.name, c.hookText, c.prioText)
		for _, r := range c.rules {
			if r.comment != "" {
				fmt.Fprintf(&b, "\t\t# %s\n", r.comment)
			}
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

func portElems(ports []uint16) []interval {
	out := make([]interval, len(ports))
	for i, p := range ports {
		out[i] = interval{lo: be16(p), hi: be16(p), text: fmt.Sprint(p)}
	}
	return out
}

func pairElems(ps []netip.AddrPort) []interval {
	out := make([]interval, len(ps))
	for i, p := range ps {
		// Concatenation fields each take whole 32-bit registers: the port is padded.
		k := append(p.Addr().AsSlice(), byte(p.Port()>>8), byte(p.Port()), 0, 0)
		out[i] = interval{lo: k, hi: k, text: fmt.Sprintf("%s . %d", p.Addr(), p.Port())}
	}
	return out
}
