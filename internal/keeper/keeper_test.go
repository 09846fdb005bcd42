package keeper

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/listeners"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// perTick is how many probes a quarter-second tick counts at rate probes
// a second.
func perTick(rate uint64) uint64 { return rate / uint64(time.Second/floodTick) }

func (r *rig) install(t *testing.T) {
	t.Helper()
	if err := r.k.Install(r.k.cfg.Load()); err != nil {
		t.Fatal(err)
	}
	r.j.take()
}

func (r *rig) lastShape(t *testing.T) nft.Shape {
	t.Helper()
	r.kernel.mu.Lock()
	defer r.kernel.mu.Unlock()
	if len(r.kernel.shapes) == 0 {
		t.Fatal("nothing installed")
	}
	return r.kernel.shapes[len(r.kernel.shapes)-1]
}

func TestFloodSwitchesBatchingOnAboveItsThreshold(t *testing.T) {
	r := newRig(t, nil)
	r.install(t)
	var f floodSwitch
	count := perTick(floodRate) // exactly the threshold: no flood
	r.k.floodStep(&f, count)
	if r.k.flood.Load() || len(r.j.take()) > 0 {
		t.Fatalf("%d probes/s switched batching on", floodRate)
	}
	count += perTick(floodRate) + 1
	r.k.floodStep(&f, count)
	if !r.k.flood.Load() || !r.lastShape(t).Flood {
		t.Fatalf("above %d probes/s: flood %v, installed %+v", floodRate, r.k.flood.Load(), r.lastShape(t))
	}
	if got := r.j.take(); !equal(got, []string{"install"}) {
		t.Errorf("the switch did %v, want one install", got)
	}
	r.logged(t, "5004 probes/s: a flood; NFLOG now batches up to")
	// The flood goes on: nothing more is installed.
	count += perTick(2 * floodRate)
	r.k.floodStep(&f, count)
	if got := r.j.take(); len(got) > 0 {
		t.Errorf("a flood going on did %v", got)
	}
}

func TestFloodSwitchesBatchingOffAfterTheCalmPeriod(t *testing.T) {
	r := newRig(t, nil)
	r.install(t)
	var f floodSwitch
	count := perTick(10 * floodRate)
	r.k.floodStep(&f, count)
	r.j.take()
	calmTicks := calmSeconds * int(time.Second/floodTick)
	calm := func(n int) {
		for range n {
			count += perTick(floodRate/10) - 1
			r.k.floodStep(&f, count)
		}
	}
	calm(calmTicks - 1)
	// A tick below the flood but not calm starts the calm period again.
	count += perTick(floodRate / 2)
	r.k.floodStep(&f, count)
	calm(calmTicks - 1)
	if !r.k.flood.Load() || len(r.j.take()) > 0 {
		t.Fatalf("batching went off before %d calm seconds in a row", calmSeconds)
	}
	calm(1)
	if r.k.flood.Load() || r.lastShape(t).Flood {
		t.Fatalf("after %d calm seconds batching is still on", calmSeconds)
	}
	if got := r.j.take(); !equal(got, []string{"install"}) {
		t.Errorf("the switch did %v, want one install", got)
	}
	r.logged(t, "496 probes/s: NFLOG sends each probe at once again, unbounded")
}

func TestFloodSwitchStaysWhenTheRulesetCannotChange(t *testing.T) {
	r := newRig(t, nil)
	r.install(t)
	r.kernel.set(func(f *fakeKernel) {
		f.refuse = func(rs *nft.Ruleset) error { return errors.New("netlink: EPERM") }
	})
	var f floodSwitch
	r.k.floodStep(&f, perTick(10*floodRate))
	if r.k.flood.Load() {
		t.Error("flood is on although its ruleset was refused")
	}
	if r.k.Ruleset(r.k.cfg.Load()).Shape().Flood {
		t.Error("the next install would batch")
	}
	r.logged(t, "but the ruleset could not be updated: netlink: EPERM")
}

// The loop itself: the rate is the probes and the losses counted between
// two ticks of its own clock.
func TestFloodSwitchCountsProbesBetweenItsTicks(t *testing.T) {
	r := newRig(t, nil)
	r.install(t)
	r.stats.Packets.Store(1 << 20) // before the keeper ran: not a rate
	stop := r.run()
	for range 2 { // the watchdog's clock and the switch's
		<-r.ticking
	}
	r.stats.Packets.Add(perTick(floodRate))
	r.stats.Lost.Add(1)
	r.ticks[floodTick] <- time.Now()
	stop()
	if !r.k.flood.Load() || !r.lastShape(t).Flood {
		t.Error("probes and losses above the threshold in one tick did not switch batching on")
	}
}

func TestNoFloodSwitchInNFQUEUEMode(t *testing.T) {
	cfg := config.Default()
	cfg.Capture.Mode = "nfqueue"
	r := newRig(t, cfg)
	r.install(t)
	stop := r.run()
	<-r.ticking
	stop()
	select {
	case d := <-r.ticking:
		t.Errorf("in NFQUEUE mode the keeper asked for a second clock (every %v)", d)
	default:
	}
}

// refuseNFTQueue is a kernel without nft_queue: the queue statement fails.
func refuseNFTQueue(rs *nft.Ruleset) error {
	if rs.Queued() && !rs.Shape().CompatQueue {
		return errNoQueue
	}
	return nil
}

func TestCompatQueueFallback(t *testing.T) {
	cfg := config.Default()
	cfg.Capture.Mode = "nfqueue"
	r := newRig(t, cfg)
	r.kernel.refuse = refuseNFTQueue
	if err := r.k.Install(cfg); err != nil {
		t.Fatal(err)
	}
	if got := r.j.take(); !equal(got, []string{"install refused", "install"}) {
		t.Errorf("installs: %v, want the queue statement refused, then the xtables target", got)
	}
	if !r.lastShape(t).CompatQueue || !r.k.compatQueue.Load() {
		t.Fatal("the xtables NFQUEUE target is not what the kernel holds")
	}
	r.logged(t, "this kernel has no nft_queue; queueing through the xtables NFQUEUE target (nft_compat)")
	// From now on the keeper builds the compat ruleset from the start.
	if err := r.k.Install(cfg); err != nil {
		t.Fatal(err)
	}
	if got := r.j.take(); !equal(got, []string{"install"}) {
		t.Errorf("a reload did %v, want one install", got)
	}
	if !r.k.Ruleset(cfg).Shape().CompatQueue {
		t.Error("Ruleset forgot the kernel's queue flavour")
	}
}

func TestCompatQueueFallbackFailingToo(t *testing.T) {
	cfg := config.Default()
	cfg.Capture.Mode = "nfqueue"
	r := newRig(t, cfg)
	r.kernel.refuse = func(*nft.Ruleset) error { return errNoQueue }
	if err := r.k.Install(cfg); !errors.Is(err, errNoQueue) {
		t.Fatalf("Install: %v, want the first install's error", err)
	}
	if got := r.j.take(); !equal(got, []string{"install refused", "install refused"}) {
		t.Errorf("installs: %v", got)
	}
	if r.k.compatQueue.Load() || r.k.cur != nil {
		t.Error("a failed fallback is remembered")
	}
}

func TestNoCompatQueueFallbackInNFLOGMode(t *testing.T) {
	r := newRig(t, nil)
	r.kernel.refuse = func(*nft.Ruleset) error { return errNoQueue }
	if err := r.k.Install(r.k.cfg.Load()); !errors.Is(err, errNoQueue) {
		t.Fatalf("Install: %v", err)
	}
	if got := r.j.take(); !equal(got, []string{"install refused"}) {
		t.Errorf("installs: %v, want one", got)
	}
}

// kernelElements are the sets' elements for the adoption tests: one the
// ledger holds, a young one (a first strike whose NFLOG copy may still be
// on its way), an old one, and one about to expire.
func kernelElements(cfg *config.Config) (held, young, old, dying netip.Addr, els map[netip.Addr]time.Duration) {
	held, young = netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	old, dying = netip.MustParseAddr("2001:db8::3"), netip.MustParseAddr("192.0.2.4")
	to := cfg.BlockTimeout()
	els = map[netip.Addr]time.Duration{held: to - time.Minute, young: to - time.Second,
		old: to - 10*time.Second - 300*time.Millisecond, dying: 1400 * time.Millisecond} // 1s once rounded
	return
}

// adopted fails t unless the ledger was given one adoption of want, for
// left.
func (r *rig) adopted(t *testing.T, want netip.Addr, left time.Duration) {
	t.Helper()
	r.ledger.mu.Lock()
	defer r.ledger.mu.Unlock()
	if len(r.ledger.applied) != 1 {
		t.Fatalf("the ledger was given %d operations, want 1: %+v", len(r.ledger.applied), r.ledger.applied)
	}
	act, ok := r.ledger.applied[0].(ledger.Act)
	if !ok || !act.Evidence.Adopted {
		t.Fatalf("the ledger was given %+v, want an adoption", r.ledger.applied[0])
	}
	d := act.Decision
	if d.Addr != want || d.Origin != state.OriginKernel || d.Timeout != left || d.Action != decide.Block {
		t.Errorf("adopted %+v, want %v from the kernel for %v", d, want, left)
	}
}

func TestHealReinstallsRestoresThenReconcilesAndAdopts(t *testing.T) {
	r := newRig(t, nil)
	r.install(t)
	ctx := context.Background()
	r.k.check(ctx, 1)
	if got := r.j.take(); len(got) > 0 || r.k.Reinstalls.Load() != 0 {
		t.Fatalf("an intact table: %v", got)
	}
	held, _, old, _, els := kernelElements(r.k.cfg.Load())
	r.ledger.holds[held], r.ledger.restored, r.ledger.reconciled = true, 3, 2
	r.kernel.set(func(f *fakeKernel) { f.problems, f.blocked = []string{"table inet portsentry is missing"}, els })
	// Seconds 2..4: the table is put back and the ledger's blocks restored,
	// and nothing else; the elements wait for their check.
	r.k.check(ctx, 2)
	if got := r.j.take(); !equal(got, []string{"install", "restore (self-heal)"}) {
		t.Errorf("after the table went away: %v, want install, restore", got)
	}
	r.logged(t, "table inet portsentry was changed outside portsentry-nft (table inet portsentry is missing); reinstalled it and restored 3 blocks.")
	for n := 3; n <= 4; n++ {
		r.k.check(ctx, n)
	}
	if got := r.j.take(); len(got) > 0 {
		t.Errorf("seconds 3 and 4: %v", got)
	}
	// Second 5: the sets are read, missing blocks put back, then the
	// elements the ledger lacks adopted: only the old one.
	r.k.check(ctx, 5)
	if got := r.j.take(); !equal(got, []string{"read sets", "reconcile", "apply"}) {
		t.Errorf("the elements' check: %v, want read sets, reconcile, apply", got)
	}
	r.adopted(t, old, els[old].Round(time.Second))
	if len(r.decider.asked) != 1 || r.decider.asked[0].Origin != state.OriginKernel {
		t.Errorf("the decider was asked %+v", r.decider.asked)
	}
	r.logged(t, "2 blocks were missing from the sets")
	r.logged(t, "Adopted 1 blocks the kernel made")
	if n := r.k.Reinstalls.Load(); n != 1 {
		t.Errorf("Reinstalls = %d, want 1", n)
	}
}

func TestReinstallOnAnElementCheckLeavesTheElementsForTheNext(t *testing.T) {
	r := newRig(t, nil)
	r.install(t)
	r.kernel.set(func(f *fakeKernel) { f.problems = []string{"set blocked is missing"} })
	r.k.check(context.Background(), 5)
	if got := r.j.take(); !equal(got, []string{"install", "restore (self-heal)"}) {
		t.Errorf("a reinstall at second 5: %v, want install, restore", got)
	}
}

func TestAdoptAtStartTakesYoungElementsToo(t *testing.T) {
	r := newRig(t, nil)
	held, young, old, _, els := kernelElements(r.k.cfg.Load())
	r.ledger.holds[held] = true
	r.ledger.applyErr = ledger.ErrNotDurable
	n, err := r.k.Adopt(context.Background(), els)
	if err != nil || n != 2 {
		t.Fatalf("Adopt = %d, %v; want 2 adopted, not on disk but no error", n, err)
	}
	var got []netip.Addr
	for _, op := range r.ledger.applied {
		got = append(got, op.(ledger.Act).Decision.Addr)
	}
	slices.SortFunc(got, netip.Addr.Compare)
	if !slices.Equal(got, []netip.Addr{young, old}) {
		t.Errorf("adopted %v, want %v and %v", got, young, old)
	}
	r.ledger.applyErr = errors.New("disk on fire")
	if _, err := r.k.Adopt(context.Background(), els); err == nil {
		t.Error("an adoption the ledger failed is not an error")
	}
}

func TestWatchdogCountsReinstalls(t *testing.T) {
	r := newRig(t, nil)
	r.install(t)
	ctx := context.Background()
	// Rules edited outside: every set and chain is there, the fingerprint
	// differs.
	r.kernel.set(func(f *fakeKernel) { f.print = []byte("edited") })
	r.k.check(ctx, 1)
	r.logged(t, "its rules or sets differ from what portsentry-nft installed")
	r.k.check(ctx, 2) // the new fingerprint is the one installed
	if n := r.k.Reinstalls.Load(); n != 1 {
		t.Fatalf("after an edit: Reinstalls = %d, want 1", n)
	}
	// A reinstall that fails is not counted, and is tried again.
	r.kernel.set(func(f *fakeKernel) {
		f.problems = []string{"chain input is missing"}
		f.refuse = func(*nft.Ruleset) error { return errors.New("netlink: EBUSY") }
	})
	r.k.check(ctx, 3)
	r.logged(t, "self-check of table inet portsentry failed: reinstall after chain input is missing: netlink: EBUSY")
	if n := r.k.Reinstalls.Load(); n != 1 {
		t.Fatalf("after a failed reinstall: Reinstalls = %d, want 1", n)
	}
	r.kernel.set(func(f *fakeKernel) { f.refuse = nil })
	r.k.check(ctx, 4)
	if n := r.k.Reinstalls.Load(); n != 2 {
		t.Fatalf("Reinstalls = %d, want 2", n)
	}
}

func TestWatchdogTakesAFirstFingerprintWithoutReinstalling(t *testing.T) {
	r := newRig(t, nil)
	r.kernel.printErr = errors.New("dump interrupted")
	r.install(t)
	ctx := context.Background()
	r.k.check(ctx, 1)
	r.logged(t, "self-check of table inet portsentry failed: dump interrupted")
	r.kernel.set(func(f *fakeKernel) { f.printErr = nil })
	r.k.check(ctx, 2)
	r.kernel.set(func(f *fakeKernel) { f.print = []byte("edited") })
	r.k.check(ctx, 3)
	if n := r.k.Reinstalls.Load(); n != 1 {
		t.Errorf("Reinstalls = %d, want 1 (the edit, not the first fingerprint)", n)
	}
}

func TestWatchdogReadsTheSetsEveryFiveSecondsOrEveryMinute(t *testing.T) {
	for _, c := range []struct {
		blocks, reads int
	}{{9999, 12}, {10000, 1}} {
		r := newRig(t, nil)
		r.install(t)
		r.ledger.size = c.blocks
		for n := 1; n <= 60; n++ {
			r.k.check(context.Background(), n)
		}
		if r.kernel.blockedReads != c.reads {
			t.Errorf("%d blocks: the sets read %d times a minute, want %d", c.blocks, r.kernel.blockedReads, c.reads)
		}
		if r.kernel.checks != 60 || r.guard.refreshes != 2 {
			t.Errorf("a minute: %d checks of the table, %d refreshes of the guard; want 60, 2", r.kernel.checks, r.guard.refreshes)
		}
	}
}

// The loop itself: one check a tick of its own clock.
func TestWatchdogChecksOnItsTicks(t *testing.T) {
	r := newRig(t, nil)
	r.install(t)
	stop := r.run()
	for range 2 {
		<-r.ticking
	}
	for range 5 {
		r.ticks[time.Second] <- time.Now()
	}
	stop()
	if r.kernel.checks != 5 || r.kernel.blockedReads != 1 {
		t.Errorf("5 ticks: %d checks, %d reads of the sets; want 5, 1", r.kernel.checks, r.kernel.blockedReads)
	}
}

func TestListenerChangeUpdatesTheInUseSets(t *testing.T) {
	r := newRig(t, nil)
	r.install(t)
	port := r.k.cfg.Load().TCP.Monitored[0]
	s := listeners.Socket{Proto: listeners.ProtoTCP, Addr: netip.IPv4Unspecified(), Port: port}
	r.watcher.sockets = []listeners.Socket{s}
	r.k.listenersChanged([]listeners.Socket{s}, nil)
	if got := r.j.take(); !equal(got, []string{"update in-use"}) {
		t.Fatalf("a listener came: %v", got)
	}
	in := r.kernel.inUse[0].Shape().InUse
	if !slices.Contains(in.AllAnyTCP(), port) {
		t.Errorf("the in-use sets lack TCP port %d: %+v", port, in)
	}
	if r.k.cur != r.kernel.inUse[0] {
		t.Error("the watchdog does not compare with the updated ruleset")
	}
	r.logged(t, "is now in use by a service; no longer watching it")
}

func TestGuardChangeUpdatesTheProtectedSets(t *testing.T) {
	r := newRig(t, nil)
	if !r.k.Ruleset(r.k.cfg.Load()).Strikes() {
		t.Skip("the default configuration has no first strike")
	}
	r.k.guardChanged()
	if got := r.j.take(); len(got) > 0 {
		t.Fatalf("before the first install: %v", got)
	}
	r.install(t)
	p := netip.MustParsePrefix("198.51.100.7/32")
	r.guard.prefixes = []netip.Prefix{p}
	r.k.guardChanged()
	if got := r.j.take(); !equal(got, []string{"update protected"}) {
		t.Fatalf("the guard changed: %v", got)
	}
	if !slices.Contains(r.kernel.protected[0].Shape().Protected, p) {
		t.Errorf("the protected sets lack %v", p)
	}
}
