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
