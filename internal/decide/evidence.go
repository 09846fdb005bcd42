package decide

import (
	"net/netip"
	"sync"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/bucket"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// Evidence is what a block rests on. A tripwire probe is a packet anyone
// can forge, so the evidence decides how far a block may reach (Reach),
// whether it may lengthen as a repeat offence, and who gives it up first.
type Evidence uint8

const (
	// Forgeable: probes (SYN, FIN, NULL, XMAS, UDP) from one host's view.
	// A block on them stays on this host (PortSentry's contract), is
	// never an offence, and is the first a full set gives up.
	Forgeable Evidence = iota
	// Corroborated: fleet.correlate.hosts hosts saw the source, as this
	// host counted from their own sighting keys: a forger has to reach
	// them all.
	Corroborated
	// Unforgeable: a completed TCP handshake (tcp.verified): the source
	// address is real.
	Unforgeable
	// Administrator: an administrator's block (here, or written under the
	// fleet administrator's identity).
	Administrator
)

var evidenceNames = [...]string{state.EvidenceForgeable, "corroborated", "handshake", "administrator"}

// String is the evidence's name, as records and lines say it.
func (e Evidence) String() string {
	if int(e) < len(evidenceNames) {
		return evidenceNames[e]
	}
	return "forgeable"
}

// EvidenceOf reads a name String gave ("" and anything else: forgeable).
func EvidenceOf(s string) Evidence {
	for i, n := range evidenceNames {
		if n == s {
			return Evidence(i)
		}
	}
	return Forgeable
}

// Reach is how far a block may travel.
type Reach uint8

const (
	// Local: this host only.
	Local Reach = iota
	// Fleet: published for every host of the fleet.
	Fleet
	// FleetWeak: published, and applied by the others as weak (evictable,
	// never an offence, within the publishing host's share); forgeable
	// evidence, where fleet.share_forgeable opts in.
	FleetWeak
)

// Beyond reports whether a block of reach r may be handed whole to a
// consumer on another host that enforces it as it is and applies no rule
// of ours (a CrowdSec bouncer elsewhere): what the fleet takes in full.
// FleetWeak does not: the fleet's receivers hold such a block as weak,
// within its host's share, which such a consumer cannot.
func (r Reach) Beyond() bool { return r == Fleet }

// Binding reports whether a block on evidence e may be handed to another
// system as a decision of its own, enforced wherever that system's
// consumers are (a CrowdSec local API's ban): evidence one host's packets
// cannot make, corroborated across hosts, a completed handshake or an
// administrator's word, the evidence on which a block travels fleet-wide.
// Weaker evidence goes out, if at all, as a report without a decision.
func (e Evidence) Binding() bool { return e >= Corroborated }

// RecordReach is the reach of a block recorded in the ledger (a block
// restored at start, for a follower that takes the ledger's blocks in
// force), by the same rule as a decision's: its origin and its evidence.
func RecordReach(cfg *config.Config, b state.Block) Reach {
	return reachOf(cfg, b.Origin, EvidenceOf(b.Evidence))
}

// PeerPorts is how many distinct tripwire ports a peer (an address with a
// connection to this host whose handshake completed lately) must probe
// before it is blocked: one forged packet never blocks a peer.
const PeerPorts = 3

// FleetReserve is the part of block.set_size that the fleet's blocks,
// of every host together, never take: it is local detection's.
const FleetReserve = 4 // a quarter

// Peers says whether an address is a peer of this host now (the kernel's
// peers sets); a receiver applies its own peers to the fleet's blocks.
type Peers interface {
	Peer(netip.Addr) bool
}

// evidenceOf is what r rests on: an administrator's origin says so, the
// others say it in r.Evidence (the pipeline: a handshake or probes; the
// fleet: what this host could check of the record).
func evidenceOf(r Request) Evidence {
	if r.Origin == state.OriginManual {
		return Administrator
	}
	return r.Evidence
}

// reachOf is how far a block of origin o on evidence ev may travel.
func reachOf(cfg *config.Config, o state.Origin, ev Evidence) Reach {
	switch {
	case o == state.OriginFleet:
		return Local // it came from the fleet: never published again
	case ev >= Corroborated:
		return Fleet
	case cfg.Fleet.ShareForgeable:
		return FleetWeak
	}
	return Local
}

// peerRefusal refuses a block of a peer on less than PeerPorts ports of
// forgeable evidence (the capture path says Request.Peer; for the fleet's
// blocks the receiver asks its own peers).
func (d *Decider) peerRefusal(r Request, ev Evidence) bool {
	if ev >= Unforgeable {
		return false
	}
	if r.Origin == state.OriginFleet {
		p := d.peers.Load()
		return p != nil && (*p).Peer(r.Addr)
	}
	return r.Peer && r.Ports < PeerPorts
}

// shares holds a rate bucket per fleet host: each host's blocks are
// admitted at a share of block.max_per_second.
type shares struct {
	mu sync.Mutex
	b  map[string]*bucket.Bucket
}

// fleetShare refuses another host's block (not the fleet administrator's)
// beyond that host's share of the sets and of the rate, or beyond what
// the fleet's blocks may take together (all but FleetReserve).
// A corroborated block counts only against the fleet's part: no one host
// made it.
func (d *Decider) fleetShare(cfg *config.Config, r Request, ev Evidence, more int) bool {
	all, from := d.ledger.Fleet(r.FleetHost)
	size := cfg.Block.SetSize
	if all+more >= size-size/FleetReserve {
		return true
	}
	if ev == Corroborated {
		return false
	}
	share := max(1, int(float64(size)*cfg.Fleet.HostShare))
	return from+more >= share || !d.hostRate(cfg, r.FleetHost, share).Allow(r.Now)
}

// hostRate is host's bucket: a share of block.max_per_second, with a
// burst of its share of the sets (an administrator's 10k block on that
// host arrives at once).
func (d *Decider) hostRate(cfg *config.Config, host string, burst int) *bucket.Bucket {
	d.shares.mu.Lock()
	defer d.shares.mu.Unlock()
	if d.shares.b == nil || len(d.shares.b) > config.MaxFleetHosts {
		d.shares.b = map[string]*bucket.Bucket{}
	}
	b := d.shares.b[host]
	if b == nil {
		b = &bucket.Bucket{}
		d.shares.b[host] = b
	}
	b.SetBurst(max(1, float64(cfg.Block.MaxPerSecond)*cfg.Fleet.HostShare), burst)
	return b
}

// timeoutOf is a block's length: an administrator's, a fleet block's time
// left or an adopted element's remaining time as given; forgeable
// evidence never lengthens as an offence; the rest by repeat_factor.
func timeoutOf(cfg *config.Config, r Request, ev Evidence, times int) time.Duration {
	switch {
	case r.Timeout != 0 && r.Origin != state.OriginDetect:
		return r.Timeout
	case ev == Forgeable || ev == Administrator:
		return cfg.BlockTimeout()
	}
	d := RepeatTimeout(cfg, times)
	if byTool, ok := cfg.Block.TimeoutByTool[r.Tool.String()]; ok && r.Origin == state.OriginDetect {
		// Only here, on evidence that cannot be forged: a forged packet
		// can look like any tool's.
		d = max(d, time.Duration(byTool))
	}
	return d
}
