package listeners

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// diagMsg builds a struct inet_diag_msg as the kernel sends it.
func diagMsg(family, state uint8, local netip.AddrPort, remote netip.AddrPort, inode uint32, attrs ...netlink.Attribute) []byte {
	b := make([]byte, inetDiagMsgLen)
	b[0], b[1] = family, state
	binary.BigEndian.PutUint16(b[4:], local.Port())
	binary.BigEndian.PutUint16(b[6:], remote.Port())
	copy(b[8:24], local.Addr().AsSlice())
	copy(b[24:40], remote.Addr().AsSlice())
	binary.NativeEndian.PutUint32(b[68:], inode)
	if len(attrs) > 0 {
		a, err := netlink.MarshalAttributes(attrs)
		if err != nil {
			panic(err)
		}
		b = append(b, a...)
	}
	return b
}

func TestParseMsg(t *testing.T) {
	ap := netip.MustParseAddrPort
	none4, none6 := ap("0.0.0.0:0"), ap("[::]:0")
	v6only := func(v byte) netlink.Attribute { return netlink.Attribute{Type: inetDiagSKV6Only, Data: []byte{v}} }
	tcp4 := query{unix.AF_INET, unix.IPPROTO_TCP, tcpListen}
	tcp6 := query{unix.AF_INET6, unix.IPPROTO_TCP, tcpListen}
	udp4 := query{unix.AF_INET, unix.IPPROTO_UDP, tcpClose}
	udp6 := query{unix.AF_INET6, unix.IPPROTO_UDP, tcpClose}
	tests := []struct {
		name string
		q    query
		msg  []byte
		want Socket
		ok   bool
	}{
		{"tcp4 listen", tcp4, diagMsg(unix.AF_INET, tcpListen, ap("10.201.0.1:8080"), none4, 5), Socket{Proto: 6, Addr: netip.MustParseAddr("10.201.0.1"), Port: 8080, Inode: 5}, true},
		{"tcp4 wrong state", tcp4, diagMsg(unix.AF_INET, 1, ap("10.201.0.1:8080"), ap("10.201.0.2:4000"), 5), Socket{}, false},
		{"tcp6 dual-stack", tcp6, diagMsg(unix.AF_INET6, tcpListen, ap("[::]:2222"), none6, 6, v6only(0)), Socket{Proto: 6, Addr: netip.IPv6Unspecified(), Port: 2222, Inode: 6}, true},
		{"tcp6 v6only", tcp6, diagMsg(unix.AF_INET6, tcpListen, ap("[::]:2223"), none6, 7, v6only(1)), Socket{Proto: 6, Addr: netip.IPv6Unspecified(), Port: 2223, Inode: 7, V6Only: true}, true},
		{"tcp6 mapped", tcp6, diagMsg(unix.AF_INET6, tcpListen, ap("[::ffff:10.0.0.1]:80"), none6, 8, v6only(0)), Socket{Proto: 6, Addr: netip.MustParseAddr("10.0.0.1"), Port: 80, Inode: 8}, true},
		{"udp4 bound", udp4, diagMsg(unix.AF_INET, tcpClose, ap("0.0.0.0:69"), none4, 9), Socket{Proto: 17, Addr: netip.IPv4Unspecified(), Port: 69, Inode: 9}, true},
		{"udp4 peer port", udp4, diagMsg(unix.AF_INET, tcpClose, ap("0.0.0.0:6000"), ap("0.0.0.0:9"), 9), Socket{}, false},
		{"udp4 peer address", udp4, diagMsg(unix.AF_INET, tcpClose, ap("0.0.0.0:6000"), ap("127.0.0.1:0"), 9), Socket{}, false},
		{"udp4 connected", udp4, diagMsg(unix.AF_INET, 1, ap("10.0.0.1:6000"), ap("10.0.0.2:53"), 9), Socket{}, false},
		{"udp6 bound", udp6, diagMsg(unix.AF_INET6, tcpClose, ap("[fd00:201::1]:5353"), none6, 10, v6only(1)), Socket{Proto: 17, Addr: netip.MustParseAddr("fd00:201::1"), Port: 5353, Inode: 10, V6Only: true}, true},
		{"port 0", udp4, diagMsg(unix.AF_INET, tcpClose, ap("0.0.0.0:0"), none4, 9), Socket{}, false},
		{"wrong family", udp4, diagMsg(unix.AF_INET6, tcpClose, ap("[::]:69"), none6, 9), Socket{}, false},
		{"short", tcp4, make([]byte, 40), Socket{}, false},
	}
	for _, tt := range tests {
		got, ok := parseMsg(tt.msg, tt.q)
		if ok != tt.ok || got != tt.want {
			t.Errorf("%s: parseMsg = %+v, %v; want %+v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}
