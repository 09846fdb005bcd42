package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
	"github.com/portsentry-nft/portsentry-nft/internal/state/statetest"
)

func manual(a netip.Addr) ledger.Act {
	return ledger.Act{Decision: decide.Decision{Action: decide.Block, Addr: a, Origin: state.OriginManual, Timeout: time.Hour, Times: 1}}
}

// A full disk: what Apply carries out is in force (the kernel, the
// record) and Apply says it is not durable, for blocks and for an
// unblock, logged once. When the space returns the ledger rewrites the
// journal by itself (no other block comes to write it), says so once,
// and a new Store.Open of the directory (a reboot) holds every block in
// force, those Apply warned about included.
func TestFullDiskIsNotAcknowledged(t *testing.T) {
	disk := statetest.NewDisk(t, "", 256<<10)
	l, k, st, log := newLedgerIn(t, disk.Dir, "")
	first := netip.MustParseAddr("10.201.1.1")
	if _, err := l.Apply(context.Background(), manual(first)); err != nil {
		t.Fatal(err)
	}

	disk.Fill()
	var ops []ledger.Op
	for i := range 100 { // more than the page the journal's tail is on
		ops = append(ops, manual(netip.AddrFrom4([4]byte{10, 201, 2, byte(i)})))
	}
	n, err := l.Apply(context.Background(), ops...)
	if n != 100 || !errors.Is(err, ledger.ErrNotDurable) {
		t.Errorf("100 blocks on a full disk: %d applied, error %v; want 100 and ErrNotDurable", n, err)
	}
	if got := len(k.Added()); got != 101 || !st.Has(netip.MustParseAddr("10.201.2.99")) {
		t.Errorf("kernel holds %d elements, want 101, and the records", got)
	}
	late := netip.MustParseAddr("10.201.3.1")
	if _, err := l.Apply(context.Background(), manual(late)); !errors.Is(err, ledger.ErrNotDurable) {
		t.Errorf("a block after the failure: %v, want ErrNotDurable", err)
	}
	if n, err := l.Apply(context.Background(), ledger.Unblock{Addrs: []netip.Addr{first}, Cause: ledger.Unblocked}); n != 1 || !errors.Is(err, ledger.ErrNotDurable) {
		t.Errorf("an unblock on a full disk: %d lifted, error %v", n, err)
	}
	if c := strings.Count(log.String(), "the journal of blocks is not on disk"); c != 1 {
		t.Errorf("logged %d times that the journal is not on disk, want once:\n%s", c, log)
	}

	disk.Free()
	// Nothing else happens: the ledger's tick has the journal rewritten.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(log.String(), "on disk again"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the journal was not rewritten within 5 s of the space returning:\n%s", log)
		}
	}
	want := addrsOf(st.Active(time.Now()))
	if len(want) != 101 || slices.Contains(want, first) {
		t.Fatalf("held %d blocks (the unblocked one: %v), want 101 without it", len(want), slices.Contains(want, first))
	}
	reboot, err := state.Open(state.Paths{Dir: disk.Dir}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer reboot.Close()
	if got := addrsOf(reboot.Active(time.Now())); !slices.Equal(got, want) {
		t.Errorf("after a reboot: %d blocks, want the %d in force (%s)", len(got), len(want), diff(got, want))
	}
	if _, err := l.Apply(context.Background(), manual(netip.MustParseAddr("10.201.3.2"))); err != nil {
		t.Errorf("a block once the journal is on disk again: %v", err)
	}
}

func addrsOf(bs []state.Block) []netip.Addr {
	var out []netip.Addr
	for _, b := range bs {
		out = append(out, b.Addr)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// diff names what got lacks of want, and what it has more.
func diff(got, want []netip.Addr) string {
	var lack, more []netip.Addr
	for _, a := range want {
		if !slices.Contains(got, a) {
			lack = append(lack, a)
		}
	}
	for _, a := range got {
		if !slices.Contains(want, a) {
			more = append(more, a)
		}
	}
	return fmt.Sprintf("lacks %v, has more %v", lack, more)
}
