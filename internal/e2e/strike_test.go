package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// gatewayAddr is A's default gateway in withGateway.
const gatewayAddr = "10.201.202.254"

// withGateway gives namespace A a default gateway (gatewayAddr, in a
// namespace of its own) and lets packets spoofed from it in through
// veth-a, as on a router with loose reverse-path filtering, so that a
// scan spoofed from the gateway's address reaches the rules.
func withGateway(t *testing.T, p *netnstest.Pair) {
	t.Helper()
	gw := netnstest.New(t, "psG")
	p.A.MustRun("ip", "link", "add", "veth-gw", "type", "veth", "peer", "name", "veth-up", "netns", gw.Name)
	p.A.MustRun("ip", "addr", "add", "10.201.202.1/24", "dev", "veth-gw")
	p.A.MustRun("ip", "link", "set", "veth-gw", "up")
	gw.MustRun("ip", "addr", "add", gatewayAddr+"/24", "dev", "veth-up")
	gw.MustRun("ip", "link", "set", "veth-up", "up")
	p.A.MustRun("ip", "route", "add", "default", "via", gatewayAddr)
	p.A.MustRun("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.veth-a.rp_filter=0")
}

// The kernel blocks on its own: with the daemon frozen (SIGSTOP), an nmap
// SYN scan leaves the scanner in blocked, and a scan spoofed from the
// host's gateway does not block the gateway (the kernel's copy of the
// guard rails). Once thawed, the daemon follows: the scanner's block is
// in list with its scan type, with its lines and history line.
func TestFirstStrikeWhileDaemonFrozen(t *testing.T) {
	netnstest.Require(t, "nmap", "hping3")
	p := netnstest.NewPair(t)
	withGateway(t, p)
	d := startDaemon(t, p.A, "")
	if !strings.Contains(listSet(t, p.A, "protected"), gatewayAddr) {
		t.Fatalf("the gateway is not in set protected:\n%s", listSet(t, p.A, "protected"))
	}
	if err := d.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			d.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(thaw)

	// Spoofed from the gateway (hping3 -a: nmap -S finds no route for a
	// source that is not on the scanner's interface).
	for _, port := range []string{"1", "11", "79"} {
		hping(t, p.B, "-a", gatewayAddr, "-S", "-c", "1", "-p", port, netnstest.AddrA)
	}
	nmap(t, p.B, "-sS", "-p", "1,11,15,79", netnstest.AddrA)
	el := waitBlocked(t, p.A, "blocked", netnstest.AddrB, 2*time.Second)
	if !strings.Contains(el, "timeout 1h") {
		t.Errorf("the kernel's element %q lacks block.timeout", el)
	}
	assertNotBlocked(t, p.A, gatewayAddr)

	thaw()
	d.waitLog("attackalert: TCP SYN scan from host 10.201.0.2/10.201.0.2 to TCP port: ", 5*time.Second)
	d.waitLog("attackalert: Host 10.201.0.2 has been blocked via nftables set inet portsentry blocked by the kernel (timeout 1h0m0s)", 5*time.Second)
	d.waitLog("attackalert: Host 10.201.202.254 is protected (default gateway) and is never blocked", 5*time.Second)
	out, err := d.cli("list")
	if err != nil || !regexp.MustCompile(`10\.201\.0\.2 .*kernel`).MatchString(out) || !strings.Contains(out, "SYN") {
		t.Errorf("list (%v) lacks the scanner's block by the kernel with its scan type:\n%s", err, out)
	}
	waitFile(t, filepath.Join(filepath.Dir(d.config), "state", "portsentry.history"), "Host: 10.201.0.2/10.201.0.2 Port: ", 5*time.Second)
	assertNotBlocked(t, p.A, gatewayAddr)
}

// Killed (SIGKILL) before it could read the probe's copy, the daemon finds
// the kernel's block at its next start: it is in list, adopted, with its
// remaining time, and followed (the blocked line).
func TestFirstStrikeWhileDaemonDeadIsAdopted(t *testing.T) {
	netnstest.Require(t, "hping3")
	p := netnstest.NewPair(t)
	d := startDaemon(t, p.A, "block: {timeout: 2h}\n")
	d.cmd.Process.Kill()
	<-d.done
	d.cmd = nil
	hping(t, p.B, "-S", "-c", "1", "-p", "79", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 2*time.Second)
	d.start()
	out, err := d.cli("list")
	if err != nil || !regexp.MustCompile(`10\.201\.0\.2 .*kernel`).MatchString(out) || !regexp.MustCompile(`1h59m|2h0m|1h5\d`).MatchString(out) {
		t.Errorf("list (%v) lacks the adopted block with its remaining time:\n%s", err, out)
	}
	d.waitLog("Adopted 1 blocks the kernel made", 5*time.Second)
	d.waitLog("attackalert: Host 10.201.0.2 has been blocked via nftables set inet portsentry blocked by the kernel", 5*time.Second)
}

// A random-source flood (hping3 --rand-source) with the kernel striking:
// the set grows within block.max_per_second (kernel and daemon together),
// and the host still serves a client.
func TestFirstStrikeRateCapUnderRandomSourceFlood(t *testing.T) {
	netnstest.Require(t, "hping3", "ncat")
	p := netnstest.NewPair(t)
	d := startDaemon(t, p.A, "block: {max_per_second: 10}\n")
	srv := p.A.Command(t.Context(), "ncat", "-l", "-k", "-p", "8080", "-c", "echo hello")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	start := time.Now()
	// 4000 SYNs at 1 per 500 µs from random sources, into namespace A only.
	hping(t, p.B, "--rand-source", "-S", "-p", "1", "-i", "u500", "-c", "4000", "-q", netnstest.AddrA)
	elapsed := time.Since(start)
	time.Sleep(300 * time.Millisecond)
	n := strings.Count(listSet(t, p.A, "blocked"), "expires")
	// The kernel's burst (5) and the daemon's (10), then 10/s.
	limit := 5 + 10 + int(elapsed.Seconds()*10) + 2
	if n == 0 || n > limit {
		t.Fatalf("%d blocks after %s of flood; want 1..%d (rate cap 10/s)", n, elapsed, limit)
	}
	got, err := p.B.Run("ncat", "--recv-only", "-w", "2", netnstest.AddrA, "8080")
	if err != nil || !strings.Contains(got, "hello") {
		t.Errorf("the host no longer serves its client after the flood: %q %v", got, err)
	}
	if !strings.Contains(d.out.String(), "has been blocked via nftables set inet portsentry blocked by the kernel") {
		t.Errorf("no block by the kernel in the flood:\n%s", d.out)
	}
	t.Logf("flood of %s: %d blocks (cap %d)", elapsed, n, limit)
}

// waitFile waits until file contains s.
func waitFile(t *testing.T, file, s string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		data, _ := os.ReadFile(file)
		if strings.Contains(string(data), s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s lacks %q: %q", file, s, data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
