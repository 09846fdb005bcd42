package fleet

import (
	"net/netip"
	"slices"
	"strings"
	"time"
)

// held is one host's block of an address, as the view's callers see it:
// when it ends (capped at max_timeout when it arrived) and the record's
// time on the servers, in Unix nanoseconds. The details (scan type, ports,
// reason) went to the Sink, whose ledger keeps them.
type held struct {
	host             string
	expires, created int64
}

// view is what this host knows of the fleet, from the watches. Its
// methods are called with Client.mu held.
//
// What it keeps of other hosts' blocks is one record per address
// (addrs.go): each host's revision handled and block held, and the expiry
// passed to the Sink; a million mirrored blocks in ~150 MiB.
type view struct {
	addrTable
	own       map[netip.Addr]ownRecord // this host's block records
	lifts     map[netip.Addr]Lift      // the administrator's latest lift of each address
	hostLifts map[hostAddr]time.Time   // each host's latest lift of its own block of an address
	hosts     map[string][]netip.Addr  // this host's record of its addresses (the only one watched): never trusted
	unlisted  map[string]struct{}      // hosts whose claim fleet.hosts does not cover, logged
	// revs: bucket/key: the revision handled (of records held), but for
	// other hosts' blocks, whose revisions their address's record keeps
	// (rev, handle).
	revs map[string]uint64
	// last: each bucket's highest revision handled, where a watch made
	// after a reconnect resumes (resume: once a generation replayed the
	// buckets' current values).
	last   map[string]uint64
	resume bool
	// expiries: when this host's records and the lifts end (expiry.go);
	// self and maxTimeout: this host's name, and how long a lift may last.
	expiries   expiryHeap
	reindexAt  int // the index's length that makes it anew
	self       string
	maxTimeout time.Duration
	refused    map[netip.Addr]struct{} // refusals logged
	// refusalLog bounds the refusal lines a second.
	refusalLog lineBudget
	unbounded  map[string]struct{} // buckets without limits, logged
	// pendingLifts: hosts' lifts read while replaying the buckets, passed
	// on once the blocks are replayed too (whether a record still holds
	// the address is known only then).
	pendingLifts []Lift
}

// ownRecord is this host's record of an address: its time on the servers
// and when the block ends (Unix ns).
type ownRecord struct {
	created time.Time
	expires int64
}

func newView(self string, maxTimeout time.Duration) view {
	return view{self: self, maxTimeout: maxTimeout, last: map[string]uint64{}, reindexAt: 4096, addrTable: newAddrTable(),
		own: map[netip.Addr]ownRecord{}, lifts: map[netip.Addr]Lift{}, hostLifts: map[hostAddr]time.Time{}, hosts: map[string][]netip.Addr{},
		revs: map[string]uint64{}, refused: map[netip.Addr]struct{}{}, unbounded: map[string]struct{}{}, unlisted: map[string]struct{}{},
	}
}

// refusedOnce reports whether a refusal of a is the first to log.
func (v *view) refusedOnce(a netip.Addr) bool {
	if _, ok := v.refused[a]; ok {
		return false
	}
	if len(v.refused) >= 10000 {
		clear(v.refused)
	}
	v.refused[a] = struct{}{}
	return true
}

// forget drops what the view holds of a (lifted here): the hosts' blocks
// and the expiry passed to the Sink; the revisions handled stay.
func (v *view) forget(a netip.Addr) {
	i, ok := v.index[keyOf(a)]
	if !ok {
		return
	}
	v.recs[i].delivered = 0
	v.release(a, func(held) bool { return true })
}

// hold records host's block of a, replacing the one it had, and returns
// the host's interned name.
func (v *view) hold(a netip.Addr, h held) string {
	i, x := v.recFor(a), v.intern(h.host)
	found := false
	v.update(i, func(e *hostBlock) bool {
		if e.host == x {
			e.expires, e.created, found = h.expires, h.created, true
		}
		return true
	})
	if !found {
		v.add(i, hostBlock{host: x, expires: h.expires, created: h.created})
	}
	v.schedule(i, h.expires)
	return v.names[x]
}

// release drops the blocks of a that drop says (the revisions handled
// stay), and a when nothing is left.
func (v *view) release(a netip.Addr, drop func(held) bool) {
	i, ok := v.index[keyOf(a)]
	if !ok {
		return
	}
	v.update(i, func(e *hostBlock) bool {
		if !e.held() || !drop(held{host: v.names[e.host], expires: e.expires, created: e.created}) {
			return true
		}
		e.expires, e.created = 0, 0
		return e.rev != 0
	})
	v.freeIfEmpty(i)
}

// deliveredAt is the latest Expires of a passed to the Sink (zero: none,
// or it ended).
func (v *view) deliveredAt(a netip.Addr) time.Time {
	if i, ok := v.index[keyOf(a)]; ok && v.recs[i].delivered != 0 {
		return time.Unix(0, v.recs[i].delivered)
	}
	return time.Time{}
}

// setDelivered records t as the latest Expires of a passed to the Sink.
func (v *view) setDelivered(a netip.Addr, t time.Time) {
	i := v.recFor(a)
	v.recs[i].delivered = t.UnixNano()
	v.schedule(i, v.recs[i].delivered)
}

// undeliver forgets the expiry of a passed to the Sink (lifted there).
func (v *view) undeliver(a netip.Addr) {
	if i, ok := v.index[keyOf(a)]; ok {
		v.recs[i].delivered = 0
		v.freeIfEmpty(i)
	}
}

// list returns the blocks in force at now, by address and host (Addr,
// Host, Admin and Expires: the details went to the Sink).
func (v *view) list(now time.Time) []Block {
	var out []Block
	t := now.UnixNano()
	for i := range v.recs {
		v.update(int32(i), func(e *hostBlock) bool {
			if e.expires > t {
				host := v.names[e.host]
				out = append(out, Block{Addr: v.recs[i].a.Addr(), Host: host, Admin: host == AdminName, Expires: time.Unix(0, e.expires)})
			}
			return true
		})
	}
	slices.SortFunc(out, func(x, y Block) int {
		if c := x.Addr.Compare(y.Addr); c != 0 {
			return c
		}
		return strings.Compare(x.Host, y.Host)
	})
	return out
}

// count is how many blocks are in force at now (list's length, without
// the list).
func (v *view) count(now time.Time) int {
	n, t := 0, now.UnixNano()
	for i := range v.recs {
		r := &v.recs[i]
		if r.first.expires > t {
			n++
		}
		if r.more {
			for _, e := range v.more[int32(i)] {
				if e.expires > t {
					n++
				}
			}
		}
	}
	return n
}

// hostAddr is one host's key of an address.
type hostAddr struct {
	host string
	a    netip.Addr
}

// liftedAt reports whether host's record of a, created at created, was
// lifted: by the administrator, or by host itself, at or after created.
func (v *view) liftedAt(host string, a netip.Addr, created time.Time) bool {
	if l, ok := v.lifts[a]; ok && !created.After(l.At) {
		return true
	}
	at, ok := v.hostLifts[hostAddr{host, a}]
	return ok && !created.After(at)
}

// dropLift forgets host's lift of a (expired, deleted).
func (v *view) dropLift(host string, a netip.Addr) {
	if host == AdminName {
		delete(v.lifts, a)
		return
	}
	delete(v.hostLifts, hostAddr{host, a})
}

// holds reports whether a record of the fleet still holds a here at now:
// another host's block in force, or this host's own record.
func (v *view) holds(a netip.Addr, now time.Time) bool {
	if _, ok := v.own[a]; ok {
		return true
	}
	i, ok := v.index[keyOf(a)]
	if !ok {
		return false
	}
	t, in := now.UnixNano(), false
	v.update(i, func(e *hostBlock) bool {
		in = in || e.expires > t
		return true
	})
	return in
}

// blockKey reports whether bucket's key is another host's block, whose
// revision its address's record keeps, and which host and address.
func (v *view) blockKey(bucket, key string) (string, netip.Addr, bool) {
	if bucket != BucketBlocks {
		return "", netip.Addr{}, false
	}
	host, a, err := ParseHostAddrKey(key)
	return host, a, err == nil && host != v.self
}

// rev is the revision handled of bucket's key (0: none).
func (v *view) rev(bucket, key string) uint64 {
	host, a, ok := v.blockKey(bucket, key)
	if !ok {
		return v.revs[bucket+"/"+key]
	}
	if e := v.find(a, host); e != nil {
		return e.rev
	}
	return 0
}

// handle records rev as the revision handled of bucket's key, or its
// deletion (del), and reports false if rev was handled already.
func (v *view) handle(bucket, key string, rev uint64, del bool) bool {
	host, a, ok := v.blockKey(bucket, key)
	if !ok {
		rk := bucket + "/" + key
		if v.revs[rk] == rev {
			return false
		}
		if del {
			delete(v.revs, rk)
		} else {
			v.revs[rk] = rev
		}
		return true
	}
	e := v.find(a, host)
	if e != nil && e.rev == rev {
		return false
	}
	switch {
	case del:
		v.dropRev(bucket, key)
	case e != nil:
		e.rev = rev
	default:
		i := v.recFor(a)
		v.add(i, hostBlock{host: v.intern(host), rev: rev})
	}
	return true
}

// dropRev forgets the revision handled of bucket's key.
func (v *view) dropRev(bucket, key string) {
	host, a, ok := v.blockKey(bucket, key)
	if !ok {
		delete(v.revs, bucket+"/"+key)
		return
	}
	i, ok := v.index[keyOf(a)]
	x, known := v.nameIdx[host]
	if !ok || !known {
		return
	}
	v.update(i, func(e *hostBlock) bool {
		if e.host == x {
			e.rev = 0
			return e.held()
		}
		return true
	})
	v.freeIfEmpty(i)
}

// revKeys returns every bucket/key whose revision handled the view keeps.
func (v *view) revKeys() []string {
	out := make([]string, 0, len(v.revs))
	for k := range v.revs {
		out = append(out, k)
	}
	for i := range v.recs {
		v.update(int32(i), func(e *hostBlock) bool {
			if e.rev != 0 {
				out = append(out, BucketBlocks+"/"+HostAddrKey(v.names[e.host], v.recs[i].a.Addr()))
			}
			return true
		})
	}
	return out
}
