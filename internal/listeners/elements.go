package listeners

import (
	"net/netip"
	"slices"
)

// KernelElements are the in-use monitored ports in the shape of the kernel
// sets the log rules skip. Every list is sorted (by port, then address) and
// duplicate-free, and only holds monitored ports.
//
// Wildcard listeners shadow a port for every address of a family: AnyTCP
// holds the ports shadowed for both families (a dual-stack :: socket, or
// both 0.0.0.0 and ::), AnyTCP4 those shadowed for IPv4 only (0.0.0.0
// without ::) and AnyTCP6 those for IPv6 only (:: with IPV6_V6ONLY, without
// 0.0.0.0). A ruleset with a single family-agnostic port set (inuse_tcp,
// type inet_service) can take the union of the three, trading some
// detection (an IPv6 probe of an IPv4-only service is then not seen) for
// fewer sets; one with per-family port sets matches AnyTCP4 and AnyTCP6
// under "meta nfproto ipv4" / "ipv6" and puts AnyTCP in both.
//
// TCP4 and TCP6 hold listeners on one address (addr . port), except where
// a wildcard of the same family already covers the port; TCP4 holds IPv4
// addresses, TCP6 IPv6 ones. The same goes for the UDP fields.
//
// This is the in-use data in the one form the daemon passes on: package
// nft takes it as is (nft.Shape.InUse) and encodes it for the kernel.
type KernelElements struct {
	AnyTCP, AnyTCP4, AnyTCP6 []uint16
	AnyUDP, AnyUDP4, AnyUDP6 []uint16
	TCP4, UDP4               []netip.AddrPort
	TCP6, UDP6               []netip.AddrPort
}

// AllAnyTCP is the union of AnyTCP, AnyTCP4 and AnyTCP6, sorted: the
// elements of a single family-agnostic TCP port set.
func (k KernelElements) AllAnyTCP() []uint16 { return union(k.AnyTCP, k.AnyTCP4, k.AnyTCP6) }

// AllAnyUDP is the union of AnyUDP, AnyUDP4 and AnyUDP6, sorted.
func (k KernelElements) AllAnyUDP() []uint16 { return union(k.AnyUDP, k.AnyUDP4, k.AnyUDP6) }

func union(lists ...[]uint16) []uint16 {
	var out []uint16
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Elements computes the kernel set elements for sockets, restricted to the
// monitored ports (in any order; duplicates allowed). It is a pure
// function: the caller hands the result to nft.Build (nft.Shape.InUse),
// which encodes it into the in-use sets.
func Elements(sockets []Socket, monitoredTCP, monitoredUDP []uint16) KernelElements {
	var mon [2]portBits
	for _, p := range monitoredTCP {
		mon[0].set(p)
	}
	for _, p := range monitoredUDP {
		mon[1].set(p)
	}
	set := NewSet(sockets)
	var out KernelElements
	type lists struct {
		any, any4, any6 *[]uint16
		a4, a6          *[]netip.AddrPort
	}
	per := [2]lists{
		{&out.AnyTCP, &out.AnyTCP4, &out.AnyTCP6, &out.TCP4, &out.TCP6},
		{&out.AnyUDP, &out.AnyUDP4, &out.AnyUDP6, &out.UDP4, &out.UDP6},
	}
	// set.sockets is sorted by protocol then port: each port's wildcard
	// lists are appended once, in order.
	for _, sk := range set.sockets {
		i := protoIndex(sk.Proto)
		if !mon[i].has(sk.Port) {
			continue
		}
		l := per[i]
		w4, w6 := set.any4[i].has(sk.Port), set.any6[i].has(sk.Port)
		if v4, v6 := sk.wildcard(); v4 || v6 {
			var dst *[]uint16
			switch {
			case w4 && w6:
				dst = l.any
			case w4:
				dst = l.any4
			default:
				dst = l.any6
			}
			if n := len(*dst); n == 0 || (*dst)[n-1] != sk.Port {
				*dst = append(*dst, sk.Port)
			}
			continue
		}
		if sk.Addr.Is4() {
			if !w4 {
				*l.a4 = append(*l.a4, netip.AddrPortFrom(sk.Addr.WithZone(""), sk.Port))
			}
		} else if !w6 {
			*l.a6 = append(*l.a6, netip.AddrPortFrom(sk.Addr.WithZone(""), sk.Port))
		}
	}
	// NewSet kept one socket per address and port (the V6Only flag of
	// specific IPv6 addresses could still split one): drop repeats.
	out.TCP4, out.UDP4 = slices.Compact(out.TCP4), slices.Compact(out.UDP4)
	out.TCP6, out.UDP6 = slices.Compact(out.TCP6), slices.Compact(out.UDP6)
	return out
}
