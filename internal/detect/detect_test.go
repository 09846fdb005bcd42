package detect

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/packet"
	"github.com/portsentry-nft/portsentry-nft/internal/scanner"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func probe(src string, port uint16) *packet.Probe {
	return &packet.Probe{Src: netip.MustParseAddr(src), Proto: packet.TCP, DstPort: port, Kind: packet.KindSYN}
}

func TestTriggerSemantics(t *testing.T) {
	for _, tc := range []struct {
		trigger int
		fireAt  int // 1-based probe that triggers
	}{{0, 1}, {1, 1}, {2, 2}, {5, 5}} {
		t.Run(fmt.Sprint(tc.trigger), func(t *testing.T) {
			d := New(Config{Trigger: tc.trigger, MaxSources: 10})
			for i := 1; i <= tc.fireAt; i++ {
				v, s := d.Observe(probe("10.0.0.1", uint16(i)), t0.Add(time.Duration(i)*time.Second))
				want := Count
				if i == tc.fireAt {
					want = Trigger
				}
				if v != want {
					t.Fatalf("probe %d: verdict %v, want %v", i, v, want)
				}
				if s.Count != i {
					t.Fatalf("probe %d: count %d", i, s.Count)
				}
			}
		})
	}
}

func TestWindowResetsCount(t *testing.T) {
	d := New(Config{Trigger: 2, Window: time.Minute, MaxSources: 10})
	if v, _ := d.Observe(probe("10.0.0.1", 1), t0); v != Count {
		t.Fatal("first probe should count")
	}
	// The second probe comes after the window: it starts a new count.
	if v, s := d.Observe(probe("10.0.0.1", 2), t0.Add(2*time.Minute)); v != Count || s.Count != 1 || s.NPorts != 1 {
		t.Fatalf("probe after window: %v count %d ports %d, want Count 1 on 1 port", v, s.Count, s.NPorts)
	}
	if v, s := d.Observe(probe("10.0.0.1", 3), t0.Add(2*time.Minute+time.Second)); v != Trigger || s.NPorts != 2 {
		t.Fatalf("second probe inside the window: %v on %d ports, want Trigger on 2", v, s.NPorts)
	}
}

func TestAlreadyBlockedUntilExpiry(t *testing.T) {
	d := New(Config{Trigger: 0, MaxSources: 10})
	src := netip.MustParseAddr("fd00::5")
	p := &packet.Probe{Src: src, Kind: packet.KindUDP}
	if v, _ := d.Observe(p, t0); v != Trigger {
		t.Fatal("want Trigger")
	}
	d.MarkBlocked(src, t0.Add(time.Hour))
	if v, _ := d.Observe(p, t0.Add(time.Minute)); v != AlreadyBlocked {
		t.Fatalf("during the block: %v, want AlreadyBlocked", v)
	}
	if v, s := d.Observe(p, t0.Add(2*time.Hour)); v != Trigger || s.Times != 2 {
		t.Fatalf("after expiry: %v times %d, want Trigger and 2", v, s.Times)
	}
}

func TestEvictsLeastRecentlySeen(t *testing.T) {
	d := New(Config{Trigger: 3, MaxSources: 3})
	for i, a := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		d.Observe(probe(a, 1), t0.Add(time.Duration(i)*time.Second))
	}
	d.Observe(probe("10.0.0.1", 2), t0.Add(5*time.Second)) // .1 is recent again
	d.Observe(probe("10.0.0.4", 1), t0.Add(6*time.Second)) // evicts .2, the oldest
	if d.Len() != 3 || d.Evicted != 1 {
		t.Fatalf("len %d evicted %d, want 3 and 1", d.Len(), d.Evicted)
	}
	if _, s := d.Observe(probe("10.0.0.1", 3), t0.Add(7*time.Second)); s.Count != 3 {
		t.Fatalf(".1 lost its count (%d): the wrong source was evicted", s.Count)
	}
	if _, s := d.Observe(probe("10.0.0.2", 3), t0.Add(8*time.Second)); s.Count != 1 {
		t.Fatalf(".2 should have been forgotten, count %d", s.Count)
	}
}

func TestObserveAllocatesNothingForKnownSources(t *testing.T) {
	d := New(Config{Trigger: 1000000, MaxSources: 100})
	ps := make([]*packet.Probe, 100)
	for i := range ps {
		ps[i] = probe(fmt.Sprintf("10.0.1.%d", i), 1)
		d.Observe(ps[i], t0)
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() { d.Observe(ps[i%100], t0); i++ }); n != 0 {
		t.Fatalf("%v allocations per probe, want 0", n)
	}
}

func BenchmarkObserve(b *testing.B) {
	d := New(Config{Trigger: 1 << 30, MaxSources: 1 << 20})
	ps := make([]packet.Probe, 4096)
	for i := range ps {
		ps[i] = *probe(fmt.Sprintf("10.%d.%d.1", i/256, i%256), 1)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		d.Observe(&ps[i%len(ps)], t0)
	}
}

// BenchmarkMemoryPerSource reports the resident memory each tracked source
// costs, with a million tracked (the flood goal: <= 64 MiB RSS for 1M
// sources), and what of it the Go heap holds (nothing: it is mapped apart).
func BenchmarkMemoryPerSource(b *testing.B) {
	const n = 1 << 20
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		rss0 := rssBytes(b)
		d := New(Config{Trigger: 1 << 30, MaxSources: n})
		p := &packet.Probe{Proto: packet.TCP, Kind: packet.KindSYN, DstPort: 1}
		for i := 0; i < n; i++ {
			p.Src = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			d.Observe(p, t0)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		rss := rssBytes(b) - rss0
		b.ReportMetric(float64(rss)/n, "bytes/source")
		b.ReportMetric(float64(rss)/(1<<20), "RSS-MiB/1M-sources")
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), "heap-MiB/1M-sources")
		d.mem.releaseAll() // now, not when a later GC runs the cleanup: the next round measures afresh
	}
}

func rssBytes(b *testing.B) int64 {
	f, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Fatal(err)
	}
	var size, resident int64
	fmt.Sscan(string(f), &size, &resident)
	return resident * int64(os.Getpagesize())
}

// The index agrees with a reference model through inserts, evictions and
// forgets, with a small capacity so eviction and backward-shift deletion
// run constantly.
func TestIndexAgainstModel(t *testing.T) {
	d := New(Config{Trigger: 1 << 30, MaxSources: 100})
	rng := rand.New(rand.NewPCG(1, 2))
	counts := map[netip.Addr]int{}
	for step := 0; step < 200000; step++ {
		a := netip.AddrFrom4([4]byte{10, 0, byte(rng.IntN(2)), byte(rng.IntN(200))})
		if rng.IntN(10) == 0 {
			a = netip.AddrFrom16([16]byte{0xfd, 15: byte(rng.IntN(50))})
		}
		_, s := d.Observe(&packet.Probe{Src: a, DstPort: 1}, t0)
		if s.Addr != a {
			t.Fatalf("step %d: got the state of %s for %s", step, s.Addr, a)
		}
		if s.Count == 1 {
			counts[a] = 0 // new, or evicted earlier and back
		}
		counts[a]++
		if s.Count != counts[a] {
			t.Fatalf("step %d: %s count %d, model %d", step, a, s.Count, counts[a])
		}
		if d.Len() > 100 {
			t.Fatalf("tracking %d sources, cap 100", d.Len())
		}
	}
	checkIndex(t, d, &d.v4)
	checkIndex(t, d, &d.v6)
	if d.v6.n == 0 || d.v4.n == 0 {
		t.Fatalf("tables hold %d IPv4 and %d IPv6 sources: the test did not mix families", d.v4.n, d.v6.n)
	}
	if d.Evicted == 0 {
		t.Fatal("no eviction happened: the test did not exercise it")
	}
}

// checkIndex: every source of tb is found through its index, exactly once,
// and the index holds nothing else.
func checkIndex[K addrKey](t *testing.T, d *Detector, tb *table[K]) {
	t.Helper()
	seen := map[K]bool{}
	for i := int32(0); i < tb.n; i++ {
		k := tb.at(i).addr
		if seen[k] {
			t.Fatalf("source %x stored twice", k)
		}
		seen[k] = true
		if tb.index[slot(d, tb, &k)]-1 != i {
			t.Fatalf("source %x not found through the index", k)
		}
	}
	used := 0
	for _, v := range tb.index {
		if v != 0 {
			used++
		}
	}
	if used != int(tb.n) {
		t.Fatalf("index holds %d entries for %d sources", used, tb.n)
	}
}

// A flood of one family does not starve the other: at the cap, a new
// source takes the place of one in the larger table.
func TestFamiliesShareTheCap(t *testing.T) {
	d := New(Config{Trigger: 1 << 30, MaxSources: 1000})
	for i := 0; i < 5000; i++ {
		d.Observe(&packet.Probe{Src: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})}, t0)
	}
	for i := 0; i < 300; i++ {
		d.Observe(&packet.Probe{Src: netip.AddrFrom16([16]byte{0xfd, 14: byte(i >> 8), 15: byte(i)})}, t0)
	}
	if d.Len() != 1000 || d.v6.n != 300 || d.v4.n != 700 {
		t.Fatalf("tracking %d (IPv4 %d, IPv6 %d), want 1000 (700 and 300)", d.Len(), d.v4.n, d.v6.n)
	}
	_, s := d.Observe(&packet.Probe{Src: netip.AddrFrom16([16]byte{0xfd, 14: 0, 15: 5})}, t0)
	if s.Count != 2 {
		t.Fatalf("an IPv6 source lost its count (%d) while IPv4 sources were evicted", s.Count)
	}
	checkIndex(t, d, &d.v4)
	checkIndex(t, d, &d.v6)
	// IPv4 and the IPv4-mapped IPv6 address are different sources.
	d4 := New(Config{Trigger: 1 << 30, MaxSources: 10})
	d4.Observe(probe("10.0.0.1", 1), t0)
	if _, s := d4.Observe(probe("::ffff:10.0.0.1", 1), t0); s.Count != 1 {
		t.Fatalf("::ffff:10.0.0.1 shares the count of 10.0.0.1 (%d)", s.Count)
	}
}

// A source is named for the tool of its window's first probe, and its last
// probe's kind is kept beside it.
func TestFirstProbeNamesTheTool(t *testing.T) {
	d := New(Config{Trigger: 3, Window: time.Minute, MaxSources: 10})
	first, later := probe("10.0.0.1", 1), probe("10.0.0.1", 2)
	first.Tool, later.Tool, later.Kind = scanner.Masscan, scanner.OSStack, packet.KindConnect
	d.Observe(first, t0)
	if _, s := d.Observe(later, t0.Add(time.Second)); s.Tool != scanner.Masscan || s.LastKind != packet.KindConnect {
		t.Errorf("tool %s, kind %s; want masscan, TCP connect", s.Tool, s.LastKind)
	}
	// A new window: its first probe names it.
	if _, s := d.Observe(later, t0.Add(2*time.Minute)); s.Tool != scanner.OSStack || s.LastKind != packet.KindConnect {
		t.Errorf("a new window: tool %s, kind %s; want os-stack, TCP connect", s.Tool, s.LastKind)
	}
}
