package listeners

import (
	"net/netip"
	"reflect"
	"testing"
)

func ap(addr string, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(addr), port)
}

func TestElements(t *testing.T) {
	extra := []Socket{
		sock(ProtoTCP, "10.201.0.1", 22),                                        // under the :: wildcard of 22
		sock(ProtoTCP, "fd00:201::1", 80),                                       // under the v6-only :: of 80
		sock(ProtoTCP, "0.0.0.0", 3306),                                         // not monitored
		sock(ProtoTCP, "127.0.0.1", 3306),                                       // not monitored
		sock(ProtoTCP, "0.0.0.0", 25),                                           // IPv4 only
		sock(ProtoTCP, "10.201.0.1", 443),                                       // IPv4 address, v6-only wildcard: stays
		sock(ProtoUDP, "10.201.0.1", 69),                                        // under 0.0.0.0:69
		sock(ProtoUDP, "fd00:201::1", 69),                                       // not under 0.0.0.0:69
		{Proto: ProtoTCP, Addr: netip.MustParseAddr("::"), Port: 22, Inode: 99}, // twin
	}
	monTCP := []uint16{8082, 22, 25, 80, 111, 443, 8080, 8081, 2222, 22}
	monUDP := []uint16{53, 69, 161}
	got := Elements(append(hostSockets, extra...), monTCP, monUDP)
	want := KernelElements{
		AnyTCP:  []uint16{22, 80},
		AnyTCP4: []uint16{25},
		AnyTCP6: []uint16{443},
		AnyUDP4: []uint16{69},
		TCP4:    []netip.AddrPort{ap("127.0.0.1", 111), ap("10.201.0.1", 443), ap("10.201.0.1", 8080), ap("10.201.0.1", 8082)},
		TCP6:    []netip.AddrPort{ap("::1", 111), ap("fd00:201::1", 8081)},
		UDP4:    []netip.AddrPort{ap("10.201.0.1", 53)},
		UDP6:    []netip.AddrPort{ap("fd00:201::1", 53), ap("fd00:201::1", 69)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Elements =\n%+v\nwant\n%+v", got, want)
	}
	if u := got.AllAnyTCP(); !reflect.DeepEqual(u, []uint16{22, 25, 80, 443}) {
		t.Errorf("AllAnyTCP = %v", u)
	}
	if u := got.AllAnyUDP(); !reflect.DeepEqual(u, []uint16{69}) {
		t.Errorf("AllAnyUDP = %v", u)
	}

	if e := Elements(hostSockets, nil, nil); !reflect.DeepEqual(e, KernelElements{}) {
		t.Errorf("nothing monitored: %+v", e)
	}
	if e := Elements(nil, monTCP, monUDP); !reflect.DeepEqual(e, KernelElements{}) {
		t.Errorf("no sockets: %+v", e)
	}
}

// TestElementsMatchSet checks Elements against the Set: for every
// monitored port and destination, the kernel skips the packet (port in a
// wildcard set of its family, or addr . port in a pair set) exactly when
// InUse says the port is in use.
func TestElementsMatchSet(t *testing.T) {
	monTCP := []uint16{22, 25, 80, 111, 443, 2222, 8080, 8081, 8082}
	monUDP := []uint16{53, 69, 161}
	e := Elements(hostSockets, monTCP, monUDP)
	set := NewSet(hostSockets)
	has := func(l []uint16, p uint16) bool {
		for _, x := range l {
			if x == p {
				return true
			}
		}
		return false
	}
	kernelSkips := func(proto uint8, dst netip.Addr, port uint16) bool {
		both, any4, any6, a4, a6 := e.AnyTCP, e.AnyTCP4, e.AnyTCP6, e.TCP4, e.TCP6
		if proto == ProtoUDP {
			both, any4, any6, a4, a6 = e.AnyUDP, e.AnyUDP4, e.AnyUDP6, e.UDP4, e.UDP6
		}
		if has(both, port) {
			return true
		}
		if dst.Is4() {
			for _, x := range a4 {
				if x == netip.AddrPortFrom(dst, port) {
					return true
				}
			}
			return has(any4, port)
		}
		for _, x := range a6 {
			if x == netip.AddrPortFrom(dst, port) {
				return true
			}
		}
		return has(any6, port)
	}
	for _, d := range []string{"10.201.0.1", "10.201.0.2", "127.0.0.1", "::1", "fd00:201::1", "fd00:201::2"} {
		dst := netip.MustParseAddr(d)
		for _, p := range monTCP {
			if k, u := kernelSkips(ProtoTCP, dst, p), set.InUse(ProtoTCP, dst, p); k != u {
				t.Errorf("TCP %s port %d: kernel skips %v, InUse %v", d, p, k, u)
			}
		}
		for _, p := range monUDP {
			if k, u := kernelSkips(ProtoUDP, dst, p), set.InUse(ProtoUDP, dst, p); k != u {
				t.Errorf("UDP %s port %d: kernel skips %v, InUse %v", d, p, k, u)
			}
		}
	}
}
