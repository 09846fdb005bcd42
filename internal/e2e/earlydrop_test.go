package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// A blocked source is dropped in prerouting, before conntrack looks at its
// packets: its SYNs to an open port of A count in the prerouting chain's
// drop rule and never reach the input hook. The again sample still works:
// a source the kernel struck on one port (TCP, then UDP) that probes
// another is seen by the daemon, and its block rests on two ports
// (corroborated). With routed.block too: the UDP sample used to be taken in
// the raw-priority chain, where `ct state new` never matches, and was lost.
func TestBlockedSourcesDropBeforeConntrack(t *testing.T) {
	netnstest.Require(t, "hping3", "ncat")
	for _, c := range []struct{ name, yaml string }{
		{"local", ""},
		{"routed", "routed: {block: true, watch: true}\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := netnstest.NewPair(t)
			serve(t, p.A, "0.0.0.0", "8080", "open")
			d := startDaemon(t, p.A, c.yaml)
			hping(t, p.B, "-S", "-c", "1", "-p", "1", netnstest.AddrA)
			waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
			hping(t, p.B, "-S", "-c", "20", "-i", "u10000", "-p", "8080", netnstest.AddrA)
			if n := dropCount(t, p.A, "prerouting", "ip saddr @blocked"); n < 20 {
				t.Errorf("the prerouting chain dropped %d of the blocked source's 20 SYNs to an open port", n)
			}
			if n := dropCount(t, p.A, "input", "ip saddr @blocked"); n != 0 {
				t.Errorf("%d of the blocked source's packets reached the input hook's drop", n)
			}
			hping(t, p.B, "-S", "-c", "1", "-p", "11", netnstest.AddrA)
			waitCounter(t, d, "corroborated", 1)
			// UDP: struck on port 1 again (the TCP block lifted first), then
			// a probe of port 7.
			if out, err := d.cli("unblock", netnstest.AddrB); err != nil {
				t.Fatalf("unblock: %v %s", err, out)
			}
			hping(t, p.B, "--udp", "-c", "1", "-p", "1", netnstest.AddrA)
			waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
			hping(t, p.B, "--udp", "-c", "1", "-p", "7", netnstest.AddrA)
			waitCounter(t, d, "corroborated", 2)
		})
	}
}

// dropCount is the packets counted by chain's drop rule that starts with
// match (the plain drop of a blocked set, without the sample rules).
func dropCount(t *testing.T, ns *netnstest.NS, chain, match string) int {
	t.Helper()
	out := ns.MustRun("nft", "list", "chain", "inet", "portsentry", chain)
	re := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(match) + `(?: fib daddr type local)? counter packets (\d+) bytes \d+ drop$`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no rule %q ... drop in chain %s:\n%s", match, chain, out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// waitCounter waits until the daemon's status counter name is at least n.
func waitCounter(t *testing.T, d *daemon, name string, n uint64) {
	t.Helper()
	var got uint64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got = daemonStatus(t, d).Counters[name]; got >= n {
			return
		}
	}
	t.Fatalf("status counter %s is %d, want at least %d\n%s", name, got, n, tail(d.out.String(), 20))
}

// BenchmarkEarlyDrop runs the report's early-drop row alone.
func BenchmarkEarlyDrop(b *testing.B) {
	netnstest.Require(b, "ncat")
	benchEarlyDrop(b, printRow)
}

// benchEarlyDrop: what a flood from a blocked source costs the host, with
// the drop in the input hook (after conntrack: a lookup, an entry made and
// freed for each packet) against the drop in prerouting at raw priority.
// trafgen sends SYNs from one blocked address to A's open port at a fixed
// 100k packets a second, and the machine's softirq time (/proc/stat, every
// CPU) is counted: on veth the receiving path, hooks and drops included,
// runs in softirq on the sender's CPU, which nothing else of the machine
// spends much of (its processes' time is not counted); a
// run of the same flood to a MAC that is not A's (dropped before any hook)
// is the baseline each cost is taken from. Rounds alternate, median of 3.
// Meanwhile a bystander connects to the open port.
func benchEarlyDrop(b *testing.B, add func(string, string, string)) {
	if _, err := exec.LookPath("trafgen"); err != nil {
		add("flood from a blocked source: CPU per dropped packet", "not measured: trafgen (netsniff-ng) not installed", "")
		return
	}
	const n, rate, blockedSrc = 500000, 100000, "10.201.0.66"
	p := netnstest.NewPair(b)
	serve(b, p.A, "0.0.0.0", "8080", "still-here")
	mac := strings.Fields(p.A.MustRun("cat", "/sys/class/net/veth-a/address"))[0]
	flood := func(da string) (busy time.Duration, answered, tried int) {
		cfg := filepath.Join(b.TempDir(), "syn.trafgen")
		os.WriteFile(cfg, []byte("{ eth(da="+da+"), ipv4(sa="+blockedSrc+", da="+netnstest.AddrA+"), tcp(sp=drnd(), dp=8080, syn) }\n"), 0o644)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() {
			for ctx.Err() == nil {
				tried++
				if canConnect(p.B, netnstest.AddrA, "8080", "still-here") {
					answered++
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
		before := softirqCPU(b)
		p.B.Run("timeout", "20", "trafgen", "--dev", "veth-b", "--conf", cfg, "--cpus", "1", "-n", strconv.Itoa(n), "--rate", strconv.Itoa(rate)+"pps")
		busy = softirqCPU(b) - before
		cancel()
		wg.Wait()
		return busy, answered, tried
	}
	install := func(late bool) {
		installIn(b, p.A, nft.Build(config.Default(), nft.Shape{LateDrop: late}))
		p.A.MustRun("nft", "add", "element", "inet", "portsentry", "blocked", "{ "+blockedSrc+" timeout 1h }")
	}
	var base, late, early []time.Duration
	var answered, tried int
	for range 3 {
		install(true)
		x, _, _ := flood("02:00:00:00:00:01")
		base = append(base, x)
		x, a1, t1 := flood(mac)
		late = append(late, x)
		install(false)
		x, a2, t2 := flood(mac)
		early = append(early, x)
		answered, tried = answered+a1+a2, tried+t1+t2
	}
	perPacket := func(xs []time.Duration) float64 {
		return float64(medianOf(xs)-medianOf(base)) / n
	}
	in, pre := perPacket(late), perPacket(early)
	add(fmt.Sprintf("flood from a blocked source, %dk SYN/s to an open port: CPU per dropped packet", rate/1000),
		fmt.Sprintf("input hook (after conntrack) %.0f ns, prerouting at raw priority %.0f ns: %.1fx less (softirq time over a baseline flood dropped before any hook, median of 3); the open port answered %d/%d connects meanwhile",
			in, pre, in/max(pre, 1), answered, tried), "the early drop costs less than the input hook's")
}

// softirqCPU is the machine's CPU time in softirq so far (/proc/stat,
// every CPU; sampled at each tick).
func softirqCPU(b *testing.B) time.Duration {
	return time.Duration(cpuTicks(b)[6]) * time.Second / 100 // USER_HZ
}

// cpuTicks is /proc/stat's line of every CPU: its time so far in each
// state, in ticks (user nice system idle iowait irq softirq steal ...).
func cpuTicks(tb testing.TB) []uint64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(strings.SplitN(string(data), "\n", 2)[0])
	ticks := make([]uint64, len(f)-1)
	for i, x := range f[1:] {
		ticks[i], _ = strconv.ParseUint(x, 10, 64)
	}
	return ticks
}

func medianOf(xs []time.Duration) time.Duration {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
