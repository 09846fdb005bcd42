package e2e

import (
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// routed.block: A routes to D, and forwards a DNAT'd port of its own to D
// (a container's published port, say). A blocked source never reaches the
// DNAT'd port: it is addressed to A, and blocked sources are dropped before
// conntrack and DNAT (prerouting, raw priority) when their packets are for
// A. Without the option the blocked source still reaches D itself, routed
// through A; with it, it cannot. routed.watch: a probe of a tripwire port
// on D, through A, blocks the prober.
func TestRoutedProtection(t *testing.T) {
	netnstest.Require(t, "ncat", "hping3")
	for _, tc := range []struct {
		name     string
		yaml     string
		reachesD bool
	}{
		{"off", "", true},
		{"on", "routed: {block: true, watch: true}\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := netnstest.NewPair(t)
			dns := netnstest.New(t, "psD")
			p.A.MustRun("ip", "link", "add", "veth-d", "type", "veth", "peer", "name", "veth-da", "netns", dns.Name)
			p.A.MustRun("ip", "addr", "add", "10.201.204.1/24", "dev", "veth-d")
			p.A.MustRun("ip", "link", "set", "veth-d", "up")
			dns.MustRun("ip", "addr", "add", "10.201.204.2/24", "dev", "veth-da")
			dns.MustRun("ip", "link", "set", "veth-da", "up")
			dns.MustRun("ip", "route", "add", "default", "via", "10.201.204.1")
			p.B.MustRun("ip", "route", "add", "10.201.204.0/24", "via", netnstest.AddrA)
			p.A.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=1")
			p.A.MustRun("nft", "add table ip nat; add chain ip nat pre { type nat hook prerouting priority dstnat; }; add rule ip nat pre tcp dport 9090 dnat to 10.201.204.2:8080")
			serve(t, dns, "10.201.204.2", "8080", "inside-D")

			d := startDaemon(t, p.A, tc.yaml)
			if !canConnect(p.B, netnstest.AddrA, "9090", "inside-D") {
				t.Fatal("B cannot reach D through A's DNAT before any block")
			}
			if !canConnect(p.B, "10.201.204.2", "8080", "inside-D") {
				t.Fatal("B cannot reach D routed through A before any block")
			}
			if out, err := d.cli("block", netnstest.AddrB); err != nil {
				t.Fatalf("block: %v %s", err, out)
			}
			if canConnect(p.B, netnstest.AddrA, "9090", "inside-D") {
				t.Error("blocked B reaches D through A's DNAT'd port")
			}
			if got := canConnect(p.B, "10.201.204.2", "8080", "inside-D"); got != tc.reachesD {
				t.Errorf("blocked B reaches D routed through A: %v, want %v", got, tc.reachesD)
			}
			if tc.name != "on" {
				return
			}
			// routed.watch: C probes a tripwire port of D through A.
			c := client(t, p.A)
			c.MustRun("ip", "route", "add", "10.201.204.0/24", "via", "10.201.203.1")
			hping(t, c, "-S", "-c", "1", "-p", "31337", "10.201.204.2")
			waitBlocked(t, p.A, "blocked", "10.201.203.2", 5*time.Second)
		})
	}
}
