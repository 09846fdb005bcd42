package fleet

import (
	"net/netip"
	"slices"
	"strings"
	"time"
)

// held is one host's block of an address, as the view keeps it: when it
// ends (capped at max_timeout when it arrived) and the record's time on the
// servers, in Unix nanoseconds. The details (scan type, ports, reason) went
// to the Sink, whose ledger keeps them; the view holds 100k blocks in a
// few MiB.
type held struct {
	host             string // interned: one string per fleet host
	expires, created int64
}

func (h held) ends() time.Time { return time.Unix(0, h.expires) }

// view is what this host knows of the fleet, from the watches. Its
// methods are called with Client.mu held.
type view struct {
	// blocks: other hosts' blocks, by address; most addresses have one
	// host, so a short slice, not a map, per address.
	blocks    map[netip.Addr][]held
	names     map[string]string        // host names, interned
	delivered map[netip.Addr]time.Time // the latest Expires passed to the Sink
	own       map[netip.Addr]ownRecord // this host's block records
	lifts     map[netip.Addr]Lift      // the administrator's latest lift of each address
	hostLifts map[hostAddr]time.Time   // each host's latest lift of its own block of an address
	hosts     map[string][]netip.Addr  // this host's record of its addresses (the only one watched): never trusted
	unlisted  map[string]struct{}      // hosts whose claim fleet.hosts does not cover, logged
	revs      map[string]uint64        // bucket/key: the revision handled (of records held)
	// last: each bucket's highest revision handled, where a watch made
	// after a reconnect resumes (resume: once a generation replayed the
	// buckets' current values).
	last   map[string]uint64
	resume bool
	// expiries: when what the view holds ends (expiry.go); self and
	// maxTimeout: this host's name, and how long a lift may last.
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
	return view{self: self, maxTimeout: maxTimeout, last: map[string]uint64{}, reindexAt: 4096,
		blocks: map[netip.Addr][]held{}, names: map[string]string{}, delivered: map[netip.Addr]time.Time{},
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

// forget drops what the view holds of a (lifted here).
func (v *view) forget(a netip.Addr) {
	delete(v.blocks, a)
	delete(v.delivered, a)
}

// intern returns the one copy of a host's name.
func (v *view) intern(host string) string {
	if n, ok := v.names[host]; ok {
		return n
	}
	host = strings.Clone(host) // not the key it was cut from
	if len(v.names) < 65536 {
		v.names[host] = host
	}
	return host
}

// hold records host's block of a, replacing the one it had, and returns
// the host's interned name.
func (v *view) hold(a netip.Addr, h held) string {
	h.host = v.intern(h.host)
	defer v.expireAt(h.ends(), expBlock, a, h.host)
	hs := v.blocks[a]
	for i := range hs {
		if hs[i].host == h.host {
			hs[i] = h
			return h.host
		}
	}
	v.blocks[a] = append(hs, h)
	return h.host
}

// release drops the blocks of a that drop says, and a when none is left.
func (v *view) release(a netip.Addr, drop func(held) bool) {
	hs, ok := v.blocks[a]
	if !ok {
		return
	}
	hs = slices.DeleteFunc(hs, drop)
	if len(hs) == 0 {
		delete(v.blocks, a)
		return
	}
	v.blocks[a] = hs
}

// list returns the blocks in force at now, by address and host (Addr,
// Host, Admin and Expires: the details went to the Sink).
func (v *view) list(now time.Time) []Block {
	var out []Block
	for a, hs := range v.blocks {
		for _, h := range hs {
			if h.expires > now.UnixNano() {
				out = append(out, Block{Addr: a, Host: h.host, Admin: h.host == AdminName, Expires: h.ends()})
			}
		}
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
	for _, hs := range v.blocks {
		for _, h := range hs {
			if h.expires > t {
				n++
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
	t := now.UnixNano()
	for _, h := range v.blocks[a] {
		if h.expires > t {
			return true
		}
	}
	return false
}
