package guard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Why the fleet's own addresses are protected. A forged probe from a NATS
// server's address must not cut this host off the fleet, nor one from
// another fleet host's address cut the two apart. The hosts are what the
// administrator lists (fleet.hosts), never what a host publishes about
// itself: that would let a compromised host make any address immune.
const (
	ReasonFleetHost   = "fleet host"
	ReasonFleetServer = "fleet server"
)

// LookupTimeout bounds the resolution of the fleet servers' names (all
// at once): a slow resolver must not hold up a start or a reload for
// longer.
const LookupTimeout = 5 * time.Second

// fleetRails are the fleet's own addresses, as SetFleet last set them.
type fleetRails struct {
	hosts   []netip.Prefix
	servers []reasoned // each a single address
	// resolved keeps each name's last addresses: a name that stops
	// resolving (the resolver is down at a reload) keeps protecting them.
	resolved map[string][]netip.Addr
}

// SetFleet replaces the fleet's own addresses: hosts (fleet.hosts) and
// the addresses of servers (the host parts of fleet.servers: literal
// addresses, or names it resolves now, within LookupTimeout). They are
// protected from the next Refresh on: the daemon calls SetFleet just
// before one, at start and at each reload. A name that does not resolve
// keeps the addresses it had before, and is reported in the error; the
// rest is applied.
func (g *Guard) SetFleet(ctx context.Context, hosts []netip.Prefix, servers []string) error {
	g.mu.Lock()
	prev := g.fleet.resolved
	g.mu.Unlock()
	res, err := g.resolve(ctx, servers, prev)
	f := fleetRails{hosts: slices.Clone(hosts), resolved: map[string][]netip.Addr{}}
	for _, s := range servers {
		why := ReasonFleetServer
		if _, lerr := netip.ParseAddr(s); lerr != nil {
			why += " " + s // a name: which one, for status and the log
			f.resolved[s] = res[s]
		}
		for _, a := range res[s] {
			f.servers = append(f.servers, reasoned{netip.PrefixFrom(a, a.BitLen()), why})
		}
	}
	g.mu.Lock()
	g.fleet = f
	g.mu.Unlock()
	return err
}

// resolve finds the addresses of each server: a literal address is its
// own, a name is looked up (all names in parallel); a name that fails
// keeps its addresses of prev.
func (g *Guard) resolve(ctx context.Context, servers []string, prev map[string][]netip.Addr) (map[string][]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, LookupTimeout)
	defer cancel()
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	out := make(map[string][]netip.Addr, len(servers))
	for _, s := range servers {
		if a, err := netip.ParseAddr(s); err == nil {
			out[s] = []netip.Addr{Canonical(a)}
			continue
		}
		wg.Go(func() {
			as, err := g.src.LookupHost(ctx, s)
			mu.Lock()
			defer mu.Unlock()
			if err == nil && len(as) == 0 {
				err = errors.New("no address")
			}
			switch {
			case err != nil && len(prev[s]) > 0:
				errs = append(errs, fmt.Errorf("fleet server %s: %w; its addresses %v stay protected", s, err, prev[s]))
				as = prev[s]
			case err != nil:
				errs = append(errs, fmt.Errorf("fleet server %s: %w; its addresses are not protected", s, err))
			default:
				for i := range as {
					as[i] = Canonical(as[i])
				}
			}
			out[s] = as
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return out, fmt.Errorf("guard: %w", errors.Join(errs...))
	}
	return out, nil
}

// addFleet adds the fleet's own addresses to a snapshot being read: the
// servers' and the hosts' single addresses (unless another reason came
// first) and the hosts' prefixes.
func (f *fleetRails) addFleet(s *snapshot, add func(netip.Addr, string)) {
	for _, r := range f.servers {
		add(r.p.Addr(), r.reason)
	}
	for _, p := range f.hosts {
		if p.IsSingleIP() {
			add(p.Addr(), ReasonFleetHost)
			continue
		}
		s.prefixes = append(s.prefixes, reasoned{p, ReasonFleetHost + " " + p.String()})
	}
}

// lookupHost is the system resolver's lookup of a fleet server's name.
func lookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	as, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolve: %w", err)
	}
	return as, nil
}
