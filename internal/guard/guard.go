// Package guard answers one question before any block: may this address
// be blocked at all? Scans are trivially spoofed (nmap -D), and PortSentry's
// classic failure was being tricked into blocking the host's own gateway or
// nameserver. Never blocked: the host's own addresses, its default gateways,
// the nameservers of /etc/resolv.conf (and, under systemd-resolved, the
// upstream ones of /run/systemd/resolve/resolv.conf), the configured
// never_block list, and the fleet's own infrastructure (SetFleet: the NATS
// servers and the hosts the administrator lists in fleet.hosts), so that a
// forged probe cannot cut a host off its fleet.
//
// A Guard holds an immutable snapshot behind an atomic pointer: the capture
// path reads it without locks, Refresh replaces it. Watch follows route,
// address and resolv.conf changes as they happen and reports addresses
// that became protected, so that a block of a new gateway is lifted at once.
//
// Addresses carry no zone here: fe80::1%eth0 and fe80::1 are one address
// (a set element has no zone, and /proc/net/ipv6_route gives none).
package guard

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Sources of the system facts; variables so tests can point them at fixtures.
type Sources struct {
	// ResolvConf lists the resolv.conf files whose nameservers are
	// protected; a missing one is no error. Default: /etc/resolv.conf and
	// /run/systemd/resolve/resolv.conf (systemd-resolved's upstream
	// servers, when /etc/resolv.conf only names its stub 127.0.0.53).
	ResolvConf []string
	Route      string // default /proc/net/route
	Route6     string // default /proc/net/ipv6_route
	// LocalAddrs lists the host's addresses (default: net.InterfaceAddrs).
	LocalAddrs func() ([]netip.Addr, error)
	// LookupHost resolves a fleet server's name (default: the system
	// resolver).
	LookupHost func(ctx context.Context, host string) ([]netip.Addr, error)
}

func (s *Sources) defaults() {
	if s.ResolvConf == nil {
		s.ResolvConf = []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"}
	}
	if s.Route == "" {
		s.Route = "/proc/net/route"
	}
	if s.Route6 == "" {
		s.Route6 = "/proc/net/ipv6_route"
	}
	if s.LocalAddrs == nil {
		s.LocalAddrs = interfaceAddrs
	}
	if s.LookupHost == nil {
		s.LookupHost = lookupHost
	}
}

// reasonLocal is why the host's own addresses are protected.
const reasonLocal = "local address"

type snapshot struct {
	addrs    map[netip.Addr]string
	prefixes []reasoned
}

type reasoned struct {
	p      netip.Prefix
	reason string
}

// Guard knows the protected addresses.
type Guard struct {
	src   Sources
	mu    sync.Mutex // guards never and fleet
	never []netip.Prefix
	fleet fleetRails
	snap  atomic.Pointer[snapshot]
	// refreshing makes each Refresh's diff against the snapshot before it.
	refreshing sync.Mutex
	// Reports of newly protected addresses, delivered by Watch.
	rmu      sync.Mutex
	watching bool
	pending  []netip.Addr
	kick     chan struct{}
	// changed are told after a Refresh changed what is protected (the
	// first strike's guard sets follow, and the fleet's list of this
	// host's addresses).
	cmu     sync.Mutex
	changed map[int]func()
	nextID  int
}

// OnChange adds f to the functions called after a Refresh that changed
// what is protected (added or removed addresses, a new never_block), on
// the refreshing goroutine. The function it returns removes f.
func (g *Guard) OnChange(f func()) (remove func()) {
	g.cmu.Lock()
	defer g.cmu.Unlock()
	if g.changed == nil {
		g.changed = map[int]func(){}
	}
	id := g.nextID
	g.nextID++
	g.changed[id] = f
	return func() {
		g.cmu.Lock()
		delete(g.changed, id)
		g.cmu.Unlock()
	}
}

// Prefixes lists everything protected now as prefixes (an address as a
// single-address prefix), sorted: the kernel's copy of the guard rails.
func (g *Guard) Prefixes() []netip.Prefix {
	s := g.snap.Load()
	out := make([]netip.Prefix, 0, len(s.addrs)+len(s.prefixes))
	for a := range s.addrs {
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	for _, r := range s.prefixes {
		out = append(out, r.p.Masked())
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

// SetNeverBlock replaces the configured never_block list (reload) and
// refreshes the snapshot.
func (g *Guard) SetNeverBlock(ps []netip.Prefix) error {
	g.mu.Lock()
	g.never = ps
	g.mu.Unlock()
	return g.Refresh()
}

// New makes a guard; call Refresh before use (and again when addresses may
// have changed).
func New(src Sources, neverBlock []netip.Prefix) *Guard {
	src.defaults()
	g := &Guard{src: src, never: neverBlock, kick: make(chan struct{}, 1)}
	g.snap.Store(&snapshot{addrs: map[netip.Addr]string{}})
	return g
}

// Refresh re-reads local addresses, gateways and nameservers. A source that
// cannot be read is reported, and what could be read is still applied.
// Addresses protected now and not before are reported to Watch's callback.
func (g *Guard) Refresh() error {
	g.refreshing.Lock()
	s, err := g.read()
	old := g.snap.Swap(s)
	g.refreshing.Unlock()
	g.report(added(old, s))
	if !same(old, s) {
		g.cmu.Lock()
		fs := make([]func(), 0, len(g.changed))
		for _, f := range g.changed {
			fs = append(fs, f)
		}
		g.cmu.Unlock()
		for _, f := range fs {
			f()
		}
	}
	return err
}

// read builds a snapshot from the sources.
func (g *Guard) read() (*snapshot, error) {
	s := &snapshot{addrs: map[netip.Addr]string{}}
	var errs []string
	add := func(a netip.Addr, why string) {
		a = Canonical(a)
		if _, dup := s.addrs[a]; !dup {
			s.addrs[a] = why
		}
	}
	if as, err := g.src.LocalAddrs(); err != nil {
		errs = append(errs, err.Error())
	} else {
		for _, a := range as {
			add(a, reasonLocal)
		}
	}
	if gws, err := gateways4(g.src.Route); err != nil {
		errs = append(errs, err.Error())
	} else {
		for _, a := range gws {
			add(a, "default gateway")
		}
	}
	if gws, err := gateways6(g.src.Route6); err != nil {
		errs = append(errs, err.Error())
	} else {
		for _, a := range gws {
			add(a, "default gateway")
		}
	}
	for _, f := range g.src.ResolvConf {
		if ns, err := nameservers(f); err != nil {
			errs = append(errs, err.Error())
		} else {
			for _, a := range ns {
				add(a, "nameserver")
			}
		}
	}
	g.mu.Lock()
	for _, p := range g.never {
		s.prefixes = append(s.prefixes, reasoned{p, "never_block " + p.String()})
	}
	g.fleet.addFleet(s, add)
	g.mu.Unlock()
	if len(errs) > 0 {
		return s, fmt.Errorf("guard: %s", strings.Join(errs, "; "))
	}
	return s, nil
}

// same reports whether two snapshots protect the same addresses.
func same(a, b *snapshot) bool {
	if len(a.addrs) != len(b.addrs) || len(a.prefixes) != len(b.prefixes) {
		return false
	}
	for x := range a.addrs {
		if _, ok := b.addrs[x]; !ok {
			return false
		}
	}
	for i := range a.prefixes {
		if a.prefixes[i].p != b.prefixes[i].p {
			return false
		}
	}
	return true
}

// added lists the addresses of cur that old did not have, sorted.
func added(old, cur *snapshot) []netip.Addr {
	var out []netip.Addr
	for a := range cur.addrs {
		if _, had := old.addrs[a]; !had {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Canonical is a as the guard and the sets know it: no zone, IPv4-mapped
// IPv6 as IPv4.
func Canonical(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}

// Protected says whether a must never be blocked, and why.
func (g *Guard) Protected(a netip.Addr) (string, bool) {
	s := g.snap.Load()
	a = Canonical(a)
	if why, ok := s.addrs[a]; ok {
		return why, true
	}
	for _, r := range s.prefixes {
		if r.p.Contains(a) {
			return r.reason, true
		}
	}
	return "", false
}

// Local returns the host's own addresses, sorted.
func (g *Guard) Local() []netip.Addr {
	s := g.snap.Load()
	var out []netip.Addr
	for a, why := range s.addrs {
		if why == reasonLocal {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// List returns every protected address with its reason (for status output).
func (g *Guard) List() map[string]string {
	s := g.snap.Load()
	out := map[string]string{}
	for a, why := range s.addrs {
		out[a.String()] = why
	}
	for _, r := range s.prefixes {
		out[r.p.String()] = r.reason
	}
	return out
}

func interfaceAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("local addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, Canonical(ip))
			}
		}
	}
	return out, nil
}

// gateways4 reads /proc/net/route: default routes (destination 0) with a gateway.
func gateways4(path string) ([]netip.Addr, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		b, err := hex.DecodeString(f[2])
		if err != nil || len(b) != 4 {
			continue
		}
		// /proc/net/route prints the address in host (little-endian) order.
		a := netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]})
		if !a.IsUnspecified() {
			out = append(out, a)
		}
	}
	return out, nil
}

// gateways6 reads /proc/net/ipv6_route: ::/0 routes with a next hop.
func gateways6(path string) ([]netip.Addr, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var out []netip.Addr
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 || f[0] != strings.Repeat("0", 32) || f[1] != "00" {
			continue
		}
		b, err := hex.DecodeString(f[4])
		if err != nil || len(b) != 16 {
			continue
		}
		a := netip.AddrFrom16([16]byte(b))
		if !a.IsUnspecified() {
			out = append(out, a)
		}
	}
	return out, nil
}

// nameservers reads the "nameserver" lines of resolv.conf. A missing file
// is no error (no nameservers configured).
func nameservers(path string) ([]netip.Addr, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var out []netip.Addr
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			s, _, _ := strings.Cut(f[1], "%") // fe80::1%eth0: the zone is not part of the address
			if a, err := netip.ParseAddr(s); err == nil {
				out = append(out, Canonical(a))
			}
		}
	}
	return out, nil
}

// report hands addresses that became protected to Watch's callback (none
// while nothing watches).
func (g *Guard) report(as []netip.Addr) {
	if len(as) == 0 {
		return
	}
	g.rmu.Lock()
	if !g.watching {
		g.rmu.Unlock()
		return
	}
	g.pending = append(g.pending, as...)
	g.rmu.Unlock()
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// startReports makes reports go to the watcher, starting with every
// address protected now (a block restored from the last run may hold one
// that became protected while the daemon was down).
func (g *Guard) startReports() {
	g.rmu.Lock()
	g.watching = true
	g.pending = added(&snapshot{}, g.snap.Load())
	g.rmu.Unlock()
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

func (g *Guard) stopReports() {
	g.rmu.Lock()
	g.watching, g.pending = false, nil
	g.rmu.Unlock()
}

// takeReports returns the addresses reported since the last call, sorted,
// each once.
func (g *Guard) takeReports() []netip.Addr {
	g.rmu.Lock()
	p := g.pending
	g.pending = nil
	g.rmu.Unlock()
	slices.SortFunc(p, netip.Addr.Compare)
	return slices.Compact(p)
}
