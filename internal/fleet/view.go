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

// mirror is what the view holds of one address: the hosts' blocks (most
// addresses have one host, so a short slice, not a map) and the latest
// Expires passed to the Sink (Unix nanoseconds, 0 for none), which
// outlives the blocks until it expires or is lifted.
type mirror struct {
	hs        []held
	delivered int64
}

// set stores m as a's record, or drops it when it holds nothing.
func (v *view) set(a netip.Addr, m mirror) {
	if len(m.hs) == 0 && m.delivered == 0 {
		delete(v.mirrors, a)
		return
	}
	v.mirrors[a] = m
}

// view is what this host knows of the fleet, from the watches. Its
// methods are called with Client.mu held.
type view struct {
	// mirrors: other hosts' blocks of each address, and what was passed
	// to the Sink of it: one record per address (a host may mirror 1M).
	mirrors   map[netip.Addr]mirror
	names     map[string]string        // host names, interned
	own       map[netip.Addr]time.Time // this host's block records: their time on the servers
	lifts     map[netip.Addr]Lift      // the administrator's latest lift of each address
	hostLifts map[hostAddr]time.Time   // each host's latest lift of its own block of an address
	hosts     map[string][]netip.Addr  // each host's claim of its addresses: shown, never trusted
	unlisted  map[string]struct{}      // hosts whose claim fleet.hosts does not cover, logged
	revs      map[string]uint64        // bucket/key: the revision handled
	refused   map[netip.Addr]struct{}  // refusals logged
	// refusalLog bounds the refusal lines a second.
	refusalLog lineBudget
	// confirming: each host's correlated records waiting for their count.
	confirming map[string]int
	unbounded  map[string]struct{} // buckets without limits, logged
	// pendingLifts: hosts' lifts read while replaying the buckets, passed
	// on once the blocks are replayed too (whether a record still holds
	// the address is known only then).
	pendingLifts []Lift
}

func newView() view {
	return view{
		mirrors: map[netip.Addr]mirror{}, names: map[string]string{},
		own: map[netip.Addr]time.Time{}, lifts: map[netip.Addr]Lift{}, hostLifts: map[hostAddr]time.Time{}, hosts: map[string][]netip.Addr{},
		revs: map[string]uint64{}, refused: map[netip.Addr]struct{}{}, confirming: map[string]int{}, unbounded: map[string]struct{}{}, unlisted: map[string]struct{}{},
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

// noteRev records that bucket's key was handled at rev, and reports
// whether it was not already.
func (v *view) noteRev(bucket, key string, rev uint64) bool {
	rk := bucket + "/" + key
	if v.revs[rk] == rev {
		return false
	}
	v.revs[rk] = rev
	return true
}

// deliver records exp as a's expiry passed to the Sink, and reports
// whether it extends the one passed before by a second or more (else it
// is not passed again).
func (v *view) deliver(a netip.Addr, exp time.Time) bool {
	m := v.mirrors[a]
	if m.delivered != 0 && exp.Sub(time.Unix(0, m.delivered)) < time.Second {
		return false
	}
	m.delivered = exp.UnixNano()
	v.set(a, m)
	return true
}

// delivered is the latest Expires of a passed to the Sink (zero: none
// since it was lifted or expired).
func (v *view) delivered(a netip.Addr) time.Time {
	if d := v.mirrors[a].delivered; d != 0 {
		return time.Unix(0, d)
	}
	return time.Time{}
}

// undeliver forgets what was passed to the Sink of a (lifted).
func (v *view) undeliver(a netip.Addr) {
	if m, ok := v.mirrors[a]; ok {
		m.delivered = 0
		v.set(a, m)
	}
}

// forget drops what the view holds of a (lifted here).
func (v *view) forget(a netip.Addr) {
	delete(v.mirrors, a)
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
	m := v.mirrors[a]
	for i := range m.hs {
		if m.hs[i].host == h.host {
			m.hs[i] = h
			return h.host
		}
	}
	m.hs = append(m.hs, h)
	v.mirrors[a] = m
	return h.host
}

// release drops the blocks of a that drop says, and a when none is left.
func (v *view) release(a netip.Addr, drop func(held) bool) {
	m, ok := v.mirrors[a]
	if !ok {
		return
	}
	if m.hs = slices.DeleteFunc(m.hs, drop); len(m.hs) == 0 {
		m.hs = nil
	}
	v.set(a, m)
}

// list returns the blocks in force at now, by address and host (Addr,
// Host, Admin and Expires: the details went to the Sink).
func (v *view) list(now time.Time) []Block {
	var out []Block
	for a, m := range v.mirrors {
		for _, h := range m.hs {
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
	for _, m := range v.mirrors {
		for _, h := range m.hs {
			if h.expires > t {
				n++
			}
		}
	}
	return n
}

// sweep drops what has expired.
func (v *view) sweep(now time.Time) {
	t := now.UnixNano()
	for a, m := range v.mirrors {
		if m.hs = slices.DeleteFunc(m.hs, func(h held) bool { return h.expires <= t }); len(m.hs) == 0 {
			m.hs = nil
		}
		if m.delivered <= t {
			m.delivered = 0
		}
		v.set(a, m)
	}
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
	for _, h := range v.mirrors[a].hs {
		if h.expires > t {
			return true
		}
	}
	return false
}
