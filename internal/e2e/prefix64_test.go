package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// rotateScript sends one SYN to each tripwire port given, each from a new
// address of fd00:201::/64 (scapy): a scanner rotating its source inside
// its /64. Bounded: the ports given, once each.
const rotateScript = `
import sys
from scapy.all import IPv6, TCP, send, conf
conf.verb = 0
dst = sys.argv[1]
for i, port in enumerate(sys.argv[2:]):
    send(IPv6(src="fd00:201::%x" % (0x1000 + i), dst=dst) / TCP(sport=40002, dport=int(port), flags="S"), count=1)
`

// The tests' only /64, fd00:201::/64, holds A's own address: a scanner
// rotating inside it is counted by /64, and the /64 is never blocked
// (each address is, as a scanner of its own).
func TestProtectedPrefixIsNeverBlocked(t *testing.T) {
	py := scapyPython(t)
	p := netnstest.NewPair(t)
	d := startDaemon(t, p.A, "")
	p.B.MustRun("timeout", "60", py, "-c", rotateScript, netnstest.Addr6A, "1", "11", "15", "79", "111", "119")
	d.waitLog("its /64 is not blocked: fd00:201::/64 holds protected fd00:201::1/128", 5*time.Second)
	if out := listSet(t, p.A, "blocked6_64"); strings.Contains(out, "elements") {
		t.Errorf("the protected /64 was blocked:\n%s", out)
	}
	waitBlocked(t, p.A, "blocked6", "fd00:201::1003", 5*time.Second)
}

// rotateSequential sends one SYN to each port 1-1024 of dst in order,
// each from a new address of fd00:201::/64, out of iface (scapy, one
// socket): a scanner rotating its source inside its /64, as in the attack
// review (1015 of 1024 ports answered before sources were counted by /64).
const rotateSequential = `
import sys
from scapy.all import Ether, IPv6, TCP, sendp, conf
conf.verb = 0
dst, iface, mac = sys.argv[1:4]
pkts = [Ether(dst=mac) / IPv6(src="fd00:201::%x" % (0x1000 + port), dst=dst) / TCP(sport=40003, dport=port, flags="S") for port in range(1, 1025)]
sendp(pkts, iface=iface, inter=0.001)
`

// linkLocalPair is a pair whose host A holds no address of fd00:201::/64
// (the one /64 the tests may use): only fe80::a, with a route to the /64
// via B's fe80::b. A scanner inside fd00:201::/64 is then one whose /64
// holds nothing A protects. A answers from the address probed (fe80::a).
func linkLocalPair(t *testing.T) *netnstest.Pair {
	t.Helper()
	p := netnstest.NewPair(t)
	p.A.MustRun("ip", "addr", "del", netnstest.Addr6A+"/64", "dev", "veth-a")
	p.A.MustRun("ip", "addr", "add", "fe80::a/64", "dev", "veth-a", "nodad")
	p.B.MustRun("ip", "addr", "add", "fe80::b/64", "dev", "veth-b", "nodad")
	p.A.MustRun("ip", "-6", "route", "add", "fd00:201::/64", "via", "fe80::b", "dev", "veth-a")
	return p
}

// E1: a scanner that takes a new address of its /64 for each probe of
// ports 1-1024 learns at most 20 of them: its /64 is blocked once
// detect.prefix6_sources of its addresses probed a tripwire, and a peer
// of that /64 (B's own fd00:201::2, with a session to A) keeps its session.
func TestRotatingScannerIsBlockedByItsPrefix(t *testing.T) {
	py := scapyPython(t)
	netnstest.Require(t, "ncat")
	p := linkLocalPair(t)
	d := startDaemon(t, p.A, "")
	echoServer(t, p, 8080)
	peer := dialFrom(t, p, netnstest.Addr6B, "fe80::a%veth-b", 8080)
	if !peer.echo("before") {
		t.Fatal("the peer's session does not work before the scan")
	}
	time.Sleep(500 * time.Millisecond) // the peer in peers6
	answers := countAnswers(t, p.A, "fd00:201::/64")
	mac := strings.Fields(p.A.MustRun("ip", "-br", "link", "show", "veth-a"))[2]
	p.B.MustRun("timeout", "120", py, "-c", rotateSequential, "fe80::a", "veth-b", mac)
	time.Sleep(time.Second) // answers on their way
	answered := answers()
	t.Logf("the rotating scanner saw %d of 1024 ports answered", answered)
	if answered > 20 {
		t.Errorf("the rotating scanner saw %d ports answered, want at most 20\n%s", answered, tail(d.out.String(), 20))
	}
	waitBlocked(t, p.A, "blocked6_64", "fd00:201::", 5*time.Second)
	if !peer.echo("after") {
		t.Error("the peer's session inside the blocked /64 died")
	}
	if out, err := d.cli("list"); err != nil || !strings.Contains(out, "fd00:201::/64") {
		t.Errorf("list does not show the /64 (%v):\n%s", err, out)
	}
	if out, err := d.cli("unblock", "fd00:201::/64"); err != nil {
		t.Fatalf("unblock fd00:201::/64: %v %s", err, out)
	}
	d.waitLog("attackalert: Prefix fd00:201::/64 has been unblocked by an administrator", 5*time.Second)
	if out := listSet(t, p.A, "blocked6_64"); strings.Contains(out, "elements") {
		t.Errorf("unblock left the /64 in blocked6_64:\n%s", out)
	}
}
