package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// Every nmap scan type, IPv4 and IPv6, ends with the scanner in
// blocked/blocked6 with the configured timeout, and the attackalert line
// names the scan type: blocked by the kernel's first strike (the default),
// and by the daemon when first_strike is off.
func TestScanTypesAreBlocked(t *testing.T) {
	netnstest.Require(t, "nmap")
	for _, tc := range []struct {
		name, kind string
		args       []string
		v6         bool
	}{
		{"SYN", "TCP SYN scan", []string{"-sS", "-p", "1,11,15,79"}, false},
		{"connect", "TCP connect", []string{"-sT", "-p", "1,11,15,79"}, false},
		{"FIN", "TCP FIN scan", []string{"-sF", "-p", "1,11,15,79"}, false},
		{"NULL", "TCP NULL scan", []string{"-sN", "-p", "1,11,15,79"}, false},
		{"XMAS", "TCP XMAS scan", []string{"-sX", "-p", "1,11,15,79"}, false},
		{"UDP", "UDP scan", []string{"-sU", "-p", "1,7,9,69"}, false},
		{"SYN6", "TCP SYN scan", []string{"-6", "-sS", "-p", "1,11,15,79"}, true},
		{"UDP6", "UDP scan", []string{"-6", "-sU", "-p", "1,7,9,69"}, true},
	} {
		for _, mode := range []struct{ name, yaml, by, origin string }{
			{"kernel", "", " by the kernel", "kernel"},
			{"daemon", "  first_strike: false\n", "", "detect"},
		} {
			t.Run(tc.name+"/"+mode.name, func(t *testing.T) {
				t.Parallel()
				p := netnstest.NewPair(t)
				d := startDaemon(t, p.A, "block:\n  timeout: 2h\n"+mode.yaml)
				target, src, set := netnstest.AddrA, netnstest.AddrB, "blocked"
				if tc.v6 {
					target, src, set = netnstest.Addr6A, netnstest.Addr6B, "blocked6"
				}
				nmap(t, p.B, append(tc.args, target)...)
				el := waitBlocked(t, p.A, set, src, 5*time.Second)
				if !strings.Contains(el, "timeout 2h") {
					t.Errorf("element %q has no 2h timeout", el)
				}
				d.waitLog(fmt.Sprintf("attackalert: %s from host %s/%s to ", tc.kind, src, src), 5*time.Second)
				d.waitLog(fmt.Sprintf("attackalert: Host %s has been blocked via nftables set inet portsentry %s%s (timeout 2h0m0s)", src, set, mode.by), 5*time.Second)
				if out, err := d.cli("list"); err != nil || !strings.Contains(out, mode.origin) {
					t.Errorf("list (%v) does not show origin %s:\n%s", err, mode.origin, out)
				}
			})
		}
	}
}

// Sources in the ignore list never reach user space, and nothing blocks them.
func TestIgnoredSourceIsNeverBlocked(t *testing.T) {
	netnstest.Require(t, "nmap")
	p := netnstest.NewPair(t)
	d := startDaemon(t, p.A, "ignore: [10.201.0.0/24, fd00:201::/64]\n")
	nmap(t, p.B, "-sS", "-p", "1,11,15,79", netnstest.AddrA)
	nmap(t, p.B, "-6", "-sU", "-p", "1,7", netnstest.Addr6A)
	time.Sleep(300 * time.Millisecond)
	assertNotBlocked(t, p.A, netnstest.AddrB, netnstest.Addr6B)
	if strings.Contains(d.out.String(), "attackalert") {
		t.Errorf("ignored source produced alerts:\n%s", d.out)
	}
}

// Scans of unmonitored ports, and ACK scans of monitored ones, are no probes.
func TestUnmonitoredPortsAndACKScanBlockNothing(t *testing.T) {
	netnstest.Require(t, "nmap", "hping3")
	p := netnstest.NewPair(t)
	d := startDaemon(t, p.A, "")
	nmap(t, p.B, "-sS", "-p", "22,80,443,8080", netnstest.AddrA)
	nmap(t, p.B, "-sA", "-p", "1,11,15,79,111", netnstest.AddrA)
	hping(t, p.B, "-R", "-c", "2", "-i", "u10000", "-p", "1", netnstest.AddrA)
	time.Sleep(300 * time.Millisecond)
	assertNotBlocked(t, p.A, netnstest.AddrB)
	if strings.Contains(d.out.String(), "attackalert") {
		t.Errorf("unmonitored ports / ACK scan produced alerts:\n%s", d.out)
	}
}

// The host's own outbound connection from local port 32771 (a monitored
// port inside the ephemeral range) gets its replies and blocks nothing.
func TestOutboundFromMonitoredPortIsNotAProbe(t *testing.T) {
	netnstest.Require(t, "ncat")
	p := netnstest.NewPair(t)
	d := startDaemon(t, p.A, "")
	serve(t, p.B, netnstest.AddrB, "8080", "hello-from-B")
	for i := 0; i < 3; i++ {
		out, err := p.A.Run("timeout", "10", "ncat", "-p", "32771", "--recv-only", netnstest.AddrB, "8080")
		if err != nil || !strings.Contains(out, "hello-from-B") {
			t.Fatalf("connection from local port 32771 got no reply: %v %q", err, out)
		}
		time.Sleep(1100 * time.Millisecond) // let TIME_WAIT ports be reused cleanly
	}
	assertNotBlocked(t, p.A, netnstest.AddrB)
	if strings.Contains(d.out.String(), "attackalert") {
		t.Errorf("replies to our own connection produced alerts:\n%s", d.out)
	}
}

// On a host that untracks its traffic (notrack, as busy DNS servers and
// load balancers do), TCP probes are still seen and blocked: the TCP rule
// needs no conntrack state.
func TestUntrackedHostSeesTCPProbes(t *testing.T) {
	netnstest.Require(t, "nmap")
	for _, scan := range []string{"-sS", "-sF"} {
		t.Run(scan, func(t *testing.T) {
			p := netnstest.NewPair(t)
			p.A.MustRun("nft", "add table inet untracked { chain pre { type filter hook prerouting priority raw; notrack; }; chain out { type filter hook output priority raw; notrack; }; }")
			startDaemon(t, p.A, "")
			nmap(t, p.B, scan, "-p", "1,11", netnstest.AddrA)
			waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
		})
	}
}

// SCAN_TRIGGER 2: the first probe is logged but not blocked; the second blocks.
func TestTriggerTwo(t *testing.T) {
	netnstest.Require(t, "hping3")
	p := netnstest.NewPair(t)
	d := startDaemon(t, p.A, "detect: {scan_trigger: 2}\n")
	hping(t, p.B, "-S", "-c", "1", "-p", "1", netnstest.AddrA)
	d.waitLog("attackalert: TCP SYN scan from host 10.201.0.2/10.201.0.2 to TCP port: 1 ", 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	assertNotBlocked(t, p.A, netnstest.AddrB)
	hping(t, p.B, "-S", "-c", "1", "-p", "11", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
	d.waitLog("attackalert: TCP SYN scan from host 10.201.0.2/10.201.0.2 to TCP port: 11 ", 5*time.Second)
}

// A block with a short timeout expires and the source can connect again.
func TestBlockExpires(t *testing.T) {
	netnstest.Require(t, "hping3", "ncat")
	p := netnstest.NewPair(t)
	startDaemon(t, p.A, "block: {timeout: 2s}\n")
	serve(t, p.A, netnstest.AddrA, "8080", "hello-from-A")
	connect := func() bool { return canConnect(p.B, netnstest.AddrA, "8080", "hello-from-A") }
	if !connect() {
		t.Fatal("B cannot connect before any block")
	}
	// B is a peer now: 3 tripwire ports block it.
	nmap(t, p.B, "-sS", "-p", "1,11,15", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
	if connect() {
		t.Fatal("B still connects while blocked")
	}
	time.Sleep(2500 * time.Millisecond)
	assertNotBlocked(t, p.A, netnstest.AddrB)
	if !connect() {
		t.Fatal("B cannot connect after the block expired")
	}
}

// Blocks survive a daemon restart: the table stays, and the reinstall on
// start keeps the elements.
func TestRestartKeepsBlocks(t *testing.T) {
	netnstest.Require(t, "hping3", "ncat")
	p := netnstest.NewPair(t)
	d := startDaemon(t, p.A, "")
	serve(t, p.A, netnstest.AddrA, "8080", "hello-from-A")
	if !canConnect(p.B, netnstest.AddrA, "8080", "hello-from-A") {
		t.Fatal("B cannot connect before any block")
	}
	// B completed a connection: it is a peer, blocked on 3 tripwire ports
	// (one probe, which anyone could forge, no longer blocks it).
	nmap(t, p.B, "-sS", "-p", "1,11,15", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
	d.stop()
	if netnstest.ElementLine(listSet(t, p.A, "blocked"), netnstest.AddrB) == "" {
		t.Fatal("block gone after the daemon stopped")
	}
	d.start()
	el := netnstest.ElementLine(listSet(t, p.A, "blocked"), netnstest.AddrB)
	if el == "" || !strings.Contains(el, "expires") {
		t.Fatalf("block gone after restart: %q", el)
	}
	// And it still blocks: everything from B is dropped in the kernel.
	if canConnect(p.B, netnstest.AddrA, "8080", "hello-from-A") {
		t.Fatal("B still reaches A after the restart")
	}
}

// serve runs a TCP server in ns that greets every client with msg, until
// the test ends.
func serve(t testing.TB, ns *netnstest.NS, addr, port, msg string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	server := ns.Command(ctx, "ncat", "-l", "-k", addr, port, "--sh-exec", "echo "+msg)
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); server.Wait() })
	waitListening(t, ns, port)
}

// canConnect reports whether a client in ns gets msg from addr:port.
func canConnect(ns *netnstest.NS, addr, port, msg string) bool {
	out, err := ns.Run("timeout", "3", "ncat", "-w", "1", "--recv-only", addr, port)
	return err == nil && strings.Contains(out, msg)
}

func waitListening(t testing.TB, ns *netnstest.NS, port string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		out, _ := ns.Run("ss", "-Hltn", "sport", "= :"+port)
		if strings.TrimSpace(out) != "" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s in %s", port, ns.Name)
}
