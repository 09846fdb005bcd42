package fleet

import (
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// viewModel is what the view's records of other hosts' blocks must
// hold, kept the plain way: by host and address, and the expiries passed
// to the Sink by address.
type viewModel struct {
	blocks    map[hostAddr]hostBlock // host unused
	delivered map[netip.Addr]int64
	ownRevs   map[netip.Addr]uint64 // this host's keys' revisions
}

// FuzzViewRecords drives the view's records of addresses (several hosts
// an address, records freed and used again, one index entry an address)
// with a sequence of operations read from the input, and checks every
// step against viewModel.
func FuzzViewRecords(f *testing.F) {
	f.Add([]byte{0, 1, 5, 1, 1, 9, 0, 2, 7, 1, 2, 9, 2, 1, 0, 7, 3, 4, 5, 3, 8, 7, 9, 9})
	f.Add([]byte{1, 0, 3, 1, 6, 2, 5, 0, 1, 4, 0, 0, 1, 0, 2, 7, 6, 7, 2, 0, 5, 8, 0, 1})
	f.Fuzz(runViewOps)
}

func runViewOps(t *testing.T, ops []byte) {
	hosts := []string{"h1", "h2", "h3", "me"}
	addrs := []netip.Addr{netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("::")}
	v := newView("me", time.Hour)
	m := viewModel{blocks: map[hostAddr]hostBlock{}, delivered: map[netip.Addr]int64{}, ownRevs: map[netip.Addr]uint64{}}
	now, rev := int64(100), uint64(0)
	for len(ops) >= 3 {
		op, h, a, x := ops[0]%8, hosts[ops[1]%4], addrs[ops[1]/4%4], int64(ops[2])
		ops = ops[3:]
		rev++
		now = m.step(t, &v, op, h, a, x, rev, now)
		m.check(t, &v, hosts, addrs, now)
	}
}

// step applies one operation to v and m; it returns the time now.
func (m *viewModel) step(t *testing.T, v *view, op byte, h string, a netip.Addr, x int64, rev uint64, now int64) int64 {
	k := hostAddr{h, a}
	key := HostAddrKey(h, a)
	switch op {
	case 0, 1: // a record of the blocks bucket put or deleted
		v.handle(BucketBlocks, key, rev, op == 1)
		switch e := m.blocks[k]; {
		case h == "me" && op == 1:
			delete(m.ownRevs, a)
		case h == "me":
			m.ownRevs[a] = rev
		case op == 1:
			e.rev = 0
			m.put(k, e)
		default:
			e.rev = rev
			m.put(k, e)
		}
	case 2: // held
		if h == "me" {
			return now
		}
		v.hold(a, held{host: h, expires: now + x + 1, created: x})
		e := m.blocks[k]
		e.expires, e.created = now+x+1, x
		m.blocks[k] = e
	case 3: // lifted: the host's, or every block created before x
		v.release(a, func(b held) bool { return b.host == h || b.created < x })
		for mk, e := range m.blocks {
			if mk.a == a && e.held() && (mk.host == h || e.created < x) {
				e.expires, e.created = 0, 0
				m.put(mk, e)
			}
		}
	case 4:
		v.forget(a)
		delete(m.delivered, a)
		for mk, e := range m.blocks {
			if mk.a == a {
				e.expires, e.created = 0, 0
				m.put(mk, e)
			}
		}
	case 5:
		v.setDelivered(a, time.Unix(0, now+x+1))
		m.delivered[a] = now + x + 1
	case 6:
		v.undeliver(a)
		delete(m.delivered, a)
	case 7:
		now += x
		v.sweep(time.Unix(0, now))
		for mk, e := range m.blocks {
			if e.held() && e.expires <= now {
				delete(m.blocks, mk)
			}
		}
		maps.DeleteFunc(m.delivered, func(_ netip.Addr, d int64) bool { return d <= now })
	}
	return now
}

// put keeps e at k if it has a revision or a block, else drops k.
func (m *viewModel) put(k hostAddr, e hostBlock) {
	if e.rev == 0 && !e.held() {
		delete(m.blocks, k)
		return
	}
	m.blocks[k] = e
}

// check compares v with m at now.
func (m *viewModel) check(t *testing.T, v *view, hosts []string, addrs []netip.Addr, now int64) {
	t.Helper()
	var want []Block
	var keys []string
	used := map[netip.Addr]bool{}
	for k, e := range m.blocks {
		used[k.a] = true
		if e.expires > now {
			want = append(want, Block{Addr: k.a, Host: k.host, Expires: time.Unix(0, e.expires)})
		}
		if e.rev != 0 {
			keys = append(keys, BucketBlocks+"/"+HostAddrKey(k.host, k.a))
		}
		if got := v.rev(BucketBlocks, HostAddrKey(k.host, k.a)); got != e.rev {
			t.Fatalf("%v: revision %d, want %d", k, got, e.rev)
		}
	}
	slices.SortFunc(want, func(x, y Block) int {
		if c := x.Addr.Compare(y.Addr); c != 0 {
			return c
		}
		return cmpString(x.Host, y.Host)
	})
	if got := v.list(time.Unix(0, now)); !slices.EqualFunc(got, want, func(x, y Block) bool {
		return x.Addr == y.Addr && x.Host == y.Host && x.Expires.Equal(y.Expires)
	}) || v.count(time.Unix(0, now)) != len(want) {
		t.Fatalf("at %d: list %v, want %v", now, got, want)
	}
	for a, r := range m.ownRevs {
		keys = append(keys, BucketBlocks+"/"+HostAddrKey("me", a))
		if got := v.rev(BucketBlocks, HostAddrKey("me", a)); got != r {
			t.Fatalf("own %v: revision %d, want %d", a, got, r)
		}
	}
	for a, d := range m.delivered {
		used[a] = true
		if got := v.deliveredAt(a); got.UnixNano() != d {
			t.Fatalf("%v: delivered %v, want %d", a, got, d)
		}
	}
	for _, a := range addrs {
		if _, ok := m.delivered[a]; !ok && !v.deliveredAt(a).IsZero() {
			t.Fatalf("%v: delivered %v, want none", a, v.deliveredAt(a))
		}
		for _, h := range hosts {
			if _, ok := m.blocks[hostAddr{h, a}]; !ok && h != "me" && v.rev(BucketBlocks, HostAddrKey(h, a)) != 0 {
				t.Fatalf("%s's %v: a revision kept", h, a)
			}
		}
	}
	got := v.revKeys()
	slices.Sort(got)
	slices.Sort(keys)
	if !slices.Equal(got, keys) || len(v.index) != len(used) {
		t.Fatalf("revisions %v, want %v; %d addresses, want %d", got, keys, len(v.index), len(used))
	}
	if n := len(v.due); n > len(v.index)+4096 {
		t.Fatalf("%d index entries for %d addresses", n, len(v.index))
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
