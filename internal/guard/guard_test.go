package guard

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func TestProtectedSources(t *testing.T) {
	dir := t.TempDir()
	w := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	src := Sources{
		ResolvConf: w("resolv.conf", "# x\nsearch example\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nnameserver 2001:db8::53\n"),
		// default route via 10.201.0.254 (fe00c90a little-endian), plus a non-default route
		Route: w("route", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"+
			"veth-a\t00000000\tFE00C90A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"+
			"veth-a\t0000C90A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"),
		Route6: w("ipv6_route", "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000201000000000000000000000254 00000400 00000001 00000000 00000003 veth-a\n"+
			"fd000201000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 veth-a\n"),
		LocalAddrs: func() ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("10.201.0.1"), netip.MustParseAddr("::ffff:10.201.0.7")}, nil
		},
	}
	g := New(src, []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")})
	if err := g.Refresh(); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{
		"10.201.0.254":  "default gateway",
		"fd00:201::254": "default gateway",
		"192.0.2.53":    "nameserver",
		"fe80::1":       "nameserver",
		"2001:db8::53":  "nameserver",
		"10.201.0.1":    "local address",
		"10.201.0.7":    "local address",
		"198.51.100.77": "never_block 198.51.100.0/24",
		"10.201.0.2":    "",
		"fd00:201::2":   "",
		"203.0.113.1":   "",
	} {
		why, ok := g.Protected(netip.MustParseAddr(addr))
		if ok != (want != "") || why != want {
			t.Errorf("%s: protected=%v %q, want %q", addr, ok, why, want)
		}
	}
}

func TestMissingResolvConfIsNoError(t *testing.T) {
	g := New(Sources{ResolvConf: "/nonexistent", Route: "/proc/net/route", Route6: "/proc/net/ipv6_route"}, nil)
	if err := g.Refresh(); err != nil {
		t.Fatal(err)
	}
}
