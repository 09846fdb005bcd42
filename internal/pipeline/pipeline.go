// Package pipeline is the per-packet path: decode, skip ports in use,
// detect, decide, hand to the ledger. It runs on the capture goroutine,
// which owns the detector; nothing here waits for I/O or allocates for a
// known source.
//
// The detector and the ledger never disagree for long: a block is marked
// in the detector only once the decision says Block (with the decision's
// timeout), and a probe from a source the detector holds as blocked is
// checked against the ledger: no record means the mark is stale and the
// probe counts afresh; a record committed a while ago means the kernel
// lost the element (the drop rule comes first), and the ledger puts it
// back at once.
package pipeline

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/capture"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/detect"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
	"github.com/portsentry-nft/portsentry-nft/internal/scanner"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// Counters are the pipeline's statistics.
type Counters struct {
	Probes [packet.NumKinds]atomic.Uint64
	// Tools: probes by the tool that sent them (internal/scanner).
	Tools     [scanner.NumTools]atomic.Uint64
	Malformed atomic.Uint64 // packets that did not decode
	// Opaque: probes whose transport header could not be read (it lies past
	// the snap length), acted on by their rule and source (also counted in
	// Probes, as the rule's kind).
	Opaque         atomic.Uint64
	NotProbes      atomic.Uint64 // decoded, but ACK/RST traffic (should not reach us)
	AlreadyBlocked atomic.Uint64 // probes on their way before the element landed
	Protected      atomic.Uint64 // triggers from protected addresses, not blocked
	RateLimited    atomic.Uint64 // triggers over block.max_per_second, not blocked
	SetFull        atomic.Uint64 // triggers not blocked because the sets were full
	InUse          atomic.Uint64 // probes of ports a service listens on, ignored
	Peers          atomic.Uint64 // triggers from peers on too few ports, not blocked
	Prefixes       atomic.Uint64 // IPv6 /64s blocked (detect.prefix6_sources)
}

// Ports says whether a service listens on a port (a port in use is never
// a tripwire).
type Ports interface {
	InUse(proto uint8, dst netip.Addr, port uint16) bool
}

// Config is what a Pipeline is made of.
type Config struct {
	Settings *config.Config
	Decider  *decide.Decider
	Ledger   *ledger.Ledger
	Alerts   *alert.Queue
	// Ports returns the current listening sockets.
	Ports func() Ports
	// OnProbe, if set, is told of each probe's source the detector counted
	// (the fleet's sightings). It must not block.
	OnProbe func(netip.Addr)
	// Peers, if set, says whether a held probe's source is a peer: a
	// packet in NFQUEUE carries no rule that says so. Asked only at the
	// trigger. NFLOG copies need no lookup: the peer rules' prefix says it.
	Peers decide.Peers
}

// Pipeline processes packets. Handle and HandleQueued run on one
// goroutine; SetConfig, Forget and the counters are safe from any.
type Pipeline struct {
	c    Config
	cfgp atomic.Pointer[config.Config]
	cfg  *config.Config // the capture goroutine's copy
	det  *detect.Detector
	// pfx counts the addresses of each IPv6 /64 (detect.prefix6_sources).
	pfx *detect.Prefixes
	// forget: addresses an administrator unblocked, for the capture
	// goroutine's detector.
	forget  chan netip.Addr
	tracked atomic.Int64
	// fullWarned: when the set-full warning was last written (once a minute).
	fullWarned atomic.Int64
	Counters
}

// New makes a pipeline.
func New(c Config) *Pipeline {
	p := &Pipeline{c: c, cfg: c.Settings, det: detect.New(DetectConfig(c.Settings)), forget: make(chan netip.Addr, 256),
		pfx: detect.NewPrefixes(c.Settings.Detect.Prefix6Sources, time.Duration(c.Settings.Detect.Window))}
	p.cfgp.Store(c.Settings)
	return p
}

// DetectConfig is the detector's part of the configuration.
func DetectConfig(c *config.Config) detect.Config {
	return detect.Config{Trigger: c.Detect.ScanTrigger, Window: time.Duration(c.Detect.Window), MaxSources: c.Detect.MaxSources}
}

// SetConfig swaps the configuration (reload); the capture goroutine picks
// it up at its next packet.
func (p *Pipeline) SetConfig(cfg *config.Config) { p.cfgp.Store(cfg) }

// Forget lets the detector start over for a (its block was lifted).
func (p *Pipeline) Forget(a netip.Addr) {
	select {
	case p.forget <- a:
	default:
	}
}

// Tracked is the number of sources the detector holds.
func (p *Pipeline) Tracked() int64 { return p.tracked.Load() }

// Trigger is a source that reached the trigger, with the probe that did.
type Trigger struct {
	Probe packet.Probe
	Src   detect.Source
	// Held: the probe waits in NFQUEUE as packet ID.
	Held bool
	ID   uint32
	// Origin: state.OriginKernel when the kernel struck already (the
	// decision then says whether the element stays); else the detector.
	Origin state.Origin
	// Peer: the probe came from a peer of this host (the rule that logged
	// it is a peer rule).
	Peer bool
}

// Handle processes one packet (an NFLOG copy) that rule logged.
func (p *Pipeline) Handle(pkt []byte, rule capture.Rule) {
	var t Trigger
	p.process(pkt, rule, &t)
}

// HandleQueued processes a packet held in NFQUEUE and returns its verdict:
// Pending when the ledger gives it once the block is in.
func (p *Pipeline) HandleQueued(pkt []byte, id uint32) capture.Verdict {
	t := Trigger{Held: true, ID: id}
	return p.process(pkt, capture.RuleUnknown, &t)
}

// opaque completes the probe of a packet whose transport header was not
// captured, from the rule that logged it: that rule found a TCP or UDP
// header of a monitored port (nft looks past every extension header), so
// the packet was a probe of it, of an unknown port (0) and, for TCP,
// unknown flags. It reports false when the rule is unknown.
func opaque(pr *packet.Probe, rule capture.Rule) bool {
	switch {
	case rule == capture.RuleUnknown:
		return false
	case rule.UDP():
		pr.Proto, pr.Kind = packet.UDP, packet.KindUDP
	default:
		pr.Proto, pr.Kind = packet.TCP, packet.KindUnknown
	}
	return true
}

func (p *Pipeline) process(pkt []byte, rule capture.Rule, t *Trigger) capture.Verdict {
	p.catchUp()
	pr := &t.Probe
	if !p.decode(pkt, rule, pr) {
		return capture.Accept
	}
	now := time.Now()
	if pr.Proto == packet.TCP && p.cfg.TCP.Verified {
		// Verified mode: only completed connections count (internal/verified).
		p.c.Alerts.Capped(alert.Event{What: alert.KindProbe, Probe: *pr}, now)
		return capture.Accept
	}
	if p.c.Ports().InUse(uint8(pr.Proto), pr.Dst, pr.DstPort) {
		// A service listens there (it just started: the kernel set lags by
		// up to one poll). Never a tripwire.
		p.InUse.Add(1)
		if rule.Struck() {
			p.disown(decide.Request{Addr: pr.Src, Proto: pr.Proto, Now: now, Listening: fmt.Sprintf("%s port %d", pr.Proto, pr.DstPort)})
		}
		return capture.Accept
	}
	if rule.Again() {
		// A probe from a source the kernel holds as blocked, dropped there:
		// its block rests on more than one probe. A sample of the dropped
		// ones, so no "already blocked" line: their number says nothing.
		p.AlreadyBlocked.Add(1)
		p.c.Ledger.Post(ledger.Strengthen{Addr: pr.Src, Port: pr.DstPort})
		return capture.Drop
	}
	if rule.Struck() {
		t.Origin = state.OriginKernel
	}
	t.Peer = rule.Peer()
	verdict, src, blocked := p.observe(pr, now)
	if blocked {
		return capture.Drop
	}
	p.tracked.Store(int64(p.det.Len()))
	if pr.Src.Is6() {
		p.prefix(pr, now)
	}
	if p.c.OnProbe != nil {
		p.c.OnProbe(pr.Src)
	}
	if verdict != detect.Trigger && rule.Struck() {
		// The kernel struck under a ruleset that had not caught up with a
		// new scan_trigger yet.
		p.disown(decide.Request{Addr: pr.Src, Proto: pr.Proto, Now: now, Untriggered: true})
	}
	if verdict != detect.Trigger {
		p.c.Alerts.Capped(alert.Event{What: alert.KindProbe, Probe: *pr}, now)
		return capture.Accept
	}
	t.Src = src
	if p.Act(p.det, t, now) && t.Held {
		return capture.Pending
	}
	return capture.Accept
}

// observe counts pr in the detector. blocked: its source is blocked (its
// probe was on its way, or the element was lost and is back), and the
// probe is dropped.
func (p *Pipeline) observe(pr *packet.Probe, now time.Time) (detect.Verdict, detect.Source, bool) {
	verdict, src := p.det.Observe(pr, now)
	if verdict != detect.AlreadyBlocked {
		return verdict, src, false
	}
	back, held := p.c.Ledger.Reassert(pr.Src, pr.DstPort, now)
	switch {
	case back:
		return verdict, src, true
	case held:
		p.AlreadyBlocked.Add(1)
		p.c.Alerts.Capped(alert.Event{What: alert.KindAlreadyBlocked, Probe: *pr}, now)
		return verdict, src, true
	}
	// The ledger holds no block (lifted, or refused after the mark): the
	// mark is stale, and the probe counts afresh.
	p.det.Forget(pr.Src)
	verdict, src = p.det.Observe(pr, now)
	return verdict, src, false
}

// catchUp takes a new configuration (reload) and the addresses to forget,
// without waiting.
func (p *Pipeline) catchUp() {
	if c := p.cfgp.Load(); c != p.cfg {
		p.cfg = c
		p.det.SetConfig(DetectConfig(c))
		p.pfx.SetConfig(c.Detect.Prefix6Sources, time.Duration(c.Detect.Window))
	}
	for len(p.forget) > 0 {
		p.det.Forget(<-p.forget)
	}
}

// decode reads pkt into pr and counts it; false when it is no probe to act
// on (malformed, or ACK/RST traffic).
func (p *Pipeline) decode(pkt []byte, rule capture.Rule, pr *packet.Probe) bool {
	if err := packet.Decode(pkt, pr); err != nil {
		// A probe can hide its transport header past the snap length, not
		// its source: when its rule is known, it is acted on.
		if err != packet.ErrTransportUnreachable || !opaque(pr, rule) {
			p.Malformed.Add(1)
			return false
		}
		p.Opaque.Add(1)
	}
	if pr.Kind == packet.KindNone {
		p.NotProbes.Add(1)
		return false
	}
	p.Probes[pr.Kind].Add(1)
	p.Tools[pr.Tool].Add(1)
	return true
}

// disown asks the decision about a kernel strike the capture path knows
// to be wrong (r's facts), and hands the lift it decides to the ledger.
func (p *Pipeline) disown(r decide.Request) {
	r.Origin = state.OriginKernel
	if d := p.c.Decider.Decide(r); d.Lift != "" {
		p.c.Ledger.Post(ledger.Act{Decision: d, At: r.Now})
	}
}

// evidence is what the ledger records of a trigger: the probe and the
// source's episode as the detector saw it, named for the tool of its
// first probe.
func (t *Trigger) evidence() ledger.Evidence {
	ev := ledger.Evidence{Probe: t.Probe, First: t.Src.First, Last: t.Src.Last, Held: t.Held, ID: t.ID}
	ev.Probe.Tool = t.Src.Tool
	if t.Src.NPorts > 0 {
		ev.Ports = append([]uint16(nil), t.Src.Ports[:t.Src.NPorts]...)
	}
	return ev
}

// Act decides on a source that reached the trigger in det (the capture
// goroutine's detector, or verified mode's, owned by the caller) and hands
// the decision to the ledger. It reports whether the ledger took it (then
// a held probe gets its verdict from the ledger).
//
// The probe's line is written for every block (their number is capped by
// block.max_per_second); a refused trigger shares the per-probe line cap,
// or a spoofed flood would cost a few lines per packet.
func (p *Pipeline) Act(det *detect.Detector, t *Trigger, now time.Time) bool {
	pr := &t.Probe
	origin := t.Origin
	if origin == "" {
		origin = state.OriginDetect
	}
	peer := t.Peer || (t.Held && p.c.Peers != nil && p.c.Peers.Peer(pr.Src))
	d := p.c.Decider.Decide(decide.Request{Addr: pr.Src, Origin: origin, Proto: pr.Proto, Now: now,
		Probes: t.Src.Count, Ports: t.Src.NPorts, Evidence: evidence(pr), Peer: peer, Tool: t.Src.Tool})
	if d.Action == decide.Refuse {
		p.refused(det, d, pr, now)
		return false
	}
	p.c.Alerts.Send(alert.Event{What: alert.KindProbe, Probe: *pr})
	if d.Action == decide.Block {
		det.MarkBlocked(pr.Src, now.Add(d.Timeout))
	}
	if !p.c.Ledger.Post(ledger.Act{Decision: d, Evidence: t.evidence(), At: now}) {
		det.Forget(pr.Src)
		return false
	}
	return true
}

// evidence is what a trigger's probe proves: a completed handshake
// (verified mode's accepted connection) that its source is real; any other
// probe nothing, since anyone can forge it.
func evidence(pr *packet.Probe) decide.Evidence {
	if pr.Kind == packet.KindConnect {
		return decide.Unforgeable
	}
	return decide.Forgeable
}

// refused handles a refused trigger. A source refused for the rate or a
// full set is kept in the detector with its evidence: when it comes back,
// its second probe makes it a source the decision keeps budget and room
// for (a spoofed flood's sources, each seen once, never get there).
func (p *Pipeline) refused(det *detect.Detector, d decide.Decision, pr *packet.Probe, now time.Time) {
	if d.Reason == decide.AlreadyBlocked {
		// Another path blocked it meanwhile (verified mode, an administrator).
		det.MarkBlocked(pr.Src, now.Add(time.Second))
		p.AlreadyBlocked.Add(1)
		p.c.Alerts.Capped(alert.Event{What: alert.KindAlreadyBlocked, Probe: *pr}, now)
		return
	}
	p.c.Alerts.Capped(alert.Event{What: alert.KindProbe, Probe: *pr}, now)
	switch d.Reason {
	case decide.Protected:
		det.Forget(pr.Src)
		p.Protected.Add(1)
		if d.Lift != "" {
			// The guard rails changed after the kernel's copy of them.
			p.c.Ledger.Post(ledger.Act{Decision: d, At: now})
		}
		p.c.Alerts.Capped(alert.Event{What: alert.KindProtected, Probe: *pr, Reason: d.Why}, now)
	case decide.Peer:
		// Kept in the detector: its next ports count towards PeerPorts.
		p.Peers.Add(1)
		p.c.Alerts.Capped(alert.Event{What: alert.KindRefused, Probe: *pr, Reason: d.String()}, now)
	case decide.RateLimited:
		p.RateLimited.Add(1)
		p.c.Alerts.Capped(alert.Event{What: alert.KindRefused, Probe: *pr, Reason: d.String()}, now)
	case decide.SetFull:
		// One warning a minute says it; a line per refusal would not help.
		n := p.SetFull.Add(1)
		if s := now.Unix(); p.fullWarned.Load() < s-60 {
			p.fullWarned.Store(s)
			p.c.Alerts.Send(alert.Event{What: alert.KindSetFull, Probe: *pr, Reason: d.Why, N: n})
		}
	}
}

// prefix counts an IPv6 probe for its /64; when enough distinct addresses
// of it probed (detect.prefix6_sources), the /64 is decided on and its
// block posted. A /64 refused (protected, the rate) is held for a minute:
// its next addresses would be refused the same way.
func (p *Pipeline) prefix(pr *packet.Probe, now time.Time) {
	n, trigger := p.pfx.Observe(pr.Src, now)
	if !trigger {
		return
	}
	pfx := netip.PrefixFrom(pr.Src, 64).Masked()
	d := p.c.Decider.DecidePrefix(pfx, n, pr.Proto, now)
	if d.Action != decide.Block {
		p.pfx.Hold(pr.Src, now.Add(time.Minute))
		if d.Reason == decide.Protected {
			p.Protected.Add(1)
			p.c.Alerts.Capped(alert.Event{What: alert.KindRefused, Probe: *pr, Reason: "its /64 is not blocked: " + d.Why}, now)
		}
		return
	}
	if p.c.Ledger.Post(ledger.BlockPrefix{Decision: d, Prefix: pfx}) {
		p.pfx.Hold(pr.Src, now.Add(d.Timeout))
		p.Prefixes.Add(1)
	}
}
