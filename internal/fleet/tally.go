package fleet

import (
	"net/netip"
	"slices"
	"strings"
)

// The tally is a counting host's count of the sightings (correlate.go):
// the hosts that saw each address within the window, from its watch of
// the sightings bucket, with no request to the servers. Each pair
// (address, host) ends at its sighting's creation on the servers plus
// fleet.correlate.window, or when the watch delivers its deletion.
//
// It is bounded whatever the hosts write: tallyPairs pairs at most, and
// tallyShare of them per host. A host past its share loses its own oldest
// pair; a full tally loses the oldest pair of the host that holds the
// most. A host flooding the bucket with forged sightings (it can write
// only its own: the servers' permissions) thus pushes out its own, and the
// honest hosts' sightings of a real scanner still count.
var (
	tallyPairs = 1 << 16
	tallyShare = tallyPairs / 4
)

// sight is one host's sighting of an address in the tally: until exp
// (Unix ns).
type sight struct {
	host string // interned: the hostQueue's key
	exp  int64
}

// sightRef is a host's pair in arrival order; one whose address no longer
// holds the host's sighting with the same exp is stale, and skipped.
type sightRef struct {
	a   netip.Addr
	exp int64
}

// hostQueue is one host's pairs in arrival order: the sightings bucket's
// order, so also the order they end in (each lasts the window from its
// creation), oldest first from head.
type hostQueue struct {
	name string
	q    []sightRef
	head int
	live int // pairs of this host in the tally
}

type tally struct {
	addrs   map[netip.Addr][]sight
	hosts   map[string]*hostQueue
	n       int    // pairs
	dropped uint64 // pairs dropped to keep within the bounds
	pairs   int    // bounds: tallyPairs, tallyShare (tests make them small)
	share   int
}

func newTally() tally {
	return tally{addrs: map[netip.Addr][]sight{}, hosts: map[string]*hostQueue{}, pairs: tallyPairs, share: tallyShare}
}

// reset forgets everything: the watch replays the bucket in full.
func (t *tally) reset() {
	clear(t.addrs)
	clear(t.hosts)
	t.n = 0
}

// add holds host's sighting of a until exp and returns how many distinct
// hosts saw a.
func (t *tally) add(a netip.Addr, host string, exp int64) int {
	hq := t.hosts[host]
	ss := t.addrs[a]
	if i := slices.IndexFunc(ss, func(s sight) bool { return s.host == host }); i >= 0 {
		ss[i].exp = exp // the same host again: later, its old ref goes stale
		hq.push(sightRef{a, exp})
		return len(ss)
	}
	if hq == nil {
		hq = &hostQueue{name: strings.Clone(host)}
		t.hosts[hq.name] = hq
	}
	if hq.live >= t.share {
		t.dropOldest(hq)
	} else if t.n >= t.pairs {
		t.dropOldest(t.largest())
	}
	ss = append(t.addrs[a], sight{host: hq.name, exp: exp})
	t.addrs[a] = ss
	hq.push(sightRef{a, exp})
	hq.live++
	t.n++
	return len(ss)
}

// remove forgets host's sighting of a (deleted, expired on the servers).
func (t *tally) remove(a netip.Addr, host string) {
	ss := t.addrs[a]
	i := slices.IndexFunc(ss, func(s sight) bool { return s.host == host })
	if i < 0 {
		return
	}
	t.unlink(a, ss, i)
}

// unlink drops ss[i], a's i-th pair.
func (t *tally) unlink(a netip.Addr, ss []sight, i int) {
	hq := t.hosts[ss[i].host]
	ss = slices.Delete(ss, i, i+1)
	if len(ss) == 0 {
		delete(t.addrs, a)
	} else {
		t.addrs[a] = ss
	}
	t.n--
	if hq != nil {
		hq.live--
		if hq.live == 0 {
			delete(t.hosts, hq.name)
		}
	}
}

// live reports whether r is host's current pair; i is its place in a's.
func (t *tally) live(host string, r sightRef) (int, bool) {
	ss := t.addrs[r.a]
	i := slices.IndexFunc(ss, func(s sight) bool { return s.host == host && s.exp == r.exp })
	return i, i >= 0
}

// dropOldest drops hq's oldest pair.
func (t *tally) dropOldest(hq *hostQueue) {
	for hq.head < len(hq.q) {
		r := hq.pop()
		if i, ok := t.live(hq.name, r); ok {
			t.unlink(r.a, t.addrs[r.a], i)
			t.dropped++
			return
		}
	}
}

// largest is the host that holds the most pairs.
func (t *tally) largest() *hostQueue {
	var m *hostQueue
	for _, hq := range t.hosts {
		if m == nil || hq.live > m.live {
			m = hq
		}
	}
	return m
}

// expire drops the pairs that end at or before now (Unix ns).
func (t *tally) expire(now int64) {
	for _, hq := range t.hosts {
		for hq.head < len(hq.q) && hq.q[hq.head].exp <= now {
			r := hq.pop()
			if i, ok := t.live(hq.name, r); ok {
				t.unlink(r.a, t.addrs[r.a], i)
			}
		}
	}
}

// hostsOf returns the hosts whose sighting of a is in force at now, sorted.
func (t *tally) hostsOf(a netip.Addr, now int64) []string {
	var out []string
	for _, s := range t.addrs[a] {
		if s.exp > now {
			out = append(out, s.host)
		}
	}
	slices.Sort(out)
	return out
}

// push appends r, and makes the queue anew without its stale refs when
// they outnumber the live ones (a host writing one key again and again).
func (hq *hostQueue) push(r sightRef) {
	hq.q = append(hq.q, r)
	if n := len(hq.q) - hq.head; n > 2*hq.live+64 {
		hq.compact()
	}
}

func (hq *hostQueue) pop() sightRef {
	r := hq.q[hq.head]
	hq.head++
	if hq.head == len(hq.q) {
		hq.q, hq.head = hq.q[:0], 0
	}
	return r
}

// compact keeps the last ref of each address (the only one that can be
// live: a later write of a key replaces its pair), in order.
func (hq *hostQueue) compact() {
	last := make(map[netip.Addr]int, hq.live)
	for i := hq.head; i < len(hq.q); i++ {
		last[hq.q[i].a] = i
	}
	out := make([]sightRef, 0, len(last))
	for i := hq.head; i < len(hq.q); i++ {
		if last[hq.q[i].a] == i {
			out = append(out, hq.q[i])
		}
	}
	hq.q, hq.head = out, 0
}
