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
	v.handle(BucketBlocks, HostAddrKey("h1", a), 7, false)
	v.setDelivered(a, now.Add(time.Minute))
	v.own[a] = ownRecord{created: now, expires: now.Add(time.Minute).UnixNano()}
	v.expireAt(now.Add(time.Minute), expOwn, a, "")
	v.lifts[a] = Lift{Addr: a, By: AdminName, At: now, Admin: true}
	v.expireAt(now.Add(time.Hour), expLift, a, AdminName)
	v.hostLifts[hostAddr{"h2", b}] = now
	v.expireAt(now.Add(time.Hour), expLift, b, "h2")

	v.sweep(now.Add(59 * time.Second))
	if v.count(now) != 2 || len(v.own) != 1 || v.deliveredAt(a).IsZero() || v.rev(BucketBlocks, HostAddrKey("h1", a)) != 7 {
		t.Fatalf("swept before time: %d blocks, own %v, delivered %v", v.count(now), v.own, v.deliveredAt(a))
	}
	v.sweep(now.Add(time.Minute))
	if _, ok := v.index[keyOf(a)]; ok || len(v.own) != 0 || len(v.revs) != 0 || len(v.revKeys()) != 0 {
		t.Fatalf("after a minute: blocks %v, own %v, delivered %v, revs %v", v.list(now), v.own, v.deliveredAt(a), v.revKeys())
	}
	if v.count(now) != 1 || len(v.lifts) != 1 || len(v.hostLifts) != 1 {
		t.Fatalf("the extended block or the lifts ended early: %v %v %v", v.list(now), v.lifts, v.hostLifts)
	}
	v.sweep(now.Add(time.Hour))
	if len(v.index) != 0 || len(v.lifts) != 0 || len(v.hostLifts) != 0 {
		t.Fatalf("after an hour: %v %v %v", v.list(now), v.lifts, v.hostLifts)
	}

	for i := range 100000 { // one block extended again and again
		v.hold(a, held{host: "h1", expires: now.Add(time.Hour + time.Duration(i)*time.Second).UnixNano()})
	}
	if n := len(v.due); n > 2*len(v.index)+4096 {
		t.Fatalf("%d index entries for %d addresses", n, len(v.index))
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

// An address several hosts block: each host's block and revision is its
// own; a lift keeps the revision handled, a deletion drops it; the
// address goes once nothing holds it, and its record is used again
// without its old index entry ending the new address's blocks early.
func TestViewAddrRecords(t *testing.T) {
	v := newView("me", time.Hour)
	now := time.Unix(1_000_000, 0)
	a, b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("203.0.113.9")
	for i, h := range []string{"h1", "h2", "h3"} {
		if !v.handle(BucketBlocks, HostAddrKey(h, a), uint64(10+i), false) {
			t.Fatalf("%s: revision taken as handled", h)
		}
		v.hold(a, held{host: h, expires: now.Add(time.Duration(i+1) * time.Minute).UnixNano(), created: now.UnixNano()})
	}
	if v.handle(BucketBlocks, HostAddrKey("h2", a), 11, false) || v.rev(BucketBlocks, HostAddrKey("h3", a)) != 12 {
		t.Fatal("a revision handled again, or lost")
	}
	v.handle(BucketBlocks, HostAddrKey("me", a), 20, false) // this host's key: apart
	v.handle(BucketLifts, HostAddrKey("h1", a), 21, false)
	if got := len(v.revKeys()); got != 5 || len(v.revs) != 2 || v.count(now) != 3 {
		t.Fatalf("%d revisions (%d apart), %d blocks", got, len(v.revs), v.count(now))
	}
	v.release(a, func(h held) bool { return h.host == "h1" }) // lifted
	if v.rev(BucketBlocks, HostAddrKey("h1", a)) != 10 || v.count(now) != 2 || !v.holds(a, now) {
		t.Fatalf("after h1's lift: %v", v.list(now))
	}
	v.dropRev(BucketBlocks, HostAddrKey("h1", a))
	v.sweep(now.Add(2 * time.Minute)) // h2's ends
	if l := v.list(now); len(l) != 1 || l[0].Host != "h3" || l[0].Addr != a || v.rev(BucketBlocks, HostAddrKey("h2", a)) != 0 {
		t.Fatalf("after two minutes: %v", l)
	}
	v.dropRev(BucketBlocks, HostAddrKey("h3", a))
	v.forget(a)
	if _, ok := v.index[keyOf(a)]; ok || len(v.revKeys()) != 2 {
		t.Fatalf("a still held: %v %v", v.list(now), v.revKeys())
	}
	// b takes a's record, with a's entry for now+3m still in the index.
	v.hold(b, held{host: "h1", expires: now.Add(time.Hour).UnixNano()})
	v.setDelivered(b, now.Add(time.Hour))
	v.sweep(now.Add(3 * time.Minute))
	if !v.holds(b, now.Add(3*time.Minute)) || v.deliveredAt(b).IsZero() {
		t.Fatal("b ended at a's time")
	}
	v.sweep(now.Add(time.Hour))
	if len(v.index) != 0 || v.holds(b, now) {
		t.Fatal("b outlived its hour")
	}
	for i := range 100000 { // a block shortened again and again: an entry each time
		v.hold(b, held{host: "h1", expires: now.Add(2*time.Hour - time.Duration(i)*time.Millisecond).UnixNano()})
	}
	if n := len(v.due); n > 2*len(v.index)+4096 {
		t.Fatalf("%d index entries for %d addresses", n, len(v.index))
	}
	v.sweep(now.Add(3 * time.Hour))
	if len(v.index) != 0 {
		t.Fatal("b outlived its block")
	}
}
