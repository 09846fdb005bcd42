package guard

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// fleetGuard is a guard whose system sources hold one local address and
// nothing else, and whose resolver answers from names.
func fleetGuard(t *testing.T, names map[string][]netip.Addr) *Guard {
	f := newFixture(t)
	return New(Sources{
		ResolvConf: []string{f.write("resolv.conf", "")},
		Route:      f.write("route", routeHeader),
		Route6:     f.write("ipv6_route", ""),
		LocalAddrs: func() ([]netip.Addr, error) { return addrs("10.201.0.1"), nil },
		LookupHost: func(_ context.Context, host string) ([]netip.Addr, error) {
			if as, ok := names[host]; ok {
				return slices.Clone(as), nil
			}
			return nil, errors.New("no such host")
		},
	}, nil)
}

// The fleet's infrastructure is protected, each with its reason: the hosts
// of fleet.hosts (addresses and CIDRs) and the servers' addresses, literal
// or resolved from their names. A forged probe from any of them blocks
// nothing here.
func TestFleetProtected(t *testing.T) {
	g := fleetGuard(t, map[string][]netip.Addr{"n3.example.net": addrs("10.201.0.13", "fd00:201::13")})
	hosts := []netip.Prefix{netip.MustParsePrefix("10.201.0.2/32"), netip.MustParsePrefix("10.201.8.0/24"),
		netip.MustParsePrefix("fd00:201::3/128"), netip.MustParsePrefix("10.201.0.1/32")}
	servers := []string{"10.201.0.11", "fd00:201::12", "n3.example.net"}
	if err := g.SetFleet(context.Background(), hosts, servers); err != nil {
		t.Fatal(err)
	}
	if _, ok := g.Protected(netip.MustParseAddr("10.201.0.2")); ok {
		t.Error("protected before the Refresh that applies SetFleet")
	}
	if err := g.Refresh(); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{
		"10.201.0.2":         "fleet host",
		"fd00:201::3":        "fleet host",
		"10.201.8.77":        "fleet host 10.201.8.0/24",
		"10.201.0.11":        "fleet server",
		"fd00:201::12":       "fleet server",
		"10.201.0.13":        "fleet server n3.example.net",
		"fd00:201::13":       "fleet server n3.example.net",
		"::ffff:10.201.0.11": "fleet server",
		"10.201.0.1":         "local address", // this host's own, listed too
		"10.201.0.99":        "",
		"10.201.9.1":         "",
	} {
		why, ok := g.Protected(netip.MustParseAddr(addr))
		if ok != (want != "") || why != want {
			t.Errorf("%s: protected=%v %q, want %q", addr, ok, why, want)
		}
	}
	// The kernel's protected sets get them too.
	ps := g.Prefixes()
	for _, p := range []string{"10.201.0.2/32", "10.201.8.0/24", "10.201.0.11/32", "10.201.0.13/32", "fd00:201::13/128"} {
		if !slices.Contains(ps, netip.MustParsePrefix(p)) {
			t.Errorf("Prefixes() lacks %s: %v", p, ps)
		}
	}
	// A reload without them: no longer protected.
	if err := g.SetFleet(context.Background(), nil, nil); err != nil {
		t.Fatal(err)
	}
	g.Refresh()
	if why, ok := g.Protected(netip.MustParseAddr("10.201.0.2")); ok {
		t.Errorf("10.201.0.2 still protected (%s) after the fleet went", why)
	}
}

// A server name that does not resolve is reported; a name that resolved
// before keeps its addresses (a resolver down at a reload must not
// unprotect the servers), and the rest is applied.
func TestFleetServerNameFails(t *testing.T) {
	names := map[string][]netip.Addr{"n1.example.net": addrs("10.201.0.11")}
	g := fleetGuard(t, names)
	err := g.SetFleet(context.Background(), nil, []string{"n1.example.net", "n2.example.net", "10.201.0.13"})
	if err == nil || !strings.Contains(err.Error(), "n2.example.net") || !strings.Contains(err.Error(), "not protected") {
		t.Errorf("SetFleet: %v, want n2.example.net reported", err)
	}
	g.Refresh()
	for _, a := range []string{"10.201.0.11", "10.201.0.13"} {
		if _, ok := g.Protected(netip.MustParseAddr(a)); !ok {
			t.Errorf("%s not protected", a)
		}
	}
	delete(names, "n1.example.net") // the resolver fails at the reload
	err = g.SetFleet(context.Background(), nil, []string{"n1.example.net"})
	if err == nil || !strings.Contains(err.Error(), "stay protected") {
		t.Errorf("SetFleet: %v, want n1.example.net reported as kept", err)
	}
	g.Refresh()
	if why, ok := g.Protected(netip.MustParseAddr("10.201.0.11")); why != "fleet server n1.example.net" {
		t.Errorf("10.201.0.11: protected=%v %q after a failed lookup, want kept", ok, why)
	}
	if _, ok := g.Protected(netip.MustParseAddr("10.201.0.13")); ok {
		t.Error("10.201.0.13 still protected: the reload dropped it")
	}
}

// A fleet host or server added at a reload is reported as newly protected,
// so that the daemon lifts a block of it at once (as a new gateway's).
func TestFleetReportsNewlyProtected(t *testing.T) {
	g := fleetGuard(t, nil)
	g.Refresh()
	g.startReports()
	g.takeReports()
	if err := g.SetFleet(context.Background(), []netip.Prefix{netip.MustParsePrefix("10.201.0.2/32")}, []string{"10.201.0.11"}); err != nil {
		t.Fatal(err)
	}
	g.Refresh()
	if got, want := g.takeReports(), addrs("10.201.0.2", "10.201.0.11"); !slices.Equal(got, want) {
		t.Errorf("reported %v, want %v", got, want)
	}
}
