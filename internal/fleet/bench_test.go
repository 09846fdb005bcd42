package fleet

import (
	"net/netip"
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
