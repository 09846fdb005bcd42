package fleetlink

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/fleet"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
	"github.com/portsentry-nft/portsentry-nft/internal/scanner"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// RefusalLines bounds the lines a batch writes about fleet blocks not
// applied (the rest are counted in one line).
const RefusalLines = 10

// intake applies what the fleet hands over: a Link's, with the decision
// and the ledger it applies through.
type intake struct {
	*Link
	dec Decider
	led Ledger
}

// Intake applies the fleet's blocks and lifts in their order until ctx is
// done, through dec and led: the blocks waiting together in one decision
// and one transaction.
func (l *Link) Intake(ctx context.Context, dec Decider, led Ledger) {
	(&intake{l, dec, led}).run(ctx)
}

func (l *intake) run(ctx context.Context) {
	for {
		var it item
		select {
		case <-ctx.Done():
			return
		case it = <-l.in:
		}
		l.apply(l.gather(it))
	}
}

// gather takes it and what waits behind it, up to Batch blocks: the
// blocks before a lift are applied before it (gather returns them, and
// applies the lift itself after them).
func (l *intake) gather(it item) []fleet.Block {
	var batch []fleet.Block
	for {
		if it.lift != nil {
			l.apply(batch)
			batch = nil
			l.lift(*it.lift)
		} else {
			batch = append(batch, *it.block)
		}
		if len(batch) >= Batch {
			return batch
		}
		select {
		case it = <-l.in:
		default:
			return batch
		}
	}
}

// requests makes one request per address of batch (the latest expiry when
// an address comes twice), and says which block each came from.
func requests(batch []fleet.Block, now time.Time) ([]decide.Request, []fleet.Block) {
	latest := map[netip.Addr]int{}
	var reqs []decide.Request
	var from []fleet.Block
	for _, b := range batch {
		r := decide.Request{Addr: b.Addr, Origin: state.OriginFleet, Timeout: b.Expires.Sub(now).Round(time.Second), Now: now,
			Evidence: evidenceOf(b), FleetHost: b.Host}
		if i, dup := latest[b.Addr]; dup {
			if b.Expires.After(from[i].Expires) {
				reqs[i], from[i] = r, b
			}
			continue
		}
		latest[b.Addr] = len(reqs)
		reqs, from = append(reqs, r), append(from, b)
	}
	return reqs, from
}

// evidenceOf is what this host can check of a fleet record: one written
// under the fleet administrator's identity is the administrator's; a
// correlated one whose sightings this host counted itself (or a majority
// of fleet.correlate.counters did) rests on several hosts; any other host's record rests on that host's word, which its
// share bounds (a handshake or an administrator there: unforgeable as far
// as that host is honest; probes: forgeable).
func evidenceOf(b fleet.Block) decide.Evidence {
	switch {
	case b.Admin:
		return decide.Administrator
	case b.Origin == fleet.OriginCorrelate && b.Corroborated:
		return decide.Corroborated
	case b.Evidence == fleet.EvidenceHandshake || b.Evidence == fleet.EvidenceAdmin:
		return decide.Unforgeable
	}
	return decide.Forgeable
}

// apply decides on a batch of the fleet's blocks together (the capacity
// counts them all) and hands the blocked ones to the ledger.
func (l *intake) apply(batch []fleet.Block) {
	if len(batch) == 0 {
		return
	}
	reqs, from := requests(batch, time.Now())
	var ops []ledger.Op
	refused := 0
	for i, dec := range l.dec.DecideAll(reqs) {
		b := from[i]
		if dec.Action != decide.Block {
			if dec.Reason != decide.AlreadyBlocked && dec.Reason != decide.Expired {
				if refused++; refused <= RefusalLines {
					l.cfg.Log.Infof("fleet block of %s from %s not applied: %s", b.Addr, b.Host, dec)
				}
			}
			continue
		}
		ops = append(ops, ledger.Act{Decision: dec, Evidence: ledger.Evidence{Kind: l.kind(b), Ports: b.Ports, From: b.Host,
			Probe: packet.Probe{Tool: scanner.Parse(b.Tool)}}})
	}
	if refused > RefusalLines {
		l.cfg.Log.Infof("%d fleet blocks not applied in all (the first %d said why)", refused, RefusalLines)
	}
	if len(ops) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Not on disk (ErrNotDurable): in force all the same, and the ledger
	// says so once.
	if _, err := l.led.Apply(ctx, ops...); err != nil && !errors.Is(err, ledger.ErrNotDurable) {
		l.cfg.Log.Errorf("could not apply %d blocks from the fleet: %v", len(ops), err)
	}
}

// kind is what the record says of a fleet block (and, for a correlated
// one, its line).
func (l *intake) kind(b fleet.Block) string {
	if b.Origin != fleet.OriginCorrelate {
		return fmt.Sprintf("%s (from %s)", b.ScanType, b.Host)
	}
	l.cfg.Log.Attack(alert.CorrelatedLine(b.Addr, b.Seen, time.Duration(l.cfg.Settings().Fleet.Correlate.Window)))
	return "correlated (seen by " + strings.Join(b.Seen, ", ") + ")"
}

// lift lifts a block that the fleet's administrator lifted, or that the
// host which published it lifted, when the decision says that lift
// reaches it.
func (l *intake) lift(x fleet.Lift) {
	cur, ok := l.led.Get(x.Addr)
	if !ok || !decide.LiftReaches(cur, x.At, x.Admin) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := l.led.Apply(ctx, ledger.Unblock{Addrs: []netip.Addr{x.Addr}, Cause: ledger.FleetUnblocked}); err != nil && !errors.Is(err, ledger.ErrNotDurable) {
		l.cfg.Log.Errorf("could not lift the block of %s (lifted on %s): %v", x.Addr, x.By, err)
		return
	}
	if x.Admin {
		l.cfg.Log.Infof("Block of host %s lifted fleet-wide by the fleet's administrator", x.Addr)
		return
	}
	l.cfg.Log.Infof("Block of host %s lifted by %s, which published it", x.Addr, x.By)
}
