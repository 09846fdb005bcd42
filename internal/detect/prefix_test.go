package detect

import (
	"net/netip"
	"testing"
	"time"
)

// Four distinct addresses of one /64 trigger, once; a repeated address,
// another /64 or IPv4 do not count; the window starts the count over.
func TestPrefixesTrigger(t *testing.T) {
	p := NewPrefixes(4, time.Minute)
	now := time.Unix(1000, 0)
	addr := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	for i, c := range []struct {
		a       string
		n       int
		trigger bool
	}{
		{"fd00:201:0:1::a", 1, false},
		{"fd00:201:0:1::a", 1, false},
		{"fd00:201:0:1::b", 2, false},
		{"fd00:201:0:2::a", 1, false},
		{"10.201.0.2", 0, false},
		{"fd00:201:0:1::c", 3, false},
		{"fd00:201:0:1::d", 4, true},
		{"fd00:201:0:1::e", 5, true},
	} {
		n, trig := p.Observe(addr(c.a), now)
		if n != c.n || trig != c.trigger {
			t.Errorf("%d %s: %d, %v; want %d, %v", i, c.a, n, trig, c.n, c.trigger)
		}
	}
	p.Hold(addr("fd00:201:0:1::"), now.Add(time.Hour))
	if _, trig := p.Observe(addr("fd00:201:0:1::f"), now); trig {
		t.Error("a held /64 triggered again")
	}
	if n, trig := p.Observe(addr("fd00:201:0:1::f"), now.Add(2*time.Minute)); n != 1 || trig {
		t.Errorf("past the window: %d, %v; want a fresh count", n, trig)
	}
	p.Forget(addr("fd00:201:0:2::"))
	if n, _ := p.Observe(addr("fd00:201:0:2::b"), now); n != 1 {
		t.Errorf("after Forget: %d addresses, want 1", n)
	}
	if n, _ := NewPrefixes(0, 0).Observe(addr("fd00::1"), now); n != 0 {
		t.Error("trigger 0 counts")
	}
}

// Observing allocates nothing.
func TestPrefixesNoAlloc(t *testing.T) {
	p := NewPrefixes(4, time.Minute)
	a := netip.MustParseAddr("fd00:201:0:1::a")
	now := time.Now()
	if n := testing.AllocsPerRun(100, func() { p.Observe(a, now) }); n != 0 {
		t.Errorf("%v allocations a probe", n)
	}
}
