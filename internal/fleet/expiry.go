package fleet

import (
	"container/heap"
	"net/netip"
	"time"
)

// The view's expiry indexes: what the view holds ends at a known time,
// and the host ends it itself then, without walking everything it holds
// every second, and without waiting for the servers' expiry markers (a
// watch resumed after a reconnect does not see the markers it missed).
//
// Other hosts' blocks and the expiries passed to the Sink have one entry
// per address (addrHeap): at the earliest end its record holds
// (addrRec.next); when it comes up, what ended goes, and the address
// gets its entry at the next end. An extension adds no entry; an entry
// that no longer matches its record's next (an earlier end came, or the
// record was freed) is dropped when it comes up.
//
// This host's records and the lifts have one entry per record they hold
// (expiryHeap); an entry that no longer matches (the record was extended,
// replaced, lifted) is dropped when it comes up.
//
// Entries left behind are bounded: past twice what an index held at its
// last remaking (and 4096), it is made anew from the view.

// expiryKind says which of the view's maps an entry is about.
type expiryKind uint8

const (
	expOwn  expiryKind = iota // own[a]
	expLift                   // lifts[a] (the administrator's), or hostLifts[{host, a}]
)

// expiry is one entry: at (Unix ns) kind's record of a (host's) may end.
type expiry struct {
	at   int64
	a    netip.Addr
	host string
	kind expiryKind
}

type expiryHeap []expiry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// expireAt indexes kind's record of a (host's) to end at t.
func (v *view) expireAt(t time.Time, kind expiryKind, a netip.Addr, host string) {
	heap.Push(&v.expiries, expiry{at: t.UnixNano(), a: a, host: host, kind: kind})
	if len(v.expiries) > v.reindexAt {
		v.reindex()
		v.reindexAt = 2*len(v.expiries) + 4096
	}
}

// reindex makes the index anew from what the view holds.
func (v *view) reindex() {
	x := v.expiries[:0]
	for a, o := range v.own {
		x = append(x, expiry{at: o.expires, a: a, kind: expOwn})
	}
	for a, l := range v.lifts {
		x = append(x, expiry{at: l.At.Add(v.maxTimeout).UnixNano(), a: a, host: AdminName, kind: expLift})
	}
	for k, at := range v.hostLifts {
		x = append(x, expiry{at: at.Add(v.maxTimeout).UnixNano(), a: k.a, host: k.host, kind: expLift})
	}
	v.expiries = x
	heap.Init(&v.expiries)
}

// sweep ends what has expired at now, from the indexes.
func (v *view) sweep(now time.Time) {
	t := now.UnixNano()
	for len(v.expiries) > 0 && v.expiries[0].at <= t {
		e := heap.Pop(&v.expiries).(expiry)
		v.expire(e, t)
	}
	for len(v.due) > 0 && v.due[0].at <= t {
		e := v.due.pop()
		if r := &v.recs[e.i]; r.next == e.at {
			r.next = 0
			v.expireAddr(e.i, t)
		}
	}
}

// expire ends e's record if it still ends at or before t.
func (v *view) expire(e expiry, t int64) {
	switch e.kind {
	case expOwn:
		if o, ok := v.own[e.a]; ok && o.expires <= t {
			delete(v.own, e.a)
			v.dropRev(BucketBlocks, HostAddrKey(v.self, e.a))
		}
	case expLift:
		if e.host == AdminName {
			if l, ok := v.lifts[e.a]; ok && l.At.Add(v.maxTimeout).UnixNano() <= t {
				delete(v.lifts, e.a)
				delete(v.revs, BucketLifts+"/"+HostAddrKey(e.host, e.a))
			}
		} else if at, ok := v.hostLifts[hostAddr{e.host, e.a}]; ok && at.Add(v.maxTimeout).UnixNano() <= t {
			delete(v.hostLifts, hostAddr{e.host, e.a})
			delete(v.revs, BucketLifts+"/"+HostAddrKey(e.host, e.a))
		}
	}
}

// expireAddr ends what record i holds that ended at or before t (a
// host's block, with its revision; the expiry passed to the Sink), and
// indexes what is left at its earliest end.
func (v *view) expireAddr(i int32, t int64) {
	v.update(i, func(e *hostBlock) bool { return !e.held() || e.expires > t })
	r := &v.recs[i]
	if r.delivered != 0 && r.delivered <= t {
		r.delivered = 0
	}
	if v.freeIfEmpty(i) {
		return
	}
	next := r.delivered
	v.update(i, func(e *hostBlock) bool {
		if e.held() && (next == 0 || e.expires < next) {
			next = e.expires
		}
		return true
	})
	if next != 0 {
		v.schedule(i, next)
	}
}

// schedule indexes record i to end at at (Unix ns) unless it has an entry
// as early.
func (v *view) schedule(i int32, at int64) {
	at = max(at, 1) // 0: no entry
	r := &v.recs[i]
	if r.next != 0 && r.next <= at {
		return
	}
	r.next = at
	v.due.push(due{at: at, i: i})
	if len(v.due) > v.dueRemake {
		v.remakeDue()
		v.dueRemake = 2*len(v.due) + 4096
	}
}

// remakeDue makes the addresses' index anew from their records.
func (v *view) remakeDue() {
	x := v.due[:0]
	for i := range v.recs {
		if r := &v.recs[i]; r.next != 0 {
			x = append(x, due{at: r.next, i: int32(i)})
		}
	}
	v.due = x
	v.due.init()
}

// due is an entry of the addresses' index: record i may end at at (Unix
// ns).
type due struct {
	at int64
	i  int32
}

// addrHeap is a min-heap of dues by time (container/heap would box each
// entry it is given).
type addrHeap []due

func (h *addrHeap) push(d due) {
	*h = append(*h, d)
	h.up(len(*h) - 1)
}

func (h *addrHeap) pop() due {
	old := *h
	d, n := old[0], len(old)-1
	old[0] = old[n]
	*h = old[:n]
	h.down(0)
	return d
}

func (h addrHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h addrHeap) up(j int) {
	for j > 0 {
		p := (j - 1) / 2
		if h[p].at <= h[j].at {
			return
		}
		h[p], h[j] = h[j], h[p]
		j = p
	}
}

func (h addrHeap) down(j int) {
	for {
		c := 2*j + 1
		if c >= len(h) {
			return
		}
		if c+1 < len(h) && h[c+1].at < h[c].at {
			c++
		}
		if h[j].at <= h[c].at {
			return
		}
		h[j], h[c] = h[c], h[j]
		j = c
	}
}
