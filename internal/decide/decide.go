// Package decide is the one place where a block is decided. Every reason
// to refuse or shape a block (a protected address, the response mode, an
// existing block, the set's capacity, the rate cap, the repeat-offender
// timeout) is checked here, once, before anything is marked or written;
// the outcome is a Decision value that the detector, the alert line and
// the ledger all act on the same way.
//
// A block can come from several origins (the detector, an administrator,
// and later the kernel's first strike and the fleet): each asks Decide with
// its Origin, and the policy that differs by origin is written here, not
// in the origin's own code.
package decide

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/bucket"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
	sc "github.com/portsentry-nft/portsentry-nft/internal/scanner"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// Action is what a Decision does.
type Action uint8

const (
	// Refuse: nothing is done but the line saying why.
	Refuse Action = iota
	// Block: the address goes into the ledger and from there to the kernel,
	// hosts.deny and the commands.
	Block
	// Commands: response "command": the commands run, nothing is blocked.
	Commands
	// LogOnly: response "log": PortSentry's "Ignoring ... response" line.
	LogOnly
)

// Reason says why a decision refused.
type Reason uint8

const (
	None Reason = iota
	// Protected: a local address, gateway, nameserver, never_block, or
	// the fleet's own (a host of fleet.hosts, a server of fleet.servers).
	Protected
	// AlreadyBlocked: the ledger holds a block of the address.
	AlreadyBlocked
	// SetFull: block.set_size blocks are active or on their way.
	SetFull
	// RateLimited: more than block.max_per_second new blocks.
	RateLimited
	// NotATripwire: the kernel struck, but the capture path knows better
	// (a service listens on the port, or the detector's trigger is not
	// met yet): its ruleset lags the daemon's view.
	NotATripwire
	// Expired: a fleet block with less than a second left.
	Expired
	// Peer: the source completed a connection with this host lately, and
	// the evidence is forgeable probes of fewer than PeerPorts ports.
	Peer
	// FleetShare: the fleet host that published it has used its share of
	// the sets or of the rate here, or the fleet's blocks their part.
	FleetShare
	// NotShared: another host's block on forgeable evidence, which this
	// host does not take (fleet.share_forgeable off).
	NotShared
)

// Decision is the outcome of Decide.
type Decision struct {
	Action Action
	Reason Reason
	// Why details the reason (which guard rail protects the address).
	Why    string
	Addr   netip.Addr
	Origin state.Origin
	// Timeout is the block's length, repeat-offender factor applied.
	Timeout time.Duration
	// Times counts this block among the address's blocks (1 = first); a
	// weak block is recorded so, but counts as an offence only once
	// corroborated.
	Times int
	// Weak: the block rests on a single probe (one probe, one port), which
	// anyone can spoof: it gets block.timeout, no repeat-offender factor,
	// and a full set gives it up first.
	Weak bool
	// Evict: the sets are full, and the ledger makes room by lifting its
	// weakest block (a weak one, oldest first) for this stronger one.
	Evict bool
	// Evidence is what the block rests on; Reach how far it may travel.
	Evidence Evidence
	Reach    Reach
	// Lift, for an element the kernel holds already (origin kernel) that
	// the decision does not keep, says why it goes (the end of
	// alert.LiftedLine); the ledger lifts it unless it holds a block.
	Lift string
}

// String is the refusal as the log and the control socket say it.
func (d Decision) String() string {
	switch d.Reason {
	case Protected:
		return fmt.Sprintf("%s is protected (%s) and is never blocked", d.Addr, d.Why)
	case AlreadyBlocked:
		return fmt.Sprintf("%s is already blocked", d.Addr)
	case SetFull:
		return fmt.Sprintf("the blocked sets are full (block.set_size %s)", d.Why)
	case RateLimited:
		return "more than block.max_per_second new blocks"
	case NotATripwire:
		return d.Why
	case Expired:
		return "it has expired"
	case Peer:
		return fmt.Sprintf("%s is a peer (a connection with this host completed lately); %d tripwire ports are needed to block it", d.Addr, PeerPorts)
	case FleetShare:
		return fmt.Sprintf("the host that published it has used its share here (fleet.host_share %s)", d.Why)
	case NotShared:
		return "it rests on probes one host saw, which anyone can forge (fleet.share_forgeable is off)"
	}
	return ""
}

// Request asks for a block of Addr.
type Request struct {
	Addr netip.Addr
	// Origin: for state.OriginKernel the element is in the kernel already
	// (its first strike, or an element adopted from the sets): a refusal
	// other than AlreadyBlocked means the ledger lifts it.
	Origin state.Origin
	// Proto is the probe's protocol (its response mode applies); zero for
	// origins without a probe.
	Proto packet.Proto
	// Timeout, when set, is the length an administrator asked for, or the
	// time an adopted kernel element has left.
	Timeout time.Duration
	Now     time.Time
	// The evidence: probes counted from Addr in the detector's window, and
	// distinct ports among them. Zero for origins without probes.
	Probes, Ports int
	// Facts of the capture path, for origin kernel: Listening names the
	// probed port when a service listens there ("tcp port 22"), and
	// Untriggered says the detector's trigger is not met yet. Either makes
	// the kernel's strike go.
	Listening   string
	Untriggered bool
	// Evidence is what the origin says the block rests on: the pipeline,
	// a handshake (Unforgeable) or probes (Forgeable); the fleet, what this
	// host could check of the record. An administrator's origin says
	// Administrator by itself.
	Evidence Evidence
	// Peer: the probe came from a peer of this host (its rule says so).
	Peer bool
	// FleetHost is the fleet host whose record it is (origin fleet).
	FleetHost string
	// Tool is the scanner that sent the source's first probe, as its
	// headers say (block.timeout_by_tool).
	Tool sc.Tool
}

// Guard says whether an address must never be blocked.
type Guard interface {
	Protected(netip.Addr) (why string, ok bool)
}

// Ledger is what the decision needs to know of the blocks in force.
type Ledger interface {
	// Holds reports a block of a that is in force or on its way.
	Holds(a netip.Addr) bool
	// Len counts the blocks in force or on their way.
	Len() int
	// TimesBlocked is how many times a was blocked before.
	TimesBlocked(a netip.Addr) int
	// Weak counts the weak blocks in force (those a full set gives up).
	Weak() int
	// Get returns the record of a's block in force.
	Get(a netip.Addr) (state.Block, bool)
	// Fleet counts the blocks of origin fleet in force, and those of host.
	Fleet(host string) (all, from int)
}

// Decider decides. It is safe for concurrent use (capture and verified
// mode decide at once).
type Decider struct {
	cfg    atomic.Pointer[config.Config]
	guard  Guard
	ledger Ledger
	rate   bucket.Bucket
	peers  atomic.Pointer[Peers]
	shares shares
}

// SetPeers gives the decision this host's peers, for the fleet's blocks.
func (d *Decider) SetPeers(p Peers) { d.peers.Store(&p) }

// New makes a Decider.
func New(cfg *config.Config, g Guard, l Ledger) *Decider {
	d := &Decider{guard: g, ledger: l}
	d.SetConfig(cfg)
	return d
}

// SetConfig swaps the configuration (reload).
func (d *Decider) SetConfig(cfg *config.Config) {
	d.cfg.Store(cfg)
	d.rate.Set(cfg.Block.MaxPerSecond)
}

// Decide runs every check once, in this order: protected, response mode,
// rate (half of it kept for sources with more than one probe), an existing
// block, capacity (a full set gives up a weak block for a stronger one);
// the rate's token is spent only on a block. Administrators are held to the guard rails and the capacity, not
// to the rate cap or the response mode, and may re-block to change a
// block's length.
func (d *Decider) Decide(r Request) Decision { return d.decide(r, 0) }

// decide is decideBlock, and for an element the kernel holds already the
// lift the decision asks for.
func (d *Decider) decide(r Request, more int) Decision {
	cfg := d.cfg.Load()
	out := notATripwire(cfg, r)
	if out.Reason == None {
		out = d.fleetRefusal(r)
	}
	if out.Reason == None {
		out = d.decideBlock(cfg, r, more)
	}
	if r.Origin == state.OriginKernel && out.Action != Block && out.Reason != AlreadyBlocked {
		out.Lift = Against(cfg, out, r.Proto)
	}
	return out
}

// notATripwire refuses the kernel's strike the capture path knows to be
// wrong; Reason None otherwise.
func notATripwire(cfg *config.Config, r Request) Decision {
	out := Decision{Addr: r.Addr, Origin: r.Origin}
	switch {
	case r.Origin != state.OriginKernel:
		return out
	case r.Listening != "":
		out.Why = "a service listens on " + r.Listening
	case r.Untriggered:
		out.Why = fmt.Sprintf("detect.scan_trigger is %d", cfg.Detect.ScanTrigger)
	default:
		return out
	}
	out.Action, out.Reason = Refuse, NotATripwire
	return out
}

// fleetRefusal refuses, silently, another host's block that has run out,
// or that this host holds as long already; Reason None otherwise.
func (d *Decider) fleetRefusal(r Request) Decision {
	out := Decision{Addr: r.Addr, Origin: r.Origin}
	if r.Origin != state.OriginFleet {
		return out
	}
	out.Action = Refuse
	if r.Timeout < time.Second {
		out.Reason = Expired
		return out
	}
	if cur, ok := d.ledger.Get(r.Addr); ok && !cur.Expires.Before(r.Now.Add(r.Timeout-time.Second)) {
		out.Reason = AlreadyBlocked
		return out
	}
	return Decision{Addr: r.Addr, Origin: r.Origin}
}

// LiftReaches reports whether a lift from the fleet made at at reaches
// the block cur: only a block that began before the lift does (a later
// block rests on later evidence), and a host's lift of its own record
// (not the fleet administrator's) only a block of origin fleet: a host
// never lifts what this host decided itself.
func LiftReaches(cur state.Block, at time.Time, admin bool) bool {
	if !admin && cur.Origin != state.OriginFleet {
		return false
	}
	return cur.Expires.Add(-cur.Timeout).Before(at)
}

// Headroom is how many places of the sets the ledger keeps free while the
// kernel strikes (nft.Strikes): the kernel adds only to a set with room,
// so a set filled with a spoofed flood's blocks would leave none for a
// real scanner's strike. A 64th of block.set_size (none below 64).
func Headroom(cfg *config.Config) int {
	if tcp, udp := nft.Strikes(cfg); !tcp && !udp {
		return 0
	}
	return cfg.Block.SetSize / 64
}

// DecideAll decides several requests together (an administrator's list):
// the blocks decided earlier in the list count against the capacity of
// the later ones.
func (d *Decider) DecideAll(rs []Request) []Decision {
	out := make([]Decision, len(rs))
	n := 0
	for i, r := range rs {
		if out[i] = d.decide(r, n); out[i].Action == Block {
			n++
		}
	}
	return out
}

// decideBlock is Decide with more blocks on their way than the ledger
// knows: the guard rails, the evidence (peers, the fleet's shares), the
// response mode and rate, the capacity, then the block's shape.
func (d *Decider) decideBlock(cfg *config.Config, r Request, more int) Decision {
	out := Decision{Addr: r.Addr, Origin: r.Origin, Evidence: evidenceOf(r)}
	if why, ok := d.guard.Protected(r.Addr); ok {
		out.Why = why
		return out.refuse(Protected)
	}
	if reason, why := d.weigh(cfg, r, out.Evidence, more); reason != None {
		out.Why = why
		return out.refuse(reason)
	}
	// An administrator, and the fleet (other hosts decided, within their
	// own caps), are held to the guard rails and the capacity only, and may
	// block again to change a block's length.
	manual := r.Origin == state.OriginManual || r.Origin == state.OriginFleet
	weak := isWeak(r, out.Evidence)
	if !manual {
		if o, done := d.respond(cfg, r, weak, out); done {
			return o
		}
	}
	full, evict := d.capacity(cfg, r, more, weak)
	if full {
		out.Why = fmt.Sprint(cfg.Block.SetSize)
		return out.refuse(SetFull)
	}
	out.Evict = evict
	out.Action = Block
	out.Weak = weak
	out.Times = d.ledger.TimesBlocked(r.Addr) + 1
	out.Timeout = timeoutOf(cfg, r, out.Evidence, out.Times)
	out.Reach = reachOf(cfg, r.Origin, out.Evidence)
	return out
}

func (out Decision) refuse(why Reason) Decision {
	out.Action, out.Reason = Refuse, why
	return out
}

// isWeak: a block on forgeable probes of one port (however many: a forger
// repeats a packet as easily as he sends it), or another host's forgeable
// block, is the first a full set gives up.
func isWeak(r Request, ev Evidence) bool {
	switch {
	case ev != Forgeable || r.Origin == state.OriginManual:
		return false
	case r.Origin == state.OriginFleet:
		return true
	}
	return r.Ports < 2
}

// weigh refuses what the evidence does not carry: a peer on forgeable
// probes of too few ports, another host's forgeable block this host does
// not take, another host's block beyond its share.
func (d *Decider) weigh(cfg *config.Config, r Request, ev Evidence, more int) (Reason, string) {
	if d.peerRefusal(r, ev) {
		return Peer, ""
	}
	if r.Origin != state.OriginFleet || ev == Administrator {
		return None, ""
	}
	if ev == Forgeable && !cfg.Fleet.ShareForgeable {
		return NotShared, ""
	}
	if d.fleetShare(cfg, r, ev, more) {
		return FleetShare, fmt.Sprint(cfg.Fleet.HostShare)
	}
	return None, ""
}

// respond applies the response mode and the rate to a detected (or
// struck) block: done when the decision is made.
func (d *Decider) respond(cfg *config.Config, r Request, weak bool, out Decision) (Decision, bool) {
	switch Response(cfg, r.Proto) {
	case config.ResponseLog:
		out.Action = LogOnly
		return out, true
	case config.ResponseCommand:
		out.Action = Commands
		return out, true
	}
	kernel := r.Origin == state.OriginKernel
	switch {
	case kernel && d.ledger.Holds(r.Addr):
		return out.refuse(AlreadyBlocked), true
	case kernel:
		// The kernel struck within its own caps (nft.StrikeRate: one
		// for sources seen once, one for sources seen a moment ago);
		// the strike is spent from the daemon's budget, so that kernel
		// and daemon together stay within block.max_per_second, and is
		// never refused for it.
		d.admit(r, out.Evidence, weak)
	case !d.admit(r, out.Evidence, weak):
		return out.refuse(RateLimited), true
	case d.ledger.Holds(r.Addr):
		d.rate.Refund()
		return out.refuse(AlreadyBlocked), true
	}
	return out, false
}

// capacity says whether the sets have no room for r (full), or have it
// once a weak block is given up (evict). The kernel's set took a struck
// element: it had room.
func (d *Decider) capacity(cfg *config.Config, r Request, more int, weak bool) (full, evict bool) {
	manual := r.Origin == state.OriginManual || r.Origin == state.OriginFleet
	if r.Origin == state.OriginKernel || d.ledger.Len()+more < cfg.Block.SetSize || manual && d.ledger.Holds(r.Addr) {
		return false, false
	}
	// A full set makes room by giving up a block that rests on one
	// (maybe spoofed) probe, for a source with more evidence.
	if weak || manual || d.ledger.Weak() == 0 {
		if !manual {
			d.rate.Refund()
		}
		return true, false
	}
	return false, true
}

// StrongPorts is how many distinct ports make a source's evidence strong
// enough for the whole budget: under a flood of forged pairs or triples,
// the last quarter of block.max_per_second is kept for such sources.
const StrongPorts = 4

// admit spends the rate's token. Under pressure, evidence decides, so a
// forger cannot spend for the scanner what the scanner needs: sources of
// one port (a spoofed flood, each source seen once or repeated) get half
// the budget; sources of two or three ports three quarters; sources of
// StrongPorts ports or more, and handshakes, all of it. The kernel's
// strikes are spent from the same budget (it struck within its own caps,
// and is never refused): one budget for both.
func (d *Decider) admit(r Request, ev Evidence, weak bool) bool {
	if r.Origin == state.OriginKernel {
		// Never below the quarter kept for sources of several ports: the
		// kernel's own caps (nft.StrikeRate) hold it to three quarters.
		d.rate.AllowAbove(r.Now, float64(int(d.rate.Rate())/4))
		return true
	}
	keep := 0.0
	switch rate := d.rate.Rate(); {
	case weak:
		keep = float64(int(rate) / 2)
	case ev == Forgeable && r.Ports < StrongPorts:
		keep = float64(int(rate) / 4)
	}
	return d.rate.AllowAbove(r.Now, keep)
}

// Response is the configured response to a probe of protocol p (TCP's
// for origins without a probe).
func Response(cfg *config.Config, p packet.Proto) config.Response {
	if p == packet.UDP {
		return cfg.UDP.Response
	}
	return cfg.TCP.Response
}

// Against says why a block the kernel already made does not stay, when d
// (a decision with origin kernel, for a probe of protocol p) goes against
// it: the end of alert.LiftedLine.
func Against(cfg *config.Config, d Decision, p packet.Proto) string {
	switch {
	case d.Action == LogOnly || d.Action == Commands:
		if p != packet.UDP {
			p = packet.TCP
		}
		return "the response for " + p.String() + " is " + string(Response(cfg, p))
	case d.Reason == Protected:
		return "it is protected (" + d.Why + ")"
	}
	return d.String()
}

// RepeatTimeout is block.timeout times repeat_factor^(times-1), capped at
// block.max_timeout.
func RepeatTimeout(cfg *config.Config, times int) time.Duration {
	d := time.Duration(cfg.Block.Timeout)
	max := time.Duration(cfg.Block.MaxTimeout)
	for i := 1; i < times && d < max; i++ {
		d *= time.Duration(cfg.Block.RepeatFactor)
	}
	return min(d, max)
}
