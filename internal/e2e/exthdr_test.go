package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/control"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// craftScript sends one crafted probe with scapy, on the wire (sendp), so
// that nothing in the sender's stack rewrites it: argv is the interface,
// the destination MAC, and the variant.
const craftScript = `
import functools, sys
from scapy.all import Ether, IP, IPv6, IPv6ExtHdrDestOpt, HBHOptUnknown, IPOption_NOP, TCP, UDP, sendp, conf
conf.verb = 0
iface, mac, variant = sys.argv[1:4]
v4 = IP(src="10.201.0.2", dst="10.201.0.1")
v6 = IPv6(src="fd00:201::2", dst="fd00:201::1")
syn = TCP(sport=40000, dport=1, flags="S")
def dest_opts(n):
    # n headers of 8 bytes each (scapy pads them with a PadN of 4).
    return [IPv6ExtHdrDestOpt() for _ in range(n)]
def big_dest_opts():
    # One 1024-byte header: unknown options the receiver skips (type 0x1e,
    # action 00), no more than Linux accepts (8 options, padding under 8).
    opts = [HBHOptUnknown(otype=0x1e, optdata=b"\0" * 255) for _ in range(3)]
    opts.append(HBHOptUnknown(otype=0x1e, optdata=b"\0" * 249))
    return [IPv6ExtHdrDestOpt(options=opts)]
def chain(ip, exts, l4):
    return functools.reduce(lambda a, b: a / b, [ip] + exts + [l4])
pkt = {
    "v6_dest17": lambda: chain(v6, dest_opts(17), syn),
    "v6_dest60": lambda: chain(v6, dest_opts(60), syn),
    "v6_dest130": lambda: chain(v6, dest_opts(130), syn),
    "v6_dest1k": lambda: chain(v6, big_dest_opts(), syn),
    "v6_dest1k_udp": lambda: chain(v6, big_dest_opts(), UDP(sport=40000, dport=1)),
    "v4_options": lambda: IP(src="10.201.0.2", dst="10.201.0.1", options=[IPOption_NOP()] * 40) / syn,
}[variant]()
sendp(Ether(dst=mac) / pkt, iface=iface)
print(len(pkt))
`

var (
	scapyOnce sync.Once
	scapyPy   string
	scapyErr  error
)

// scapyPython is a Python that imports scapy (Debian's python3-scapy is
// for /usr/bin/python3, which another python3 on PATH may shadow).
func scapyPython(t testing.TB) string {
	t.Helper()
	netnstest.Require(t)
	scapyOnce.Do(func() {
		scapyErr = fmt.Errorf("no python3 with scapy (make deps-test installs python3-scapy)")
		for _, py := range []string{"python3", "/usr/bin/python3"} {
			if err := exec.Command("timeout", "60", py, "-c", "import scapy.all").Run(); err == nil {
				scapyPy, scapyErr = py, nil
				return
			}
		}
	})
	if scapyErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(scapyErr)
		}
		t.Skipf("SKIPPING PRIVILEGED TEST: %v", scapyErr)
	}
	return scapyPy
}

// A probe cannot hide behind IPv6 extension headers (nor IPv4 options):
// whether the daemon reads its transport header (17 or 60 destination
// options headers, within the copy) or not (130 of them, or one of 1 KB:
// past the 1024 bytes NFLOG copies), its source ends up blocked. Where the
// transport header was not read, the log prefix tells the rule, and the
// line says "unknown-flags" (or UDP) and port 0.
func TestExtensionHeadersDoNotHideProbes(t *testing.T) {
	py := scapyPython(t)
	script := filepath.Join(t.TempDir(), "craft.py")
	if err := os.WriteFile(script, []byte(craftScript), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		variant string
		v4      bool
		line    string // the probe's attackalert line, after the host
	}{
		{"v6_dest17", false, "to TCP port: 1 from TCP port: 40000"},
		{"v6_dest60", false, "to TCP port: 1 from TCP port: 40000"},
		{"v6_dest130", false, "to TCP port: 0 from TCP port: 0"},
		{"v6_dest1k", false, "to TCP port: 0 from TCP port: 0"},
		{"v6_dest1k_udp", false, "to UDP port: 0 from UDP port: 0"},
		{"v4_options", true, "to TCP port: 1 from TCP port: 40000"},
	} {
		t.Run(tc.variant, func(t *testing.T) {
			p := netnstest.NewPair(t)
			d := startDaemon(t, p.A, "")
			mac := strings.TrimSpace(p.A.MustRun("cat", "/sys/class/net/"+p.IfA+"/address"))
			if out, err := p.B.Run("timeout", "60", py, script, "veth-b", mac, tc.variant); err != nil {
				t.Fatalf("scapy: %v", err)
			} else {
				t.Logf("sent %s: %s bytes of IP", tc.variant, strings.TrimSpace(out))
			}
			src, set := netnstest.Addr6B, "blocked6"
			if tc.v4 {
				src, set = netnstest.AddrB, "blocked"
			}
			waitBlocked(t, p.A, set, src, 5*time.Second)
			kind := "TCP SYN scan"
			switch {
			case strings.HasPrefix(tc.line, "to UDP"):
				kind = "UDP scan"
			case strings.Contains(tc.line, "port: 0"):
				kind = "TCP unknown-flags scan"
			}
			d.waitLog(fmt.Sprintf("attackalert: %s from host %s/%s %s", kind, src, src, tc.line), 5*time.Second)
			out, err := d.cli("status", "--json")
			var st control.Status
			if err == nil {
				err = json.Unmarshal([]byte(out), &st)
			}
			if err != nil {
				t.Fatalf("status: %v\n%s", err, out)
			}
			undecoded := uint64(0)
			if strings.Contains(tc.line, "port: 0") {
				undecoded = 1
			}
			if st.Counters["malformed"] != 0 || st.Counters["undecoded_probes"] != undecoded {
				t.Errorf("malformed %d, undecoded probes %d; want 0, %d", st.Counters["malformed"], st.Counters["undecoded_probes"], undecoded)
			}
		})
	}
}
