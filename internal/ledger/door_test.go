package ledger_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger/ledgertest"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// doorRig is a running ledger with a recording kernel and followers.
type doorRig struct {
	l         *ledger.Ledger
	k         *ledgertest.Kernel
	st        *state.Store
	early     *ledgertest.Follower // in Followers
	announced *ledgertest.Follower // in Announcers
}

func newDoorRig(t *testing.T, k *ledgertest.Kernel, announced *ledgertest.Follower) *doorRig {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte(""))
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(state.Paths{Dir: t.TempDir()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &doorRig{k: k, st: st, early: &ledgertest.Follower{}, announced: announced}
	r.l = ledger.New(ledger.Config{Store: st, Kernel: k, Log: alert.New(slog.New(slog.NewTextHandler(&netnstest.Output{}, nil)), nil),
		Settings: cfg, Followers: []ledger.Follower{r.early}, Announcers: []ledger.Follower{announced}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.l.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func addrN(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 201, byte(1 + i/250), byte(1 + i%250)})
}

// fleetBatch is n blocks of origin fleet, as the fleet's intake applies them.
func fleetBatch(n int) []ledger.Op {
	ops := make([]ledger.Op, n)
	for i := range ops {
		ops[i] = ledger.Act{Decision: decide.Decision{Action: decide.Block, Addr: addrN(i), Origin: state.OriginFleet, Timeout: time.Hour, Times: 1}}
	}
	return ops
}

// detected posts a detected block of a, as the capture goroutine does.
func (r *doorRig) detected(t *testing.T, a netip.Addr) {
	t.Helper()
	d := decide.Decision{Action: decide.Block, Addr: a, Origin: state.OriginDetect, Timeout: time.Hour, Times: 1}
	if !r.l.Post(ledger.Act{Decision: d}) {
		t.Fatal("the ledger refused a detected block")
	}
}

func (r *doorRig) inKernel(a netip.Addr) bool {
	for _, b := range r.k.Added() {
		if b.Addr == a {
			return true
		}
	}
	return false
}

// A batch whose transaction takes its time (a 4096-block fleet batch, an
// administrator's 10k) holds up no detected block: its commit runs on the
// caller's goroutine, not the ledger's. Before the one door, Mirror and
// Block committed on the ledger's goroutine, and the detected element
// waited for the whole transaction.
func TestBatchCommitHoldsUpNoDetectedBlock(t *testing.T) {
	gate := make(chan struct{})
	r := newDoorRig(t, &ledgertest.Kernel{CommitGate: gate}, &ledgertest.Follower{})
	applied := make(chan error, 1)
	go func() { _, err := r.l.Apply(context.Background(), fleetBatch(4096)...); applied <- err }()
	time.Sleep(20 * time.Millisecond) // the batch is in its transaction
	scanner := netip.MustParseAddr("10.201.99.1")
	r.detected(t, scanner)
	waitFor(t, "the detected block's element did not go in while the batch's transaction was open", func() bool { return r.inKernel(scanner) })
	waitFor(t, "the detected block was not recorded while the batch's transaction was open", func() bool { return r.st.Has(scanner) })
	if r.st.Has(addrN(0)) {
		t.Error("the batch was recorded before its transaction ended")
	}
	close(gate)
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	if !r.st.Has(addrN(4095)) || len(r.announced.Blocks()) != 4097 {
		t.Errorf("after the batch: last held %v, %d announced, want true and 4097", r.st.Has(addrN(4095)), len(r.announced.Blocks()))
	}
}

// A batch whose records wait for the disk (the journal's fsync, and the
// announcers after it) holds up no detected block either: the fsync runs
// on the announcing goroutine, and Apply answers only once it is done.
func TestBatchSyncHoldsUpNoDetectedBlock(t *testing.T) {
	gate := make(chan struct{})
	r := newDoorRig(t, &ledgertest.Kernel{}, &ledgertest.Follower{Gate: gate})
	applied := make(chan error, 1)
	go func() { _, err := r.l.Apply(context.Background(), fleetBatch(1000)...); applied <- err }()
	waitFor(t, "the batch was not recorded", func() bool { return r.st.Has(addrN(999)) })
	scanner := netip.MustParseAddr("10.201.99.1")
	r.detected(t, scanner)
	waitFor(t, "the detected block's element did not go in while the batch waited for the disk", func() bool { return r.inKernel(scanner) })
	waitFor(t, "the detected block was not recorded while the batch waited for the disk", func() bool { return r.st.Has(scanner) })
	select {
	case err := <-applied:
		t.Fatalf("Apply answered (%v) before its blocks were announced", err)
	default:
	}
	close(gate)
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
}

// Every origin enters by the same door and reaches the same followers, in
// their places: Followers before the journal, Announcers after it; lifts
// reach both with their cause.
func TestEveryOriginReachesEveryFollower(t *testing.T) {
	r := newDoorRig(t, &ledgertest.Kernel{}, &ledgertest.Follower{})
	ctx := context.Background()
	origins := []state.Origin{state.OriginManual, state.OriginFleet, state.OriginKernel}
	for i, o := range origins {
		d := decide.Decision{Action: decide.Block, Addr: addrN(i), Origin: o, Timeout: time.Hour, Times: 1}
		if n, err := r.l.Apply(ctx, ledger.Act{Decision: d}); err != nil || n != 1 {
			t.Fatalf("%s: %d, %v", o, n, err)
		}
	}
	r.detected(t, addrN(3))
	waitFor(t, "the detected block was not announced", func() bool { return len(r.announced.Blocks()) == 4 })
	if got := len(r.early.Blocks()); got != 4 {
		t.Errorf("%d blocks told to Followers, want 4", got)
	}
	if _, err := r.l.Apply(ctx, ledger.Unblock{Addrs: []netip.Addr{addrN(0)}, Cause: ledger.Unblocked}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*ledgertest.Follower{r.early, r.announced} {
		if ls := f.Lifts(); len(ls) != 1 || ls[0].Addr != addrN(0) || ls[0].Cause != ledger.Unblocked || !ls[0].Held {
			t.Errorf("lifts told: %+v", ls)
		}
	}
}

// A full set that refuses a block's element (the kernel's own strikes took
// the places the decision counted on) gives up its oldest weak block, and
// the element goes in again, once; a weak block is not worth another.
func TestFullSetMakesRoomForAStrongBlock(t *testing.T) {
	full := true
	k := &ledgertest.Kernel{}
	r := newDoorRig(t, k, &ledgertest.Follower{})
	weak := netip.MustParseAddr("10.201.7.1")
	wd := decide.Decision{Action: decide.Block, Addr: weak, Origin: state.OriginDetect, Timeout: time.Hour, Times: 1, Weak: true}
	if !r.l.Post(ledger.Act{Decision: wd}) {
		t.Fatal("refused")
	}
	waitFor(t, "the weak block", func() bool { return r.st.Has(weak) })
	scanner, other := netip.MustParseAddr("10.201.7.2"), netip.MustParseAddr("10.201.7.3")
	k.Refuse = func(b nft.Block) error {
		if full && b.Addr != weak {
			full = false // the first refusal; the eviction makes room
			return fmt.Errorf("commit: %w", nft.ErrSetFull)
		}
		return nil
	}
	r.detected(t, scanner)
	waitFor(t, "the scanner's block after the room was made", func() bool { return r.st.Has(scanner) })
	if r.st.Has(weak) || r.l.Stats.Evicted.Load() != 1 || r.l.Stats.BlockFailures.Load() != 0 {
		t.Errorf("weak held %v, %d evicted, %d failures; want gone, 1, 0", r.st.Has(weak), r.l.Stats.Evicted.Load(), r.l.Stats.BlockFailures.Load())
	}
	full = true
	k.Refuse = func(b nft.Block) error { return fmt.Errorf("commit: %w", nft.ErrSetFull) }
	od := decide.Decision{Action: decide.Block, Addr: other, Origin: state.OriginDetect, Timeout: time.Hour, Times: 1, Weak: true}
	r.l.Post(ledger.Act{Decision: od})
	waitFor(t, "the weak block's failure", func() bool { return r.l.Stats.BlockFailures.Load() == 1 })
	if r.st.Has(other) {
		t.Error("a weak block whose element the full set refused is recorded")
	}
}
