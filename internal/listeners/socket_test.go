package listeners

import (
	"net/netip"
	"testing"
)

func sock(proto uint8, addr string, port uint16) Socket {
	return Socket{Proto: proto, Addr: netip.MustParseAddr(addr), Port: port}
}

func v6only(s Socket) Socket { s.V6Only = true; return s }

func TestCovers(t *testing.T) {
	tests := []struct {
		name string
		s    Socket
		dst  string
		want bool
	}{
		{"exact v4", sock(ProtoTCP, "10.201.0.1", 80), "10.201.0.1", true},
		{"other v4", sock(ProtoTCP, "10.201.0.1", 80), "10.201.0.2", false},
		{"exact v4, mapped dst", sock(ProtoTCP, "10.201.0.1", 80), "::ffff:10.201.0.1", true},
		{"v4 socket, v6 dst", sock(ProtoTCP, "10.201.0.1", 80), "fd00:201::1", false},
		{"loopback does not shadow public", sock(ProtoTCP, "127.0.0.1", 111), "10.201.0.1", false},
		{"loopback covers loopback", sock(ProtoTCP, "127.0.0.1", 111), "127.0.0.1", true},
		{"v4 wildcard, v4 dst", sock(ProtoUDP, "0.0.0.0", 69), "192.0.2.7", true},
		{"v4 wildcard, mapped dst", sock(ProtoUDP, "0.0.0.0", 69), "::ffff:192.0.2.7", true},
		{"v4 wildcard, v6 dst", sock(ProtoUDP, "0.0.0.0", 69), "2001:db8::1", false},
		{"dual-stack, v6 dst", sock(ProtoTCP, "::", 2222), "2001:db8::1", true},
		{"dual-stack, v4 dst", sock(ProtoTCP, "::", 2222), "192.0.2.7", true},
		{"dual-stack, mapped dst", sock(ProtoTCP, "::", 2222), "::ffff:192.0.2.7", true},
		{"v6only wildcard, v6 dst", v6only(sock(ProtoTCP, "::", 2223)), "2001:db8::1", true},
		{"v6only wildcard, v4 dst", v6only(sock(ProtoTCP, "::", 2223)), "192.0.2.7", false},
		{"v6only wildcard, mapped dst", v6only(sock(ProtoTCP, "::", 2223)), "::ffff:192.0.2.7", false},
		{"exact v6", sock(ProtoTCP, "fd00:201::1", 80), "fd00:201::1", true},
		{"other v6", sock(ProtoTCP, "fd00:201::1", 80), "fd00:201::2", false},
		{"v6 socket, v4 dst", sock(ProtoTCP, "fd00:201::1", 80), "10.201.0.1", false},
		{"::1 does not cover 127.0.0.1", sock(ProtoTCP, "::1", 80), "127.0.0.1", false},
		{"mapped socket, v4 dst", sock(ProtoTCP, "::ffff:10.0.0.1", 80), "10.0.0.1", true},
		{"mapped socket, mapped dst", sock(ProtoTCP, "::ffff:10.0.0.1", 80), "::ffff:10.0.0.1", true},
		{"mapped socket, other v4", sock(ProtoTCP, "::ffff:10.0.0.1", 80), "10.0.0.2", false},
		{"mapped wildcard is v4 only", sock(ProtoTCP, "::ffff:0.0.0.0", 80), "10.0.0.2", true},
		{"mapped wildcard, v6 dst", sock(ProtoTCP, "::ffff:0.0.0.0", 80), "2001:db8::1", false},
		{"zones ignored", sock(ProtoTCP, "fe80::1%eth0", 80), "fe80::1", true},
		{"zoned dst", sock(ProtoTCP, "fe80::1", 80), "fe80::1%eth1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Covers(tt.s, netip.MustParseAddr(tt.dst)); got != tt.want {
				t.Errorf("Covers(%v, %s) = %v, want %v", tt.s, tt.dst, got, tt.want)
			}
		})
	}
	if Covers(sock(ProtoTCP, "0.0.0.0", 1), netip.Addr{}) {
		t.Error("Covers with an invalid dst = true")
	}
	if Covers(Socket{Proto: ProtoTCP, Port: 1}, netip.MustParseAddr("10.0.0.1")) {
		t.Error("Covers with an invalid socket address = true")
	}
}

func TestSocketString(t *testing.T) {
	for s, want := range map[Socket]string{
		sock(ProtoTCP, "127.0.0.1", 111):                     "TCP 127.0.0.1:111",
		sock(ProtoUDP, "::", 69):                             "UDP [::]:69",
		v6only(sock(ProtoTCP, "::", 2223)):                   "TCP [::]:2223 (IPv6 only)",
		sock(ProtoTCP, "fd00:201::1", 8080):                  "TCP [fd00:201::1]:8080",
		{Proto: 132, Addr: netip.IPv4Unspecified(), Port: 9}: "132 0.0.0.0:9",
	} {
		if got := s.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", s, got, want)
		}
	}
}
