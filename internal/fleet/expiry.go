package fleet

import (
	"container/heap"
	"net/netip"
	"time"
)

// The view's expiry index: what the view holds ends at a known time, and
// the host ends it itself then, without walking everything it holds
// every second, and without waiting for the servers' expiry markers (a
// watch resumed after a reconnect does not see the markers it missed).
// Each entry names what may end at its time; an entry that no longer
// matches (the block was extended, replaced, lifted) is dropped when it
// comes up. Entries left by extensions are bounded: past twice what the
// view held at the last count (and 4096), the index is made anew from
// the view.

// expiryKind says which of the view's maps an entry is about.
type expiryKind uint8

const (
	expBlock     expiryKind = iota // blocks[a], host's
	expDelivered                   // delivered[a]
	expOwn                         // own[a]
	expLift                        // lifts[a] (the administrator's), or hostLifts[{host, a}]
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

// size is how many records the view holds that the index covers.
func (v *view) size() int {
	n := len(v.delivered) + len(v.own) + len(v.lifts) + len(v.hostLifts)
	for _, hs := range v.blocks {
		n += len(hs)
	}
	return n
}

// reindex makes the index anew from what the view holds.
func (v *view) reindex() {
	x := v.expiries[:0]
	for a, hs := range v.blocks {
		for _, h := range hs {
			x = append(x, expiry{at: h.expires, a: a, host: h.host, kind: expBlock})
		}
	}
	for a, t := range v.delivered {
		x = append(x, expiry{at: t.UnixNano(), a: a, kind: expDelivered})
	}
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

// sweep ends what has expired at now, from the index.
func (v *view) sweep(now time.Time) {
	t := now.UnixNano()
	for len(v.expiries) > 0 && v.expiries[0].at <= t {
		e := heap.Pop(&v.expiries).(expiry)
		v.expire(e, t)
	}
}

// expire ends e's record if it still ends at or before t.
func (v *view) expire(e expiry, t int64) {
	switch e.kind {
	case expBlock:
		gone := false
		v.release(e.a, func(h held) bool {
			ok := h.host == e.host && h.expires <= t
			gone = gone || ok
			return ok
		})
		if gone {
			delete(v.revs, BucketBlocks+"/"+HostAddrKey(e.host, e.a))
		}
	case expDelivered:
		if d, ok := v.delivered[e.a]; ok && d.UnixNano() <= t {
			delete(v.delivered, e.a)
		}
	case expOwn:
		if o, ok := v.own[e.a]; ok && o.expires <= t {
			delete(v.own, e.a)
			delete(v.revs, BucketBlocks+"/"+HostAddrKey(v.self, e.a))
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
