package e2e

import (
	"fmt"
	"os"
	"syscall"
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
	soakChaos(b, d, p)
}

// soakChaos is the soak's last phase: each disruption an attacker or an
// admin's mistake brings (a spoofed flood, SIGHUPs, nft flush set, nft
// flush ruleset, kill -9 and a restart), twice over, with blocks by hand
// acknowledged before each; after each, a real scan is blocked again, and
// at the end every acknowledged block is in the kernel.
func soakChaos(b *testing.B, d *daemon, p *netnstest.Pair) {
	acked := map[string]bool{}
	n := 0
	blockSome := func() {
		for range 20 {
			a := fmt.Sprintf("198.51.%d.%d", 100+n/250, n%250+1)
			n++
			if _, err := d.cli("block", a, "--timeout", "1h"); err == nil {
				acked[a] = true
			}
		}
	}
	disruptions := []struct {
		name string
		do   func()
	}{
		{"spoofed flood", func() {
			p.B.Run("timeout", "5", "hping3", "--flood", "--rand-source", "-S", "-p", "1", "-q", netnstest.AddrA)
		}},
		{"SIGHUPs", func() {
			for range 5 {
				d.cmd.Process.Signal(syscall.SIGHUP)
				time.Sleep(100 * time.Millisecond)
			}
		}},
		{"nft flush set", func() { p.A.MustRun("nft", "flush", "set", "inet", "portsentry", "blocked") }},
		{"nft flush ruleset", func() { p.A.MustRun("nft", "flush", "ruleset") }},
		{"kill -9 and restart", func() {
			d.cmd.Process.Kill()
			<-d.done
			d.start()
		}},
	}
	for round := range 2 {
		for _, x := range disruptions {
			blockSome()
			x.do()
			d.cli("unblock", netnstest.AddrB)
			time.Sleep(time.Second) // the self-heal after a flushed ruleset
			nmap(b, p.B, "-sS", "-p", "1,11,15,79", netnstest.AddrA)
			if netnstest.ElementLine(listSet(b, p.A, "blocked"), netnstest.AddrB) == "" {
				waitBlocked(b, p.A, "blocked", netnstest.AddrB, 10*time.Second)
			}
			fmt.Fprintf(os.Stderr, "soak chaos round %d: %s: the scanner is blocked again\n", round+1, x.name)
		}
	}
	var missing []string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		set := listSet(b, p.A, "blocked")
		missing = missing[:0]
		for a := range acked {
			if netnstest.ElementLine(set, a) == "" {
				missing = append(missing, a)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	fmt.Fprintf(os.Stderr, "soak chaos: %d acknowledged blocks, %d missing at the end\n", len(acked), len(missing))
	if len(missing) > 0 {
		b.Errorf("%d of %d acknowledged blocks lost in the chaos phase, e.g. %v", len(missing), len(acked), missing[:min(5, len(missing))])
	}
}
