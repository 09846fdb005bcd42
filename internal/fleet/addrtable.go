package fleet

import (
	"net/netip"
	"strings"

	"github.com/portsentry-nft/portsentry-nft/internal/addrkey"
)

// The view's record of each address other hosts block (or this host
// passed to the Sink): one record per address in a dense slice without
// pointers, found by a map of 17-byte addresses, which the collector
// does not scan. Hosts are indexes into a table of their names. The
// first host's record of an address is inline; the others' (an address
// several hosts block) in a side map. A host's record holds the revision
// handled of its key in the blocks bucket and, if held, its block.

// hostIdx is a host's index in addrTable.names (0: none).
type hostIdx uint32

// hostBlock is one host's record of an address: the revision handled of
// its key (0: none), and its block held here: when it ends and the
// record's time on the servers (Unix ns; expires 0: none held, refused,
// lifted or waiting for its count).
type hostBlock struct {
	rev              uint64
	expires, created int64
	host             hostIdx
}

func (e *hostBlock) held() bool { return e.expires != 0 }

// addrRec is what the view keeps of one address: the first host's record
// (host 0: none; then there is no other), whether addrTable.more has
// others, the latest Expires passed to the Sink (Unix ns; 0: none), and
// the time of the address's entry in the expiry index (0: none).
type addrRec struct {
	first     hostBlock
	delivered int64
	next      int64
	a         addrKey
	more      bool
}

type addrKey = addrkey.Key

func keyOf(a netip.Addr) addrKey { return addrkey.Of(a) }

// addrTable holds the records, by address.
type addrTable struct {
	recs    []addrRec
	index   map[addrKey]int32
	free    []int32               // indexes of recs not in use
	more    map[int32][]hostBlock // the hosts' records past the first
	names   []string              // host names, by hostIdx
	nameIdx map[string]hostIdx
	// due: when each record's next block or delivery ends (expiry.go).
	due       addrHeap
	dueRemake int // due's length that makes it anew
}

func newAddrTable() addrTable {
	return addrTable{index: map[addrKey]int32{}, more: map[int32][]hostBlock{}, names: []string{""},
		nameIdx: map[string]hostIdx{}, dueRemake: 4096}
}

// intern returns host's index, adding it to the table.
func (t *addrTable) intern(host string) hostIdx {
	if x, ok := t.nameIdx[host]; ok {
		return x
	}
	host = strings.Clone(host) // not the key it was cut from
	x := hostIdx(len(t.names))
	t.names = append(t.names, host)
	t.nameIdx[host] = x
	return x
}

// recFor returns the index of a's record, made if a has none.
func (t *addrTable) recFor(a netip.Addr) int32 {
	k := keyOf(a)
	if i, ok := t.index[k]; ok {
		return i
	}
	var i int32
	if n := len(t.free); n > 0 {
		i, t.free = t.free[n-1], t.free[:n-1]
	} else {
		i = int32(len(t.recs))
		t.recs = append(t.recs, addrRec{})
	}
	t.recs[i] = addrRec{a: k}
	t.index[k] = i
	return i
}

// freeIfEmpty frees record i if it holds nothing any longer, and reports
// whether it did.
func (t *addrTable) freeIfEmpty(i int32) bool {
	r := &t.recs[i]
	if r.first.host != 0 || r.delivered != 0 {
		return false
	}
	if j, ok := t.index[r.a]; !ok || j != i {
		return true // freed already
	}
	delete(t.index, r.a)
	*r = addrRec{}
	t.free = append(t.free, i)
	return true
}

// find returns host's record of a, or nil.
func (t *addrTable) find(a netip.Addr, host string) *hostBlock {
	i, ok := t.index[keyOf(a)]
	x, known := t.nameIdx[host]
	if !ok || !known {
		return nil
	}
	r := &t.recs[i]
	if r.first.host == x {
		return &r.first
	}
	if r.more {
		hs := t.more[i]
		for j := range hs {
			if hs[j].host == x {
				return &hs[j]
			}
		}
	}
	return nil
}

// add adds e, a host's record record i has not.
func (t *addrTable) add(i int32, e hostBlock) {
	r := &t.recs[i]
	if r.first.host == 0 {
		r.first = e
		return
	}
	t.more[i] = append(t.more[i], e)
	r.more = true
}

// update calls f with each host's record of record i, and drops those f
// returns false for. Record i is not freed.
func (t *addrTable) update(i int32, f func(*hostBlock) bool) {
	r := &t.recs[i]
	if r.first.host != 0 && !f(&r.first) {
		r.first = hostBlock{}
	}
	if !r.more {
		return
	}
	hs, n := t.more[i], 0
	for j := range hs {
		if f(&hs[j]) {
			hs[n] = hs[j]
			n++
		}
	}
	clear(hs[n:])
	hs = hs[:n]
	if r.first.host == 0 && len(hs) > 0 {
		r.first, hs = hs[0], hs[1:]
	}
	if len(hs) == 0 {
		delete(t.more, i)
		r.more = false
		return
	}
	t.more[i] = hs
}
