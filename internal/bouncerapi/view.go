package bouncerapi

import (
	"net/netip"
	"time"
)

// dec is one decision as the view holds it: immutable once made, so a
// response can render it after the lock is let go.
type dec struct {
	id       uint64
	addr     netip.Addr
	expires  time.Time
	scenario string
	// remote: the block may go to a bouncer off this host
	// (decide.Reach.Beyond).
	remote bool
}

// seen reports whether a bouncer (remote: off this host) gets d; a nil d
// (no block) is seen by none.
func (d *dec) seen(remote bool) bool { return d != nil && (!remote || d.remote) }

// change is one entry of the change log: a decision added (it replaces
// the address's previous one, if any) or lifted.
type change struct {
	d    *dec
	lift bool
	// was: whether a local [0] and a remote [1] bouncer saw the address
	// blocked just before this change.
	was [2]bool
}

// view is the blocks in force as the bouncers see them, and a log of the
// last changes to them, bounded both: at most max blocks (a block beyond
// is not served: dropped counts it), and the last len(log) changes.
// Not safe for concurrent use (Server holds its lock).
type view struct {
	max    int
	blocks map[netip.Addr]*dec
	// log is a ring: the change numbered s (1, 2, ...) is at
	// log[s%len(log)]; head is the last one's number, kept how many of
	// them are still there.
	log        []change
	head, kept uint64
	nextID     uint64
	dropped    uint64
}

func newView(limit, logSize int) *view {
	return &view{max: limit, blocks: map[netip.Addr]*dec{}, log: make([]change, max(1, logSize))}
}

func (v *view) record(c change) {
	v.head++
	v.log[v.head%uint64(len(v.log))] = c
	v.kept = min(v.kept+1, uint64(len(v.log)))
}

// add makes d the address's decision (a new block, or a block again with
// a new expiry).
func (v *view) add(d *dec) {
	prev := v.blocks[d.addr]
	if prev == nil && len(v.blocks) >= v.max {
		v.dropped++
		return
	}
	v.nextID++
	d.id = v.nextID
	v.blocks[d.addr] = d
	v.record(change{d: d, was: [2]bool{prev.seen(false), prev.seen(true)}})
}

// lift removes the address's decision.
func (v *view) lift(a netip.Addr) {
	prev := v.blocks[a]
	if prev == nil {
		return
	}
	delete(v.blocks, a)
	v.record(change{d: prev, lift: true, was: [2]bool{prev.seen(false), prev.seen(true)}})
}

// live reports whether d is still in force at now for a bouncer: with at
// least a second left (the expiry lift follows within a second).
func live(d *dec, now time.Time) bool { return d.expires.Sub(now) >= time.Second }

// all is every decision a bouncer (remote or not) gets now.
func (v *view) all(remote bool, now time.Time) []*dec {
	var out []*dec
	for _, d := range v.blocks {
		if d.seen(remote) && live(d, now) {
			out = append(out, d)
		}
	}
	return out
}

// since is what changed for a bouncer since change number seq: the
// decisions it gets now among the addresses that changed (added), and
// those it saw blocked and no longer gets (lifted, with the decision it
// had). lost: changes after seq are no longer in the log, so added is
// every decision it gets, and lifted every address of the log it no
// longer gets (whether it saw it or not: a bouncer deletes only what it
// holds).
func (v *view) since(seq uint64, remote bool, now time.Time) (added, lifted []*dec, lost bool) {
	first := v.head - v.kept + 1 // the oldest change still in the log
	lost = seq+1 < first
	if lost {
		seq = first - 1
		added = v.all(remote, now)
	}
	r := 0
	if remote {
		r = 1
	}
	type touched struct {
		was  bool
		last *dec
	}
	seen := map[netip.Addr]*touched{}
	var order []netip.Addr
	for s := seq + 1; s <= v.head; s++ {
		c := v.log[s%uint64(len(v.log))]
		t := seen[c.d.addr]
		if t == nil {
			t = &touched{was: c.was[r] || lost}
			seen[c.d.addr] = t
			order = append(order, c.d.addr)
		}
		t.last = c.d
	}
	for _, a := range order {
		t, cur := seen[a], v.blocks[a]
		switch {
		case cur.seen(remote) && live(cur, now):
			if !lost {
				added = append(added, cur)
			}
		case t.was:
			lifted = append(lifted, t.last)
		}
	}
	return added, lifted, lost
}
