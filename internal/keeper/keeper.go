// Package keeper keeps table inet portsentry as the configuration says
// while the daemon runs: it installs the ruleset (falling back to the
// xtables NFQUEUE target on kernels without nft_queue), follows services
// that start or stop listening on monitored ports (the in-use sets),
// switches NFLOG to batching during a flood and back, refreshes the guard
// rails, and puts the table and the ledger's blocks back when something
// outside removes them (the watchdog).
//
// Installs are serialised here: the watchdog, a reload, the flood switch
// and a listener change never race each other.
package keeper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/capture"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/listeners"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// Ledger is what the keeper asks of the record of blocks
// (*ledger.Ledger).
type Ledger interface {
	Len() int
	Holds(a netip.Addr) bool
	// Restore puts every block back into the kernel (after a reinstall).
	Restore(ctx context.Context, why string) (int, error)
	// Reconcile puts back the blocks missing from inKernel.
	Reconcile(ctx context.Context, inKernel map[netip.Addr]time.Duration) (int, error)
	Apply(ctx context.Context, ops ...ledger.Op) (int, error)
}

// Decider decides on the kernel's elements the ledger does not hold
// (*decide.Decider).
type Decider interface {
	Decide(r decide.Request) decide.Decision
}

// Guard is the addresses a first strike never blocks (*guard.Guard).
type Guard interface {
	Prefixes() []netip.Prefix
	// OnChange calls f after the addresses changed, until remove.
	OnChange(f func()) (remove func())
	Refresh() error
}

// Watcher follows the host's listening sockets (*listeners.Watcher).
type Watcher interface {
	Snapshot() *listeners.Set
	// Follow keeps Snapshot current until ctx is done, calling changed
	// after a reading that differs from the one before.
	Follow(ctx context.Context, changed func(added, removed []listeners.Socket)) error
}

// Config is what a Keeper works with.
type Config struct {
	Settings *config.Config
	NetNS    *os.File // nil: the daemon's own namespace
	Log      *alert.Log
	Ledger   Ledger
	// Decider decides on the kernel's elements the ledger does not hold
	// (Adopt).
	Decider Decider
	Guard   Guard
	Watcher Watcher
	// Capture is the capture's counters (the probe rate decides a flood).
	Capture *capture.Stats
	// Own reports TCP ports the daemon itself listens on (verified mode):
	// tripwires, not services.
	Own func(port uint16) bool
	// Kernel, when set, replaces nftables in NetNS (tests).
	Kernel Kernel
	// Tick, when set, replaces time.NewTicker for the watchdog and the
	// flood switch (tests): the ticks every d, and a stop.
	Tick func(d time.Duration) (ticks <-chan time.Time, stop func())
}

// Keeper keeps the ruleset. Create with New; Install before Run.
type Keeper struct {
	c   Config
	cfg atomic.Pointer[config.Config]
	mu  sync.Mutex // one install at a time
	// compatQueue: this kernel queues through the xtables target.
	compatQueue atomic.Bool
	// flood: the log rules let NFLOG batch (see adaptBatching).
	flood atomic.Bool
	// Reinstalls counts the watchdog's reinstalls.
	Reinstalls atomic.Uint64
	// cur is the ruleset last installed and print what the kernel showed of
	// it right after (nft.Fingerprint); the watchdog compares with them
	// instead of building the ruleset anew every second. Guarded by mu.
	cur   *nft.Ruleset
	print []byte
}

// New makes a Keeper.
func New(c Config) *Keeper {
	if c.Kernel == nil {
		c.Kernel = nftKernel{netns: c.NetNS}
	}
	if c.Tick == nil {
		c.Tick = newTicker
	}
	k := &Keeper{c: c}
	k.cfg.Store(c.Settings)
	return k
}

func newTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// own reports a socket the daemon itself holds (verified mode).
func (k *Keeper) own(s listeners.Socket) bool {
	return s.Proto == listeners.ProtoTCP && k.c.Own != nil && k.c.Own(s.Port)
}

// services are the listening sockets that are not the daemon's own.
func (k *Keeper) services() []listeners.Socket {
	var out []listeners.Socket
	for _, s := range k.c.Watcher.Snapshot().Sockets() {
		if !k.own(s) {
			out = append(out, s)
		}
	}
	return out
}

// Ruleset is the ruleset for cfg as it stands now: in-use ports, flood
// batching, the kernel's queue flavour.
func (k *Keeper) Ruleset(cfg *config.Config) *nft.Ruleset {
	return nft.Build(cfg, nft.Shape{
		Flood:       k.flood.Load(),
		CompatQueue: k.compatQueue.Load(),
		InUse:       listeners.Elements(k.services(), cfg.TCP.Monitored, cfg.UDP.Monitored),
		Protected:   k.c.Guard.Prefixes(),
	})
}

// Install makes the kernel's table what cfg says, in one transaction
// that keeps every block, and makes cfg the one the keeper keeps.
func (k *Keeper) Install(cfg *config.Config) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.install(cfg); err != nil {
		return err
	}
	k.cfg.Store(cfg)
	return nil
}

func (k *Keeper) install(cfg *config.Config) error {
	rs := k.Ruleset(cfg)
	err := k.c.Kernel.Install(rs)
	if err != nil && rs.Queued() && !k.compatQueue.Load() {
		// No nft_queue in this kernel (the queue statement fails with
		// ENOENT): queue through the xtables NFQUEUE target instead.
		shape := rs.Shape()
		shape.CompatQueue = true
		compat := nft.Build(cfg, shape)
		if err2 := k.c.Kernel.Install(compat); err2 == nil {
			k.compatQueue.Store(true)
			k.c.Log.Info("this kernel has no nft_queue; queueing through the xtables NFQUEUE target (nft_compat)")
			rs, err = compat, nil
		}
	}
	if err == nil {
		k.installed(rs)
	}
	return err
}

// installed remembers rs as the ruleset in the kernel, with its
// fingerprint. Called with mu held.
func (k *Keeper) installed(rs *nft.Ruleset) {
	k.cur, k.print = rs, nil
	k.print, _ = k.c.Kernel.Fingerprint(rs)
}

// Run keeps the ruleset until ctx is done.
func (k *Keeper) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer k.c.Guard.OnChange(k.guardChanged)()
	wg.Go(func() { k.c.Watcher.Follow(ctx, k.listenersChanged) })
	if k.cfg.Load().Capture.Mode != "nfqueue" {
		wg.Go(func() { k.adaptBatching(ctx) })
	}
	k.watchdog(ctx)
	wg.Wait()
}

// watchdog notices when the table, a set, the chain or blocks were removed
// outside the daemon (nft flush ruleset, nft delete table, nft flush set)
// and puts them back.
func (k *Keeper) watchdog(ctx context.Context) {
	ticks, stop := k.c.Tick(time.Second)
	defer stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
		n++
		k.check(ctx, n)
	}
}

// check is the watchdog's nth second.
func (k *Keeper) check(ctx context.Context, n int) {
	// Listing the sets costs with the square of the blocks: every 5 s,
	// then less often (nft.ElementCheckEvery).
	checkElements := n%nft.ElementCheckEvery(k.c.Ledger.Len()) == 0
	if err := k.heal(ctx, checkElements); err != nil {
		k.c.Log.Errorf("self-check of table inet %s failed: %v", nft.TableName, err)
	}
	// guard.Watch follows route, address and resolv.conf changes as
	// they happen; this is the fallback if it cannot.
	if n%30 == 0 {
		if err := k.c.Guard.Refresh(); err != nil {
			k.c.Log.Warn(err.Error())
		}
	}
}

func (k *Keeper) heal(ctx context.Context, checkElements bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	probs, fp, err := k.c.Kernel.Check(k.cur)
	if err != nil {
		return err
	}
	if len(probs) == 0 {
		switch {
		case k.print == nil:
			k.print = fp
		case !bytes.Equal(fp, k.print):
			probs = append(probs, "its rules or sets differ from what portsentry-nft installed")
		}
	}
	if len(probs) > 0 {
		if err := k.install(k.cfg.Load()); err != nil {
			return fmt.Errorf("reinstall after %s: %w", strings.Join(probs, ", "), err)
		}
		k.Reinstalls.Add(1)
		n, err := k.c.Ledger.Restore(ctx, "self-heal")
		if err != nil {
			return err
		}
		k.c.Log.Warnf("table inet %s was changed outside portsentry-nft (%s); reinstalled it and restored %d blocks.", nft.TableName, strings.Join(probs, ", "), n)
		return nil
	}
	if !checkElements {
		return nil
	}
	inKernel, err := k.c.Kernel.Blocked()
	if err != nil {
		return err
	}
	n, err := k.c.Ledger.Reconcile(ctx, inKernel)
	if err != nil {
		return err
	}
	if n > 0 {
		k.c.Log.Warnf("%d blocks were missing from the sets (flushed or deleted outside portsentry-nft); restored them. Use 'portsentry-nft unblock' to lift a block.", n)
	}
	_, err = k.adopt(ctx, inKernel, AdoptAfter)
	return err
}

// AdoptAfter: the watchdog adopts a kernel element the ledger does not
// hold once it is this old; a younger one is most likely a first strike
// whose NFLOG copy (with the probe's scan type) is still on its way.
const AdoptAfter = 2 * time.Second

// Adopt records in the ledger the elements of blocked/blocked6 it does
// not hold: the kernel's first strikes while the daemon was stopped,
// frozen or losing NFLOG messages (or elements an administrator added
// with nft), with their remaining time. At start, before capture, with
// what the sets held before the ledger's restore (nft.Blocked then: a
// dump right after the restore's bulk insert meets the kernel resizing
// the set, and takes seconds of retries at 100k elements).
func (k *Keeper) Adopt(ctx context.Context, inKernel map[netip.Addr]time.Duration) (int, error) {
	return k.adopt(ctx, inKernel, 0)
}

func (k *Keeper) adopt(ctx context.Context, inKernel map[netip.Addr]time.Duration, minAge time.Duration) (int, error) {
	cfg := k.cfg.Load()
	now := time.Now()
	var ops []ledger.Op
	for a, left := range inKernel {
		left = left.Round(time.Second)
		if left < 2*time.Second || cfg.BlockTimeout()-left < minAge || k.c.Ledger.Holds(a) {
			continue
		}
		d := k.c.Decider.Decide(decide.Request{Addr: a, Origin: state.OriginKernel, Timeout: left, Now: now})
		ops = append(ops, ledger.Act{Decision: d, Evidence: ledger.Evidence{Adopted: true}, At: now})
	}
	if len(ops) == 0 {
		return 0, nil
	}
	n, err := k.c.Ledger.Apply(ctx, ops...)
	// Not on disk (ErrNotDurable): adopted all the same, and the ledger
	// says so once.
	if err != nil && !errors.Is(err, ledger.ErrNotDurable) {
		return n, fmt.Errorf("adopt %d elements of the sets: %w", len(ops), err)
	}
	if n > 0 {
		k.c.Log.Infof("Adopted %d blocks the kernel made while the daemon was not following it (stopped, frozen, or NFLOG messages lost).", n)
	}
	return n, nil
}

// guardChanged brings the first strike's guard sets up to date: an
// address, gateway, nameserver or never_block changed.
func (k *Keeper) guardChanged() {
	k.mu.Lock()
	defer k.mu.Unlock()
	rs := k.Ruleset(k.cfg.Load())
	if !rs.Strikes() || k.cur == nil {
		return
	}
	if err := k.c.Kernel.UpdateProtected(rs); err != nil {
		k.c.Log.Error(err.Error())
		return
	}
	k.installed(rs)
}

// NFLOG sends each probe at once (lowest latency) until the probe rate
// says flood; then the log rules let the kernel batch up to
// capture.queue_threshold messages, or NFLOG drops them (measured here: 35%
// lost at 66k probes/s unbatched, none batched), and send at most
// capture.flood_rate probes a second, so that the daemon keeps up and a real
// scanner in the flood is seen within milliseconds, not after a backlog of
// spoofed probes. calmSeconds of calm switch back.
const (
	floodRate   = 5000 // probes per second
	calmSeconds = 10
	floodTick   = 250 * time.Millisecond // a flood is noticed within a quarter second
)

func (k *Keeper) adaptBatching(ctx context.Context) {
	st := k.c.Capture
	f := floodSwitch{last: st.Packets.Load() + st.Lost.Load()}
	ticks, stop := k.c.Tick(floodTick)
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
		k.floodStep(&f, st.Packets.Load()+st.Lost.Load())
	}
}

// floodSwitch is what the flood switch remembers from one tick to the
// next.
type floodSwitch struct {
	last uint64 // the probes counted at the last tick
	calm int    // calm ticks in a row during a flood
}

// floodStep is one tick of the flood switch: count is the probes counted
// so far.
func (k *Keeper) floodStep(f *floodSwitch, count uint64) {
	perSecond := uint64(time.Second / floodTick)
	rate := (count - f.last) * perSecond
	f.last = count
	switch flood := k.flood.Load(); {
	case !flood && rate > floodRate:
		k.setFlood(true, fmt.Sprintf("%d probes/s: a flood; NFLOG now batches up to %d messages and takes at most %d probes/s (0: no bound)", rate, k.cfg.Load().Capture.QueueThreshold, k.cfg.Load().Capture.FloodRate))
		f.calm = 0
	case flood && rate < floodRate/10:
		if f.calm++; f.calm >= calmSeconds*int(perSecond) {
			k.setFlood(false, fmt.Sprintf("%d probes/s: NFLOG sends each probe at once again, unbounded", rate))
		}
	default:
		f.calm = 0
	}
}

func (k *Keeper) setFlood(on bool, why string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.flood.Store(on)
	if err := k.install(k.cfg.Load()); err != nil {
		k.flood.Store(!on)
		k.c.Log.Errorf("%s, but the ruleset could not be updated: %v", why, err)
		return
	}
	k.c.Log.Warn(why)
}
