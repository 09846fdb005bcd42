package fleet

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func sightingOp(i int, now time.Time) *op {
	a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
	return &op{kind: opSighting, subject: Subject(BucketSightings, SightingKey(a, "h1")), addr: a, expires: now.Add(time.Hour)}
}

func blockOp(i int, now time.Time) *op {
	a := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
	return &op{kind: opBlock, subject: Subject(BucketBlocks, HostAddrKey("h1", a)), addr: a, expires: now.Add(time.Hour)}
}

// Blocks go before any sighting, sightings at most sightingRate a second.
func TestOutboxSightingsAfterBlocksAndPaced(t *testing.T) {
	now := time.Now()
	b := newOutbox(65536)
	for i := range 1000 {
		b.put(sightingOp(i, now))
	}
	for i := range 5 {
		b.put(blockOp(i, now))
	}
	ops, wait := b.take(batchSize, now)
	if len(ops) != 5+sightingRate {
		t.Fatalf("took %d, want the 5 blocks and %d sightings", len(ops), sightingRate)
	}
	for i, o := range ops[:5] {
		if o.kind != opBlock {
			t.Fatalf("op %d is %v, want the blocks first", i, o.kind)
		}
	}
	if wait <= 0 || wait > 10*time.Millisecond {
		t.Fatalf("wait %s with sightings held back", wait)
	}
	if ops, _ := b.take(batchSize, now); len(ops) != 0 {
		t.Fatalf("took %d more at once", len(ops))
	}
	// A block queued later still goes first; 100 ms allow 20 sightings.
	b.put(blockOp(9, now))
	ops, _ = b.take(batchSize, now.Add(100*time.Millisecond))
	if len(ops) != 1+sightingRate/10 || ops[0].kind != opBlock {
		t.Fatalf("took %d (first %v), want the block and %d sightings", len(ops), ops[0].kind, sightingRate/10)
	}
	if n, dropped, _ := b.depth(); n != 1000-sightingRate-sightingRate/10 || dropped != 0 {
		t.Fatalf("depth %d, dropped %d", n, dropped)
	}
}

// A flood of sightings fills its own lane only: blocks still queue, and the
// lane keeps a sample of the whole flood, not its beginning.
func TestOutboxSightingLaneFull(t *testing.T) {
	now := time.Now()
	b := newOutbox(800) // 100 sightings
	for i := range 10000 {
		if !b.put(sightingOp(i, now)) {
			t.Fatalf("sighting %d refused", i)
		}
	}
	for i := range 200 {
		if !b.put(blockOp(i, now)) {
			t.Fatalf("block %d refused with the sighting lane full", i)
		}
	}
	n, dropped, _ := b.depth()
	if n != 300 || dropped != 9900 {
		t.Fatalf("depth %d dropped %d, want 300 and 9900", n, dropped)
	}
	late := 0
	for _, subj := range b.sorder {
		if o, ok := b.ops[subj]; ok && o.kind == opSighting {
			var i int
			if _, err := fmt.Sscanf(o.addr.String(), "198.18.%d.", &i); err == nil && i >= 20 { // the last ~75%
				late++
			}
		}
	}
	if late < 50 {
		t.Fatalf("%d of the 100 sightings kept came from the flood's last three quarters", late)
	}
	// Taking everything empties both lanes and the count.
	for {
		ops, wait := b.take(batchSize, now)
		if len(ops) == 0 && wait == 0 {
			break
		}
		now = now.Add(time.Second)
	}
	if n, _, _ := b.depth(); n != 0 || b.nsight != 0 {
		t.Fatalf("depth %d, sightings %d after taking all", n, b.nsight)
	}
}
