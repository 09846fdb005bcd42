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
}

// newFleet builds the fleet client when the configuration has a fleet.
func (d *Daemon) newFleet() error {
	cfg := d.cfgp.Load()
	if !cfg.Fleet.Enabled() {
		return nil
	}
	f := &fleetLink{d: d}
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
// time left (fleet.Sink).
func (f *fleetLink) FleetBlock(b fleet.Block) {
	d := f.d
	now := time.Now()
	left := b.Expires.Sub(now).Round(time.Second)
	if left < time.Second {
		return
	}
	if cur, ok := d.ledger.Get(b.Addr); ok && !cur.Expires.Before(b.Expires.Add(-time.Second)) {
		return // held as long already
	}
	dec := d.decider.Decide(decide.Request{Addr: b.Addr, Origin: state.OriginFleet, Timeout: left, Now: now})
	if dec.Action != decide.Block {
		d.log.Infof("fleet block of %s from %s not applied: %s", b.Addr, b.Host, dec)
		return
	}
	kind := fmt.Sprintf("%s (from %s)", b.ScanType, b.Host)
	if b.Origin == fleet.OriginCorrelate {
		kind = "correlated (seen by " + strings.Join(b.Seen, ", ") + ")"
		d.log.Attack(alert.CorrelatedLine(b.Addr, b.Seen, time.Duration(d.cfgp.Load().Fleet.Correlate.Window)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.ledger.Mirror(ctx, []decide.Decision{dec}, []ledger.Evidence{{Kind: kind, Ports: b.Ports}}); err != nil {
		d.log.Errorf("could not block host %s from the fleet: %v", b.Addr, err)
	}
}

// FleetUnblock lifts a block that an administrator lifted on another host,
// if it began before that (fleet.Sink).
func (f *fleetLink) FleetUnblock(l fleet.Lift) {
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
// addresses (which no host blocks) as they change.
func (f *fleetLink) run(ctx context.Context) {
	f.c.SetOwnAddresses(f.d.guard.Local())
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				f.c.SetOwnAddresses(f.d.guard.Local())
			}
		}
	}()
	if err := f.c.Run(ctx); err != nil {
		f.d.log.Errorf("fleet: %v; blocks are not shared with the fleet", err)
	}
}
