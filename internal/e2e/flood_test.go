package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/control"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// A spoofed flood must not hide a real scanner: during hping3
// --rand-source --flood at the generator's full rate, an nmap SYN scan of
// 1024 ports from a real source is blocked within a second of its start;
// the same when the sets are already full of the flood's spoofed blocks,
// and in NFQUEUE mode. Before admission by evidence the scanner was never
// blocked: 1024 of 1024 ports answered.
//
// In NFLOG mode (the default, with the kernel's first strike) the scanner
// sees at most 20 ports answered: the flood uses up the first strike's cap
// for sources seen once, but the scanner's next probe strikes within the
// cap for sources seen a moment ago, and the daemon keeps room in the sets
// (Headroom). Before the first strike, the kernel answered each probe
// until the daemon's element landed: 30 to 135 ports here, three runs. In
// NFQUEUE mode (no first strike) the answered ports are logged, not
// bounded: a flood fills the queue past what the daemon verdicts, and the
// kernel lets the rest through (fail-open): 0 to 714 here.
//
// With the sets full of the flood's blocks the scanner is blocked within
// the second, but the ports it learns are logged, not bounded: the
// flood's own strikes (sources seen once, within `strike`) take the few
// free places as fast as the ledger frees them, so the scanner's strike
// often finds the set full, and the daemon's block lands after nmap's
// 1024 probes (sent in about 0.1 s) are answered. Measured, the same on
// the code before this round and after it: 0 in 3 of 5 runs, 70 to 1024 in
// the others. A place kept for strikes of sources seen more than once (a
// set of their own) would bound it; for forged pairs and a full set, see
// TestForgedPairsDoNotHideAScanner, which is bounded.
func TestSpoofedFloodDoesNotHideAScanner(t *testing.T) {
	netnstest.Require(t, "nmap", "hping3")
	for _, c := range []struct {
		name, yaml string
		fill       int // spoofed blocks to wait for before the scan
		bound      bool
	}{
		{"nflog flood", "", 0, true},
		{"nflog flood and sets full", "block: {set_size: 150}\n", 150 - 150/64, false},
		{"nfqueue flood", "capture: {mode: nfqueue}\n", 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := netnstest.NewPair(t)
			d := startDaemon(t, p.A, "tcp: {ports: [\"1-1024\"]}\n"+c.yaml)
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			flood := p.B.Command(ctx, "timeout", "30", "hping3", "--rand-source", "-S", "--flood", "-p", "1", netnstest.AddrA)
			if err := flood.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cancel(); flood.Wait() }()
			for deadline := time.Now().Add(20 * time.Second); c.fill > 0 && countBlocked(d) < c.fill; time.Sleep(200 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the flood filled %d of %d places in 20 s", countBlocked(d), c.fill)
				}
			}
			time.Sleep(time.Second) // the flood at full rate
			took, answered := scanUntilBlocked(t, p, 15*time.Second)
			t.Logf("%s: scanner blocked after %s, %d of 1024 ports answered", c.name, took.Round(time.Millisecond), answered)
			if took == 0 {
				t.Fatalf("the scanner was not blocked within 15 s of its scan's start; %d ports answered\n%s", answered, tail(d.out.String(), 20))
			}
			if took > time.Second {
				t.Errorf("the scanner was blocked %s after its scan started, want within 1 s", took.Round(time.Millisecond))
			}
			if c.bound && answered > 20 {
				t.Errorf("the scanner saw %d ports answered, want at most 20", answered)
			}
		})
	}
}

// countBlocked is the daemon's count of blocks in force.
func countBlocked(d *daemon) int {
	out, err := d.cli("status", "--json")
	if err != nil {
		return 0
	}
	var st control.Status
	if json.Unmarshal([]byte(out), &st) != nil {
		return 0
	}
	return st.SetSizes["blocked"]
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
