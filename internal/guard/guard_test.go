package guard

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
		ResolvConf: []string{w("resolv.conf", "# x\nsearch example\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nnameserver 2001:db8::53\n")},
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
	g := New(Sources{ResolvConf: []string{"/nonexistent"}, Route: "/proc/net/route", Route6: "/proc/net/ipv6_route"}, nil)
	if err := g.Refresh(); err != nil {
		t.Fatal(err)
	}
}

// fixture writes files for a guard's sources in a temporary directory.
type fixture struct {
	t   *testing.T
	dir string
}

func newFixture(t *testing.T) *fixture { return &fixture{t, t.TempDir()} }

func (f *fixture) path(name string) string { return filepath.Join(f.dir, name) }

// write replaces the file by a rename, as resolvconf and NetworkManager do.
func (f *fixture) write(name, s string) string {
	f.t.Helper()
	p := f.path(name)
	if err := os.WriteFile(p+".tmp", []byte(s), 0o644); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		f.t.Fatal(err)
	}
	return p
}

const routeHeader = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"

// defaultRoute4 is a /proc/net/route line for a default route via gw.
func defaultRoute4(gw string) string {
	b := netip.MustParseAddr(gw).As4()
	return fmt.Sprintf("eth0\t00000000\t%02X%02X%02X%02X\t0003\t0\t0\t0\t00000000\t0\t0\t0\n", b[3], b[2], b[1], b[0])
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// Zones are not part of an address: a zoned address is protected when its
// address is, and what the guard lists and reports has no zone.
func TestZonesAreStripped(t *testing.T) {
	f := newFixture(t)
	src := Sources{
		ResolvConf: []string{f.write("resolv.conf", "nameserver fe80::53%eth0\n")},
		Route:      f.write("route", routeHeader),
		// ::/0 via fe80::1: ipv6_route gives no zone.
		Route6: f.write("ipv6_route", "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n"),
		LocalAddrs: func() ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("fe80::5%eth0")}, nil
		},
	}
	g := New(src, nil)
	if err := g.Refresh(); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{
		"fe80::1":      "default gateway",
		"fe80::1%eth0": "default gateway",
		"fe80::1%x":    "default gateway",
		"fe80::5":      "local address",
		"fe80::5%eth1": "local address",
		"fe80::53":     "nameserver",
		"fe80::53%2":   "nameserver",
	} {
		if why, ok := g.Protected(netip.MustParseAddr(addr)); !ok || why != want {
			t.Errorf("%s: protected=%v %q, want %q", addr, ok, why, want)
		}
	}
	for a := range g.List() {
		if strings.Contains(a, "%") {
			t.Errorf("List has a zone: %s", a)
		}
	}
	if got := Canonical(netip.MustParseAddr("::ffff:10.0.0.1")); got != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("Canonical(::ffff:10.0.0.1) = %s", got)
	}
}

// Under systemd-resolved /etc/resolv.conf names only the stub; the upstream
// servers are in /run/systemd/resolve/resolv.conf. Both are read, and the
// defaults name both.
func TestBothResolvConfs(t *testing.T) {
	f := newFixture(t)
	src := Sources{
		ResolvConf: []string{
			f.write("stub-resolv.conf", "# systemd-resolved stub\nnameserver 127.0.0.53\noptions edns0 trust-ad\n"),
			f.write("upstream.conf", "nameserver 192.0.2.1\nnameserver 2001:db8::1\n"),
			f.path("missing.conf"),
		},
		Route:      f.write("route", routeHeader),
		Route6:     f.write("ipv6_route", ""),
		LocalAddrs: func() ([]netip.Addr, error) { return nil, nil },
	}
	g := New(src, nil)
	if err := g.Refresh(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"127.0.0.53": "nameserver", "192.0.2.1": "nameserver", "2001:db8::1": "nameserver"}
	if got := g.List(); !maps.Equal(got, want) {
		t.Errorf("protected %v, want %v", got, want)
	}
	var def Sources
	def.defaults()
	if !slices.Equal(def.ResolvConf, []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"}) {
		t.Errorf("default resolv.conf files: %v", def.ResolvConf)
	}
}

// Each Refresh reports the addresses protected now and not before (to the
// watcher, once one runs): a new gateway, a new local address, a new
// nameserver; not the ones that stay or go.
func TestRefreshReportsNewlyProtected(t *testing.T) {
	f := newFixture(t)
	local := addrs("10.0.0.1")
	src := Sources{
		ResolvConf: []string{f.write("resolv.conf", "nameserver 192.0.2.1\n")},
		Route:      f.write("route", routeHeader+defaultRoute4("10.0.0.254")),
		Route6:     f.write("ipv6_route", ""),
		LocalAddrs: func() ([]netip.Addr, error) { return local, nil },
	}
	g := New(src, nil)
	if err := g.Refresh(); err != nil {
		t.Fatal(err)
	}
	if got := g.takeReports(); got != nil {
		t.Errorf("reports with nothing watching: %v", got)
	}
	g.startReports()
	if got, want := g.takeReports(), addrs("10.0.0.1", "10.0.0.254", "192.0.2.1"); !slices.Equal(got, want) {
		t.Errorf("first report %v, want every protected address %v", got, want)
	}
	if err := g.Refresh(); err != nil {
		t.Fatal(err)
	}
	if got := g.takeReports(); len(got) != 0 {
		t.Errorf("nothing changed, reported %v", got)
	}
	// The gateway fails over, an address is added, the nameserver changes.
	f.write("route", routeHeader+defaultRoute4("10.0.0.253"))
	f.write("resolv.conf", "nameserver 192.0.2.2\nnameserver 192.0.2.1\n")
	local = addrs("10.0.0.1", "fe80::7%eth0")
	if err := g.Refresh(); err != nil {
		t.Fatal(err)
	}
	if got, want := g.takeReports(), addrs("10.0.0.253", "192.0.2.2", "fe80::7"); !slices.Equal(got, want) {
		t.Errorf("reported %v, want %v", got, want)
	}
	if _, ok := g.Protected(netip.MustParseAddr("10.0.0.254")); ok {
		t.Error("the old gateway is still protected")
	}
	// Back and forth between two refreshes the watcher did not take: once.
	f.write("route", routeHeader+defaultRoute4("10.0.0.254"))
	g.Refresh()
	f.write("route", routeHeader)
	g.Refresh()
	f.write("route", routeHeader+defaultRoute4("10.0.0.254"))
	g.Refresh()
	if got, want := g.takeReports(), addrs("10.0.0.254"); !slices.Equal(got, want) {
		t.Errorf("reported %v, want %v", got, want)
	}
	g.stopReports()
	f.write("route", routeHeader+defaultRoute4("10.0.0.252"))
	g.Refresh()
	if got := g.takeReports(); got != nil {
		t.Errorf("reports after the watcher stopped: %v", got)
	}
}

// Every function OnChange added is told of a Refresh that changed what is
// protected, until removed; a Refresh that changed nothing tells none.
func TestOnChange(t *testing.T) {
	f := newFixture(t)
	local := []netip.Addr{netip.MustParseAddr("10.201.0.1")}
	src := Sources{
		ResolvConf: []string{f.write("resolv.conf", "")},
		Route:      f.write("route", routeHeader),
		Route6:     f.write("ipv6_route", ""),
		LocalAddrs: func() ([]netip.Addr, error) { return local, nil },
	}
	g := New(src, nil)
	var a, b int
	g.OnChange(func() { a++ })
	removeB := g.OnChange(func() { b++ })
	g.Refresh()
	g.Refresh() // nothing changed
	if a != 1 || b != 1 {
		t.Fatalf("after a change and a non-change: told %d and %d times, want 1 and 1", a, b)
	}
	if got := g.Local(); len(got) != 1 || got[0] != local[0] {
		t.Errorf("Local() = %v, want %v", got, local)
	}
	removeB()
	local = append(local, netip.MustParseAddr("10.201.0.9"))
	g.Refresh()
	if a != 2 || b != 1 {
		t.Errorf("after a second change, with b removed: told %d and %d times, want 2 and 1", a, b)
	}
}
