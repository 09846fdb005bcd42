package e2e

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// BenchmarkSoak is `make soak`: SOAK_DURATION (default 10m) of mixed nmap
// scans, unblocks and spoofed floods against one daemon, bounded in time
// and count, then compares goroutines, open files, heap and RSS with the
// start. Not part of make test.
func BenchmarkSoak(b *testing.B) {
	netnstest.Require(b, "nmap", "hping3")
	dur := 10 * time.Minute
	if s := os.Getenv("SOAK_DURATION"); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			dur = d
		}
	}
	p := netnstest.NewPair(b)
	// Short blocks, so that state reaches a steady level: the repeat
	// offenders fill their cap (100k) after some 200k blocks, within the
	// first half at this rate; what still grows after that is a leak.
	d := startDaemon(b, p.A, "block: {max_per_second: 1000, timeout: 20s, repeat_factor: 1}\ndetect: {max_sources: 200000}\n")
	pid := d.cmd.Process.Pid
	time.Sleep(time.Second)
	first := daemonStatus(b, d)
	var before = first
	rss0 := rssKiB(b, pid)
	half := time.Now().Add(dur / 2)
	sampled := false
	scans := [][]string{{"-sS"}, {"-sT"}, {"-sF"}, {"-sN"}, {"-sX"}, {"-sU"}}
	end := time.Now().Add(dur)
	rounds := 0
	for time.Now().Before(end) {
		if !sampled && time.Now().After(half) {
			before, rss0, sampled = daemonStatus(b, d), rssKiB(b, pid), true
		}
		for _, s := range scans {
			nmap(b, p.B, append(s, "-p", "1,11,15,79,7,9,69", netnstest.AddrA)...)
			d.cli("unblock", netnstest.AddrB)
		}
		p.B.Run("timeout", "5", "hping3", "--flood", "--rand-source", "-S", "-p", "1", "-q", netnstest.AddrA)
		rounds++
	}
	time.Sleep(3 * time.Second)
	after := daemonStatus(b, d)
	rss1 := rssKiB(b, pid)
	for _, k := range []string{"goroutines", "open_files", "heap_bytes"} { // heap: live at the last GC
		fmt.Fprintf(os.Stderr, "soak %s: %-12s start %d, at half time %d, end %d\n", dur, k, first.Counters[k], before.Counters[k], after.Counters[k])
	}
	fmt.Fprintf(os.Stderr, "soak %s: %-12s at half time %d KiB, end %d KiB; %d rounds, %d blocks, %d expired, %d probes\n", dur, "RSS", rss0, rss1, rounds,
		after.Counters["blocks"], after.Counters["expired"], after.Counters["packets"])
	if after.Counters["goroutines"] > before.Counters["goroutines"]+5 || after.Counters["open_files"] > before.Counters["open_files"]+5 {
		b.Errorf("growth: goroutines %d -> %d, open files %d -> %d", before.Counters["goroutines"], after.Counters["goroutines"],
			before.Counters["open_files"], after.Counters["open_files"])
	}
	// The live heap (at the last collection) is what a leak grows; it
	// moves with the garbage of the moment too, hence the margin.
	if h0, h1 := before.Counters["heap_bytes"], after.Counters["heap_bytes"]; h1 > h0+h0/4 {
		b.Errorf("live heap grew from %d to %d bytes in the second half", h0, h1)
	}
	b.ReportMetric(float64(rss1-rss0), "RSS-growth-KiB")
	b.ReportMetric(float64(rounds), "rounds")
}
