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
// The ports answered are logged, not bounded: in NFLOG mode the kernel
// answers each probe before the daemon sees its copy, and nmap sends in
// bursts (30 to 135 ports answered here without any flood, three runs);
// in NFQUEUE mode a flood fills the queue past what the daemon verdicts,
// and the kernel lets the rest through (fail-open): 0 to 400 here. The
// kernel's own first strike closes both windows.
func TestSpoofedFloodDoesNotHideAScanner(t *testing.T) {
	netnstest.Require(t, "nmap", "hping3")
	for _, c := range []struct {
		name, yaml string
		fill       int // spoofed blocks to wait for before the scan
	}{
		{"nflog flood", "", 0},
		{"nflog flood and sets full", "block: {set_size: 150}\n", 150},
		{"nfqueue flood", "capture: {mode: nfqueue}\n", 0},
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
