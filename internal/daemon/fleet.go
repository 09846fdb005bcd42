package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/fleet"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// FleetReadyWait bounds how long the start waits for the fleet's current
// blocks (fleet.Client.Ready) before it reports ready: NATS down must not
// hold up local blocking.
const FleetReadyWait = 5 * time.Second

// fleetLink joins the fleet client to the daemon: the ledger's blocks go
// out through it (ledger.Fleet), and the other hosts' blocks and lifts
// come in through the same decision and ledger as every block
// (fleet.Sink, origin fleet).
type fleetLink struct {
	d *Daemon
	c *fleet.Client
	// in carries the fleet's blocks and lifts, in their order, to the
	// goroutine that applies them: what arrives together goes into the
	// kernel in one transaction.
	in   chan fleetItem
	done <-chan struct{}
}

// fleetItem is a block or a lift from the fleet.
type fleetItem struct {
	block *fleet.Block
	lift  *fleet.Lift
}

// MirrorBatch bounds the fleet's blocks applied in one transaction.
const MirrorBatch = 4096

// newFleet builds the fleet client when the configuration has a fleet.
func (d *Daemon) newFleet() error {
	cfg := d.cfgp.Load()
	if !cfg.Fleet.Enabled() {
		return nil
	}
	f := &fleetLink{d: d, in: make(chan fleetItem, 4*MirrorBatch)}
	c, err := fleet.New(cfg.Fleet, fleet.Options{Sink: f, Protected: d.guard.Protected, Logger: d.opts.Logger,
		CorrelateTimeout: cfg.BlockTimeout()})
	if err != nil {
		return err
	}
	f.c, d.fleet = c, f
	return nil
}

// Publish sends a block recorded here to the fleet (ledger.Fleet).
func (f *fleetLink) Publish(b state.Block) {
	f.c.Publish(fleet.Block{Addr: b.Addr, Expires: b.Expires, Origin: string(b.Origin), ScanType: b.Kind, Ports: b.Ports})
}

// Unblock lifts an administrator's unblock everywhere (ledger.Fleet).
func (f *fleetLink) Unblock(a netip.Addr) { f.c.Unblock(a) }

// FleetBlock enforces another host's block, or a correlated one, with its
// time left (fleet.Sink). It waits while the batches before it are
// applied.
func (f *fleetLink) FleetBlock(b fleet.Block) { f.put(fleetItem{block: &b}) }

// FleetUnblock lifts a block that an administrator lifted on another host,
// if it began before that (fleet.Sink).
func (f *fleetLink) FleetUnblock(l fleet.Lift) { f.put(fleetItem{lift: &l}) }

func (f *fleetLink) put(it fleetItem) {
	select {
	case f.in <- it:
	case <-f.done:
	}
}

// mirror applies the fleet's blocks and lifts in order until done: the
// blocks waiting together in one decision and one transaction.
func (f *fleetLink) mirror(done <-chan struct{}) {
	for {
		var it fleetItem
		select {
		case <-done:
			return
		case it = <-f.in:
		}
		var batch []fleet.Block
		for {
			if it.lift != nil {
				f.apply(batch)
				batch = nil
				f.lift(*it.lift)
			} else {
				batch = append(batch, *it.block)
			}
			if len(batch) >= MirrorBatch {
				break
			}
			select {
			case it = <-f.in:
				continue
			default:
			}
			break
		}
		f.apply(batch)
	}
}

// apply decides on a batch of the fleet's blocks together (the capacity
// counts them all) and puts the blocked ones in, in one transaction.
func (f *fleetLink) apply(batch []fleet.Block) {
	if len(batch) == 0 {
		return
	}
	d := f.d
	now := time.Now()
	latest := map[netip.Addr]int{}
	var reqs []decide.Request
	var from []fleet.Block
	for _, b := range batch {
		left := b.Expires.Sub(now).Round(time.Second)
		if left < time.Second {
			continue
		}
		if cur, ok := d.ledger.Get(b.Addr); ok && !cur.Expires.Before(b.Expires.Add(-time.Second)) {
			continue // held as long already
		}
		r := decide.Request{Addr: b.Addr, Origin: state.OriginFleet, Timeout: left, Now: now}
		if i, dup := latest[b.Addr]; dup {
			if b.Expires.After(from[i].Expires) {
				reqs[i], from[i] = r, b
			}
			continue
		}
		latest[b.Addr] = len(reqs)
		reqs, from = append(reqs, r), append(from, b)
	}
	var ds []decide.Decision
	var evs []ledger.Evidence
	refused := 0
	for i, dec := range d.decider.DecideAll(reqs) {
		b := from[i]
		if dec.Action != decide.Block {
			if refused++; refused <= 10 {
				d.log.Infof("fleet block of %s from %s not applied: %s", b.Addr, b.Host, dec)
			}
			continue
		}
		kind := fmt.Sprintf("%s (from %s)", b.ScanType, b.Host)
		if b.Origin == fleet.OriginCorrelate {
			kind = "correlated (seen by " + strings.Join(b.Seen, ", ") + ")"
			d.log.Attack(alert.CorrelatedLine(b.Addr, b.Seen, time.Duration(d.cfgp.Load().Fleet.Correlate.Window)))
		}
		ds = append(ds, dec)
		evs = append(evs, ledger.Evidence{Kind: kind, Ports: b.Ports})
	}
	if refused > 10 {
		d.log.Infof("%d fleet blocks not applied in all (the first 10 said why)", refused)
	}
	if len(ds) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.ledger.Mirror(ctx, ds, evs); err != nil {
		d.log.Errorf("could not apply %d blocks from the fleet: %v", len(ds), err)
	}
}

// lift lifts a block that an administrator lifted on another host, if it
// began before that.
func (f *fleetLink) lift(l fleet.Lift) {
	d := f.d
	cur, ok := d.ledger.Get(l.Addr)
	if !ok || !cur.Expires.Add(-cur.Timeout).Before(l.At) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.ledger.Unmirror(ctx, l.Addr); err != nil {
		d.log.Errorf("could not lift the block of %s (lifted on %s): %v", l.Addr, l.By, err)
		return
	}
	d.log.Infof("Block of host %s lifted fleet-wide by an administrator on %s", l.Addr, l.By)
}

// run runs the client until ctx is done, and tells it this host's own
// addresses (published for people to read; they protect nothing on the
// other hosts) as the guard sees them change.
func (f *fleetLink) run(ctx context.Context) {
	f.done = ctx.Done()
	go f.mirror(ctx.Done())
	own := func() { f.c.SetOwnAddresses(f.d.guard.Local()) }
	defer f.d.guard.OnChange(own)()
	own()
	if err := f.c.Run(ctx); err != nil {
		f.d.log.Errorf("fleet: %v; blocks are not shared with the fleet", err)
	}
}
