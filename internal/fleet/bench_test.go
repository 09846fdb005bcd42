package fleet

import (
	"net/netip"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// BenchmarkPublish10k: a burst of 10,000 blocks (a restore) from one host
// until the servers acknowledged them all, and until another host's Sink
// has them all; one embedded server, every client on the same machine.
func BenchmarkPublish10k(b *testing.B) {
	ns := startServer(b, nil)
	h1, h2 := startHost(b, ns, "h1"), startHost(b, ns, "h2")
	h1.waitReady(b)
	h2.waitReady(b)
	const n = 10000
	var acked, mirrored time.Duration
	base := uint64(0)
	for i := 0; b.Loop(); i++ {
		exp := time.Now().Add(time.Hour + time.Duration(i)*time.Minute) // each round extends: all delivered again
		start := time.Now()
		for j := range n {
			h1.c.Publish(Block{Addr: netip.AddrFrom4([4]byte{10, byte(j >> 16), byte(j >> 8), byte(j)}), Expires: exp, Origin: OriginDetect})
		}
		h1.waitStats(b, "acked", func(s Stats) bool { return s.Published >= base+n+1 && s.OutboxDepth == 0 })
		acked += time.Since(start)
		h2.waitStats(b, "mirrored", func(s Stats) bool { return s.Mirrored >= base+n })
		mirrored += time.Since(start)
		base += n
	}
	b.ReportMetric(float64(acked.Milliseconds())/float64(b.N), "ms-acked/10k")
	b.ReportMetric(float64(mirrored.Milliseconds())/float64(b.N), "ms-mirrored/10k")
	b.ReportMetric(float64(n*b.N)/mirrored.Seconds(), "blocks/s")
}

// BenchmarkViewMirrored1M: what the view keeps of 1M blocks mirrored from
// 100 other hosts, as applyBlock, enforce and deliver leave it (the
// revision handled, the host's hold, the expiry delivered), in bytes of
// heap per block after a collection. The Sink's record (the ledger's) is
// apart: internal/state BenchmarkOpen1M.
func BenchmarkViewMirrored1M(b *testing.B) {
	const n = 1000000
	exp := time.Now().Add(time.Hour)
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		v := newView("self", 7*24*time.Hour)
		for i := range n {
			a := netip.AddrFrom4([4]byte{10, byte(120 + i>>16), byte(i >> 8), byte(i)})
			host := "host-" + strconv.Itoa(i%100)
			v.handle(BucketBlocks, HostAddrKey(host, a), uint64(i+1), false)
			v.hold(a, held{host: host, expires: exp.UnixNano(), created: exp.UnixNano()})
			v.setDelivered(a, exp)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/block")
		runtime.KeepAlive(&v)
	}
}
