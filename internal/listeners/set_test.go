package listeners

import (
	"net/netip"
	"slices"
	"testing"
)

// hostSockets is a typical host: sshd dual-stack, a web server on 0.0.0.0
// and a v6-only ::, rpcbind on loopback, a service on one public address,
// DNS on UDP per address, TFTP on 0.0.0.0.
var hostSockets = []Socket{
	sock(ProtoTCP, "::", 22),
	sock(ProtoTCP, "0.0.0.0", 80),
	v6only(sock(ProtoTCP, "::", 80)),
	v6only(sock(ProtoTCP, "::", 443)),
	sock(ProtoTCP, "127.0.0.1", 111),
	sock(ProtoTCP, "::1", 111),
	sock(ProtoTCP, "10.201.0.1", 8080),
	sock(ProtoTCP, "fd00:201::1", 8081),
	sock(ProtoTCP, "::ffff:10.201.0.1", 8082),
	sock(ProtoUDP, "10.201.0.1", 53),
	sock(ProtoUDP, "fd00:201::1", 53),
	sock(ProtoUDP, "0.0.0.0", 69),
}

func TestSetInUse(t *testing.T) {
	set := NewSet(hostSockets)
	tests := []struct {
		proto uint8
		dst   string
		port  uint16
		want  bool
	}{
		{ProtoTCP, "10.201.0.1", 22, true},
		{ProtoTCP, "fd00:201::1", 22, true},
		{ProtoUDP, "10.201.0.1", 22, false}, // other protocol
		{ProtoTCP, "10.201.0.1", 23, false},
		{ProtoTCP, "10.201.0.1", 80, true},
		{ProtoTCP, "fd00:201::1", 80, true},
		{ProtoTCP, "fd00:201::1", 443, true},
		{ProtoTCP, "10.201.0.1", 443, false}, // v6-only
		{ProtoTCP, "::ffff:10.201.0.1", 443, false},
		{ProtoTCP, "127.0.0.1", 111, true},
		{ProtoTCP, "::1", 111, true},
		{ProtoTCP, "10.201.0.1", 111, false}, // loopback does not shadow public
		{ProtoTCP, "fd00:201::1", 111, false},
		{ProtoTCP, "10.201.0.1", 8080, true},
		{ProtoTCP, "::ffff:10.201.0.1", 8080, true},
		{ProtoTCP, "10.201.0.2", 8080, false},
		{ProtoTCP, "fd00:201::1", 8080, false},
		{ProtoTCP, "fd00:201::1", 8081, true},
		{ProtoTCP, "fd00:201::2", 8081, false},
		{ProtoTCP, "10.201.0.1", 8082, true}, // mapped socket address
		{ProtoUDP, "10.201.0.1", 53, true},
		{ProtoUDP, "10.201.0.2", 53, false},
		{ProtoUDP, "fd00:201::1", 53, true},
		{ProtoTCP, "10.201.0.1", 53, false},
		{ProtoUDP, "192.0.2.1", 69, true},
		{ProtoUDP, "2001:db8::1", 69, false},
		{132, "10.201.0.1", 22, false}, // SCTP: not ours
	}
	for _, tt := range tests {
		dst := netip.MustParseAddr(tt.dst)
		if got := set.InUse(tt.proto, dst, tt.port); got != tt.want {
			t.Errorf("InUse(%d, %s, %d) = %v, want %v", tt.proto, tt.dst, tt.port, got, tt.want)
		}
	}
	if set.InUse(ProtoTCP, netip.Addr{}, 22) {
		t.Error("InUse with an invalid address = true")
	}
	var nilSet *Set
	if nilSet.InUse(ProtoTCP, netip.MustParseAddr("10.0.0.1"), 22) || nilSet.Len() != 0 || nilSet.Sockets() != nil {
		t.Error("nil *Set is not empty")
	}
}

// TestSetInUseMatchesCovers checks the fast lookup against its definition:
// some socket of the protocol and port covers the address.
func TestSetInUseMatchesCovers(t *testing.T) {
	set := NewSet(hostSockets)
	dsts := []string{"10.201.0.1", "10.201.0.2", "127.0.0.1", "::1", "fd00:201::1", "fd00:201::2",
		"::ffff:10.201.0.1", "192.0.2.1", "2001:db8::1", "fe80::1%eth0"}
	for _, proto := range []uint8{ProtoTCP, ProtoUDP} {
		for _, d := range dsts {
			dst := netip.MustParseAddr(d)
			for _, port := range []uint16{0, 22, 53, 69, 80, 111, 443, 8080, 8081, 8082, 65535} {
				want := false
				for _, s := range hostSockets {
					if s.Proto == proto && s.Port == port && Covers(s, dst) {
						want = true
					}
				}
				if got := set.InUse(proto, dst, port); got != want {
					t.Errorf("InUse(%d, %s, %d) = %v, Covers says %v", proto, d, port, got, want)
				}
			}
		}
	}
}

func TestNewSetNormalises(t *testing.T) {
	in := []Socket{
		{Proto: ProtoTCP, Addr: netip.MustParseAddr("0.0.0.0"), Port: 80, Inode: 9},
		{Proto: ProtoTCP, Addr: netip.MustParseAddr("0.0.0.0"), Port: 80, Inode: 7}, // SO_REUSEPORT twin
		{Proto: ProtoTCP, Addr: netip.MustParseAddr("::ffff:10.0.0.1"), Port: 81, Inode: 3},
		{Proto: ProtoUDP, Addr: netip.MustParseAddr("::"), Port: 53, Inode: 4, V6Only: true},
		{Proto: ProtoTCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 0, Inode: 5}, // no port
		{Proto: ProtoTCP, Port: 82, Inode: 6},                                       // no address
		{Proto: 132, Addr: netip.MustParseAddr("10.0.0.1"), Port: 83, Inode: 8},     // SCTP
	}
	want := []Socket{
		{Proto: ProtoTCP, Addr: netip.MustParseAddr("0.0.0.0"), Port: 80, Inode: 7},
		{Proto: ProtoTCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 81, Inode: 3},
		{Proto: ProtoUDP, Addr: netip.MustParseAddr("::"), Port: 53, Inode: 4, V6Only: true},
	}
	set := NewSet(in)
	if got := set.Sockets(); !slices.Equal(got, want) {
		t.Errorf("Sockets() =\n%v\nwant\n%v", got, want)
	}
	if set.Len() != 3 {
		t.Errorf("Len() = %d, want 3", set.Len())
	}
}

func TestSetDiff(t *testing.T) {
	a := NewSet([]Socket{sock(ProtoTCP, "0.0.0.0", 22), sock(ProtoTCP, "127.0.0.1", 111), sock(ProtoUDP, "0.0.0.0", 69)})
	bSockets := []Socket{sock(ProtoTCP, "0.0.0.0", 22), sock(ProtoTCP, "10.201.0.1", 8080), v6only(sock(ProtoTCP, "::", 22))}
	bSockets[0].Inode = 42 // another process, same endpoint: no change
	b := NewSet(bSockets)
	added, removed := a.Diff(b)
	wantAdded := []Socket{v6only(sock(ProtoTCP, "::", 22)), sock(ProtoTCP, "10.201.0.1", 8080)}
	wantRemoved := []Socket{sock(ProtoTCP, "127.0.0.1", 111), sock(ProtoUDP, "0.0.0.0", 69)}
	if !slices.Equal(added, wantAdded) || !slices.Equal(removed, wantRemoved) {
		t.Errorf("Diff: added %v removed %v, want added %v removed %v", added, removed, wantAdded, wantRemoved)
	}
	if ad, rm := b.Diff(b); ad != nil || rm != nil {
		t.Errorf("Diff with itself: %v %v", ad, rm)
	}
	var empty *Set
	if ad, rm := empty.Diff(a); len(ad) != 3 || rm != nil {
		t.Errorf("Diff from nil: %v %v", ad, rm)
	}
}

func TestInUseNoAllocs(t *testing.T) {
	set := NewSet(hostSockets)
	dst := netip.MustParseAddr("10.201.0.2")
	dst6 := netip.MustParseAddr("fd00:201::2")
	if n := testing.AllocsPerRun(1000, func() {
		set.InUse(ProtoTCP, dst, 8080)
		set.InUse(ProtoTCP, dst6, 8081)
		set.InUse(ProtoUDP, dst, 69)
	}); n != 0 {
		t.Errorf("InUse allocates %v times per run", n)
	}
}

// BenchmarkInUse is the capture path's re-check: a probe to a port with no
// listener (both maps and bitmaps consulted), IPv4 and IPv6.
func BenchmarkInUse(b *testing.B) {
	set := NewSet(hostSockets)
	dst := netip.MustParseAddr("10.201.0.1")
	dst6 := netip.MustParseAddr("fd00:201::1")
	b.ReportAllocs()
	n := 0
	for i := 0; b.Loop(); i++ {
		if set.InUse(ProtoTCP, dst, uint16(i)) {
			n++
		}
		if set.InUse(ProtoUDP, dst6, uint16(i)) {
			n++
		}
	}
	_ = n
}
