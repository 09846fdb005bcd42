package fleet

import (
	"net/netip"
	"testing"
	"time"
)

// The view ends what it holds at its own time, with no marker from the
// servers: blocks, deliveries, this host's records and lifts; an extended
// block stays; the index stays bounded under extensions.
func TestViewExpiry(t *testing.T) {
	v := newView("me", time.Hour)
	now := time.Unix(1_000_000, 0)
	a, b := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("203.0.113.2")
	v.hold(a, held{host: "h1", expires: now.Add(time.Minute).UnixNano()})
	v.hold(b, held{host: "h1", expires: now.Add(time.Minute).UnixNano()})
	v.hold(b, held{host: "h1", expires: now.Add(time.Hour).UnixNano()}) // extended
	v.revs[BucketBlocks+"/"+HostAddrKey("h1", a)] = 7
	v.delivered[a] = now.Add(time.Minute)
	v.expireAt(now.Add(time.Minute), expDelivered, a, "")
	v.own[a] = ownRecord{created: now, expires: now.Add(time.Minute).UnixNano()}
	v.expireAt(now.Add(time.Minute), expOwn, a, "")
	v.lifts[a] = Lift{Addr: a, By: AdminName, At: now, Admin: true}
	v.expireAt(now.Add(time.Hour), expLift, a, AdminName)
	v.hostLifts[hostAddr{"h2", b}] = now
	v.expireAt(now.Add(time.Hour), expLift, b, "h2")

	v.sweep(now.Add(59 * time.Second))
	if v.count(now) != 2 || len(v.own) != 1 || len(v.delivered) != 1 {
		t.Fatalf("swept before time: %d blocks, own %v, delivered %v", v.count(now), v.own, v.delivered)
	}
	v.sweep(now.Add(time.Minute))
	if _, ok := v.blocks[a]; ok || len(v.own) != 0 || len(v.delivered) != 0 || len(v.revs) != 0 {
		t.Fatalf("after a minute: blocks %v, own %v, delivered %v, revs %v", v.blocks, v.own, v.delivered, v.revs)
	}
	if len(v.blocks[b]) != 1 || len(v.lifts) != 1 || len(v.hostLifts) != 1 {
		t.Fatalf("the extended block or the lifts ended early: %v %v %v", v.blocks, v.lifts, v.hostLifts)
	}
	v.sweep(now.Add(time.Hour))
	if len(v.blocks) != 0 || len(v.lifts) != 0 || len(v.hostLifts) != 0 {
		t.Fatalf("after an hour: %v %v %v", v.blocks, v.lifts, v.hostLifts)
	}

	for i := range 100000 { // one block extended again and again
		v.hold(a, held{host: "h1", expires: now.Add(time.Hour + time.Duration(i)*time.Second).UnixNano()})
	}
	if n := len(v.expiries); n > 2*v.size()+4096 {
		t.Fatalf("%d index entries for %d records", n, v.size())
	}
}

// The own-write check: a watch that owes a record this host stored and
// delivers nothing for ownWriteGrace stalled; one that makes progress, or
// delivers the record, did not; before its first delivery nothing is owed.
func TestOwnWritesStall(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var o ownWrites
	o.stored(wrote{stall: 1, seq: 50}, [2]uint64{0, 0}, t0)
	if o.stalled([2]uint64{}, t0.Add(10*time.Second)) {
		t.Fatal("owed before the watch delivered anything")
	}
	o.stored(wrote{stall: 1, seq: 50}, [2]uint64{0, 40}, t0)
	if o.stalled([2]uint64{0, 40}, t0.Add(time.Second)) {
		t.Fatal("stalled within the grace")
	}
	if o.stalled([2]uint64{0, 45}, t0.Add(3*time.Second)) {
		t.Fatal("stalled while delivering")
	}
	if !o.stalled([2]uint64{0, 45}, t0.Add(6*time.Second)) {
		t.Fatal("no stall after the grace without progress")
	}
	var p ownWrites
	p.stored(wrote{stall: 0, seq: 7}, [2]uint64{5, 0}, t0)
	if p.stalled([2]uint64{7, 0}, t0.Add(time.Minute)) || p.owed[0] != 0 {
		t.Fatal("a delivered record still owed")
	}
}
