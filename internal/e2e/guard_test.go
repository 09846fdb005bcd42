package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// waitLifted waits until addr is in neither set and returns how long it
// took.
func waitLifted(t testing.TB, ns *netnstest.NS, addr string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if netnstest.ElementLine(listSet(t, ns, "blocked"), addr) == "" && netnstest.ElementLine(listSet(t, ns, "blocked6"), addr) == "" {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s still blocked %s after it became protected", addr, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A spoofed-looking probe blocks B; then B becomes A's default gateway (a
// DHCP renewal, a failover): the block is lifted within a second (route
// changes are followed over rtnetlink, not read every 30 s), the log says
// why, and B's next probe is not blocked. The same for an IPv6 default
// route, a new local address, and one added while the daemon was stopped.
func TestNewGatewayIsUnblockedAtOnce(t *testing.T) {
	netnstest.Require(t, "hping3")
	p := netnstest.NewPair(t)
	d := startDaemon(t, p.A, "")

	hping(t, p.B, "-S", "-c", "1", "-p", "79", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
	p.A.MustRun("ip", "route", "add", "default", "via", netnstest.AddrB)
	took := waitLifted(t, p.A, netnstest.AddrB, time.Second)
	t.Logf("IPv4 default gateway: block lifted %v after the route was added", took.Round(time.Millisecond))
	d.waitLog(netnstest.AddrB+" is now protected (default gateway); its block is lifted", time.Second)

	// B probes again: protected, never blocked.
	hping(t, p.B, "-S", "-c", "1", "-p", "143", netnstest.AddrA)
	d.waitLog("Host "+netnstest.AddrB+" is protected (default gateway) and is never blocked", 5*time.Second)
	assertNotBlocked(t, p.A, netnstest.AddrB)

	// IPv6: a manual block, then the address becomes the default gateway.
	if out, err := d.cli("block", netnstest.Addr6B); err != nil {
		t.Fatalf("block: %v %s", err, out)
	}
	waitBlocked(t, p.A, "blocked6", netnstest.Addr6B, 5*time.Second)
	p.A.MustRun("ip", "-6", "route", "add", "default", "via", netnstest.Addr6B)
	took = waitLifted(t, p.A, netnstest.Addr6B, time.Second)
	t.Logf("IPv6 default gateway: block lifted %v after the route was added", took.Round(time.Millisecond))
	d.waitLog(netnstest.Addr6B+" is now protected (default gateway); its block is lifted", time.Second)

	// A new local address.
	const extra = "10.201.0.50"
	if out, err := d.cli("block", extra); err != nil {
		t.Fatalf("block: %v %s", err, out)
	}
	waitBlocked(t, p.A, "blocked", extra, 5*time.Second)
	p.A.MustRun("ip", "addr", "add", extra+"/24", "dev", p.IfA)
	took = waitLifted(t, p.A, extra, time.Second)
	t.Logf("new local address: block lifted %v after the address was added", took.Round(time.Millisecond))
	d.waitLog(extra+" is now protected (local address); its block is lifted", time.Second)

	// An address that became protected while the daemon was stopped: its
	// restored block is lifted at start.
	const later = "10.201.0.60"
	if out, err := d.cli("block", later); err != nil {
		t.Fatalf("block: %v %s", err, out)
	}
	waitBlocked(t, p.A, "blocked", later, 5*time.Second)
	d.stop()
	p.A.MustRun("ip", "addr", "add", later+"/24", "dev", p.IfA)
	d.start()
	waitLifted(t, p.A, later, time.Second)
	d.waitLog(later+" is now protected (local address); its block is lifted", time.Second)
}

// Zones are not part of an address: block fd00:201::9%veth-a blocks
// fd00:201::9, unblock with another zone lifts it, and a link-local
// default gateway given with a zone is refused as protected.
func TestZonesAreStripped(t *testing.T) {
	p := netnstest.NewPair(t)
	p.A.MustRun("ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", p.IfA)
	d := startDaemon(t, p.A, "")

	if out, err := d.cli("block", "fd00:201::9%"+p.IfA); err != nil || !strings.Contains(out, "blocked fd00:201::9") {
		t.Fatalf("block with a zone: %v %s", err, out)
	}
	if el := waitBlocked(t, p.A, "blocked6", "fd00:201::9", 5*time.Second); strings.Contains(el, "%") {
		t.Errorf("element with a zone: %q", el)
	}
	if out, err := d.cli("list"); err != nil || strings.Contains(out, "%") {
		t.Errorf("list shows a zone: %v\n%s", err, out)
	}
	// The ledger's record is lifted with the element (10.201.0.77 was
	// never blocked), so the watchdog, which puts back every block the
	// ledger holds within 5 s, does not restore it.
	if out, err := d.cli("unblock", "fd00:201::9%x", "10.201.0.77"); err != nil || !strings.Contains(out, "(1 were blocked)") {
		t.Fatalf("unblock with another zone: %v %s", err, out)
	}
	assertNotBlocked(t, p.A, "fd00:201::9")
	time.Sleep(6 * time.Second)
	assertNotBlocked(t, p.A, "fd00:201::9")

	for _, a := range []string{"fe80::1%" + p.IfA, "fe80::1%x", "fe80::1"} {
		if out, err := d.cli("block", a); err == nil || !strings.Contains(out, "protected (default gateway)") {
			t.Errorf("block %s: %v %s", a, err, out)
		}
	}
	assertNotBlocked(t, p.A, "fe80::1")
}
