package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// BenchmarkFleet runs the fleet's part of the report alone.
func BenchmarkFleet(b *testing.B) {
	netnstest.Require(b, "nmap", "hping3")
	benchFleet(b, printRow)
}

// crowdsecPoll is how often a CrowdSec bouncer asks its API for new
// decisions by default (update_frequency 10s): a decision waits half of it
// on average, all of it at worst.
const crowdsecPoll = 10 * time.Second

// benchFleet: three hosts on a LAN with the 3-node cluster (as the
// TestFleet tests): an administrator's block on host 1, and a scan that
// touches hosts 1 and 2, to the element in the other hosts' sets,
// 10k blocks at once, the catch-up after two 30 s partitions, and host 2's
// RSS with 100k blocks mirrored. About three minutes.
func benchFleet(b *testing.B, add func(string, string, string)) {
	// host_share 0.75: host 1 alone makes the 100k blocks host 2 mirrors
	// below (its default share is a quarter of set_size).
	f := newFleetLAN(b, "block: {max_per_second: 100000, set_size: 200000}\n", "  correlate: {hosts: 2}\n  host_share: 0.75\n")
	h1, h2, h3 := f.hosts[0], f.hosts[1], f.hosts[2]
	idleRSS := rssKiB(b, h2.d.cmd.Process.Pid)
	benchFleetLatency(b, add, f)

	// 10k blocks at once on host 1 (one block --file) until every host
	// has all of them.
	files := []*os.File{h1.ns.Open(), h2.ns.Open(), h3.ns.Open()}
	counts := func() []int {
		var n []int
		for _, fl := range files {
			n = append(n, countElements(b, fl, nft.SetBlocked))
		}
		return n
	}
	// perHost: when each host had its count, in the last waitCounts.
	var perHost []time.Duration
	waitCounts := func(want []int, within time.Duration) time.Duration {
		start := time.Now()
		perHost = make([]time.Duration, len(want))
		for {
			got := counts()
			done := true
			for i := range got {
				if got[i] >= want[i] && perHost[i] == 0 {
					perHost[i] = time.Since(start).Round(time.Millisecond)
				}
				done = done && got[i] >= want[i]
			}
			if done {
				return time.Since(start)
			}
			if time.Since(start) > within {
				f.dump(b)
				b.Fatalf("elements %v, want %v, after %s", got, want, within)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	plus := func(base []int, d ...int) []int {
		out := make([]int, len(base))
		for i := range base {
			out[i] = base[i] + d[i]
		}
		return out
	}
	base := counts()
	list := addrFile(b, 10000, 211)
	start := time.Now()
	if out, err := h1.d.cli("block", "--file", list); err != nil {
		b.Fatalf("block --file: %v %s", err, out)
	}
	local := time.Since(start)
	all := local + waitCounts(plus(base, 10000, 10000, 10000), 60*time.Second)
	add("fleet: 10k blocks at once on host 1 (one block --file) until all 3 hosts have them",
		fmt.Sprintf("%s (%s on host 1 itself); %.0f blocks/s fleet-wide", all.Round(time.Millisecond), local.Round(time.Millisecond), 10000/all.Seconds()),
		fmt.Sprintf("one CrowdSec poll: up to %s", crowdsecPoll))

	// A 30 s partition: host 1 blocks 1000 addresses and host 3 100
	// meanwhile; from the heal until each has the other's. Cut off first
	// host 3 alone (its daemon loses the cluster, the servers stay whole),
	// then host 3 and server n3 together (as where each host runs a server
	// of the cluster: the servers must also elect and catch up).
	partition := func(what string, second int, nss ...*netnstest.NS) {
		base := counts()
		var heals []func()
		for _, ns := range nss {
			heals = append(heals, cut(b, ns))
		}
		cutAt := time.Now()
		if out, err := h1.d.cli("block", "--file", addrFile(b, 1000, second)); err != nil {
			b.Fatalf("block --file: %v %s", err, out)
		}
		if out, err := h3.d.cli("block", "--file", addrFile(b, 100, second+1)); err != nil {
			b.Fatalf("block --file: %v %s", err, out)
		}
		time.Sleep(time.Until(cutAt.Add(30 * time.Second)))
		if got := counts(); got[2] != base[2]+100 || got[0] != base[0]+1000 {
			b.Fatalf("the cut leaked: elements %v, base %v", got, base)
		}
		for _, heal := range heals {
			heal()
		}
		catchUp := waitCounts(plus(base, 1100, 1100, 1100), 60*time.Second)
		add(fmt.Sprintf("fleet: catch-up after a 30 s partition of %s (1000 blocks of host 1, 100 of host 3 made during it)", what),
			fmt.Sprintf("%s from the heal until all 3 hosts have all 1100 (host 1 %s, host 2 %s, host 3 %s)", catchUp.Round(time.Millisecond), perHost[0], perHost[1], perHost[2]), "<= 5 s")
	}
	partition("host 3", 212, h3.ns)
	partition("host 3 and server n3", 214, h3.ns, h3.srv.ns)

	// 100k fleet blocks mirrored on host 2: host 1 adds 86,800 to the
	// 13,200 of the steps above, through the control socket in requests of
	// at most 25k (the outbox holds 65536 writes; each request waits for
	// host 1's outbox to drain).
	base = counts()
	mirrored := int(counter(b, h2.d, "fleet_blocks"))
	for i, left := 0, 100000-mirrored; left > 0; i++ {
		n := min(left, 25000)
		left -= n
		if out, err := h1.d.cli("block", "--file", addrFile(b, n, 220+i)); err != nil {
			b.Fatalf("block --file: %v %s", err, out)
		}
		deadline := time.Now().Add(60 * time.Second)
		for counter(b, h1.d, "fleet_outbox") > 0 {
			if time.Now().After(deadline) {
				b.Fatalf("host 1's outbox did not drain in 60 s")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	n := 100000 - mirrored
	waitCounts(plus(base, n, n, n), 150*time.Second)
	if n := counter(b, h1.d, "fleet_outbox_dropped"); n != 0 {
		b.Errorf("host 1 dropped %d writes", n)
	}
	add("fleet: RSS of host 2's daemon with 100k fleet blocks mirrored",
		fmt.Sprintf("%.1f MiB with %d (%.1f MiB idle in the fleet at start); live heap %.1f MiB", float64(rssKiB(b, h2.d.cmd.Process.Pid))/1024,
			counter(b, h2.d, "fleet_blocks"), float64(idleRSS)/1024, float64(counter(b, h2.d, "heap_bytes"))/(1<<20)), "")
}

// addrFile writes n distinct addresses in 10.<second>.0.0/16 and up.
func addrFile(b testing.TB, n, second int) string {
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, "10.%d.%d.%d\n", second+(i+1)>>16, byte((i+1)>>8), byte(i+1))
	}
	p := filepath.Join(b.TempDir(), "addrs")
	if err := os.WriteFile(p, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return p
}

// benchFleetLatency measures the two ways a block reaches the fleet: an
// administrator's block on host 1 (the CLI, the control socket, the
// ledger, NATS) to the element in host 2's set, 200 addresses one after
// the other; and a source that probes hosts 1 and 2 (correlate.hosts 2:
// one SYN to each from 100 distinct spoofed sources, 10 a second, from a
// raw socket in the scanner's namespace) from its second probe to the
// element in host 3's set, which counted the two hosts' sightings itself.
// Element adds are read from an nftables netlink monitor in the
// receiver's namespace. A block on one host's probes stays there.
func benchFleetLatency(b *testing.B, add func(string, string, string), f *fleetLAN) {
	h1, h2, h3 := f.hosts[0], f.hosts[1], f.hosts[2]
	seen := watchAdds(b, h2.ns)
	sent := map[netip.Addr]time.Time{}
	for i := range 200 {
		a := netip.AddrFrom4([4]byte{10, 209, byte((i + 1) >> 8), byte(i + 1)})
		sent[a] = time.Now()
		if out, err := h1.d.cli("block", a.String()); err != nil {
			b.Fatalf("block: %v %s", err, out)
		}
	}
	lat := seen.latencies(b, sent, "host 2")
	seen.stop()
	add("fleet: an administrator's block on host 1 (`block`, one address at a time, 200) to the element in host 2's set",
		fmt.Sprintf("p50 %s, p99 %s, max %s (the CLI's process included); CrowdSec's 10 s poll: %.0fx (p99 against 10 s)",
			us(pct(lat, 50)), us(pct(lat, 99)), us(pct(lat, 100)), float64(crowdsecPoll)/float64(pct(lat, 99))),
		"p99 <= 100 ms")

	seen = watchAdds(b, h3.ns)
	raw := rawSocketIn(b, f.scanner)
	defer closeFD(raw)
	d1, d2 := netip.MustParseAddr(h1.addr), netip.MustParseAddr(h2.addr)
	sent = map[netip.Addr]time.Time{}
	tick := time.NewTicker(100 * time.Millisecond)
	for i := range 100 {
		<-tick.C
		src := netip.AddrFrom4([4]byte{10, 210, byte((i + 1) >> 8), byte(i + 1)})
		sendSYN(b, raw, src, d1, 1)
		time.Sleep(5 * time.Millisecond)
		sent[src] = time.Now()
		sendSYN(b, raw, src, d2, 1)
	}
	tick.Stop()
	lat = seen.latencies(b, sent, "host 3")
	seen.stop()
	add("fleet: a source probing hosts 1 and 2 (correlate.hosts 2), its second probe to the element in host 3's set, 100 sources at 10/s",
		fmt.Sprintf("p50 %s, p99 %s, max %s; CrowdSec's 10 s poll: %.0fx (p99 against 10 s)",
			us(pct(lat, 50)), us(pct(lat, 99)), us(pct(lat, 100)), float64(crowdsecPoll)/float64(pct(lat, 99))),
		"p99 <= 100 ms")
}

// addsSeen holds when each address's element was first added in a
// namespace.
type addsSeen struct {
	mu   sync.Mutex
	at   map[netip.Addr]time.Time
	more chan struct{}
	stop func() // ends the watch (see elementAdds)
}

// watchAdds follows the element adds of ns.
func watchAdds(b *testing.B, ns *netnstest.NS) *addsSeen {
	s := &addsSeen{at: map[netip.Addr]time.Time{}, more: make(chan struct{}, 1)}
	adds, stop := elementAdds(b, ns)
	s.stop = stop
	go func() {
		for e := range adds {
			s.mu.Lock()
			if _, dup := s.at[e.Addr]; !dup {
				s.at[e.Addr] = e.At
			}
			s.mu.Unlock()
			select {
			case s.more <- struct{}{}:
			default:
			}
		}
	}()
	return s
}

// latencies waits up to 30 s for every address of sent, and returns each
// one's time from sent to its element.
func (s *addsSeen) latencies(b *testing.B, sent map[netip.Addr]time.Time, where string) []time.Duration {
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.mu.Lock()
		var lat []time.Duration
		for a, t := range sent {
			if at, ok := s.at[a]; ok {
				lat = append(lat, at.Sub(t))
			}
		}
		s.mu.Unlock()
		if len(lat) == len(sent) {
			return lat
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s has %d of %d blocks 30 s after the last", where, len(lat), len(sent))
		}
		select {
		case <-s.more:
		case <-time.After(100 * time.Millisecond):
		}
	}
}
