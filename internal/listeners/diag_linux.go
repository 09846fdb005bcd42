package listeners

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// sock_diag constants (linux/sock_diag.h, linux/inet_diag.h, net/tcp_states.h).
const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	inetDiagReqV2Len = 56 // struct inet_diag_req_v2
	inetDiagMsgLen   = 72 // struct inet_diag_msg
	inetDiagSKV6Only = 11 // INET_DIAG_SKV6ONLY
	tcpClose         = 7
	tcpListen        = 10
)

// query is one sock_diag dump: a family, a protocol and the states wanted.
type query struct {
	family, proto uint8
	state         uint8
}

// The four dumps of one reading. UDP sockets have no real state; the kernel
// marks connected ones TCP_ESTABLISHED and all others TCP_CLOSE, so bound,
// unconnected UDP sockets (servers) are those in TCP_CLOSE.
var queries = [...]query{
	{unix.AF_INET, unix.IPPROTO_TCP, tcpListen},
	{unix.AF_INET6, unix.IPPROTO_TCP, tcpListen},
	{unix.AF_INET, unix.IPPROTO_UDP, tcpClose},
	{unix.AF_INET6, unix.IPPROTO_UDP, tcpClose},
}

// Dump reads the listening TCP sockets and the bound, unconnected UDP
// sockets, IPv4 and IPv6, of the network namespace netns (nil: the calling
// thread's). The result is sorted by protocol, port, address, V6Only and
// inode, one entry per socket (several sockets may share an address and
// port, e.g. with SO_REUSEPORT).
//
// With netns set, the netlink socket is opened inside that namespace (the
// OS thread is locked, enters it and comes back); it needs CAP_SYS_ADMIN.
func Dump(netns *os.File) ([]Socket, error) {
	d, err := dial(netns)
	if err != nil {
		return nil, err
	}
	defer d.close()
	return d.dump()
}

// dumper is a NETLINK_SOCK_DIAG socket kept open between readings.
type dumper struct {
	c   *netlink.Conn
	req [inetDiagReqV2Len]byte
}

func dial(netns *os.File) (*dumper, error) {
	cfg := &netlink.Config{}
	if netns != nil {
		// netlink enters the namespace on a locked thread, opens the
		// socket and returns; the socket stays in the namespace.
		cfg.NetNS = int(netns.Fd())
	}
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, cfg)
	runtime.KeepAlive(netns)
	if err != nil {
		return nil, fmt.Errorf("sock_diag: open netlink socket: %w", err)
	}
	return &dumper{c: c}, nil
}

func (d *dumper) close() error { return d.c.Close() }

// dump makes one reading: four dumps on the same socket.
func (d *dumper) dump() ([]Socket, error) {
	var out []Socket
	for _, q := range queries {
		var err error
		if out, err = d.dumpOne(out, q); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(out, compareSocket)
	return out, nil
}

func (d *dumper) dumpOne(out []Socket, q query) ([]Socket, error) {
	// struct inet_diag_req_v2: family, protocol, ext, pad, states, then a
	// zero inet_diag_sockid (a dump ignores it).
	req := d.req[:]
	clear(req)
	req[0], req[1] = q.family, q.proto
	binary.NativeEndian.PutUint32(req[4:], 1<<q.state)
	msgs, err := d.c.Execute(netlink.Message{
		Header: netlink.Header{Type: sockDiagByFamily, Flags: netlink.Request | netlink.Dump},
		Data:   req,
	})
	if err != nil {
		return out, fmt.Errorf("sock_diag dump of %s/%s sockets: %w", familyName(q.family), ProtoName(q.proto), err)
	}
	for _, m := range msgs {
		if s, ok := parseMsg(m.Data, q); ok {
			out = append(out, s)
		}
	}
	return out, nil
}

func familyName(f uint8) string {
	if f == unix.AF_INET6 {
		return "IPv6"
	}
	return "IPv4"
}

// parseMsg decodes one struct inet_diag_msg and its attributes. It keeps
// sockets in the wanted state with a local port, and for UDP only those
// with no remote peer.
func parseMsg(b []byte, q query) (Socket, bool) {
	if len(b) < inetDiagMsgLen || b[0] != q.family || b[1] != q.state {
		return Socket{}, false
	}
	// inet_diag_sockid at offset 4: sport, dport (network order), src[16],
	// dst[16], if, cookie[2].
	sport := binary.BigEndian.Uint16(b[4:6])
	dport := binary.BigEndian.Uint16(b[6:8])
	if sport == 0 {
		return Socket{}, false
	}
	var local, remote netip.Addr
	if q.family == unix.AF_INET {
		local = netip.AddrFrom4([4]byte(b[8:12]))
		remote = netip.AddrFrom4([4]byte(b[24:28]))
	} else {
		local = netip.AddrFrom16([16]byte(b[8:24]))
		remote = netip.AddrFrom16([16]byte(b[24:40]))
	}
	if q.proto == unix.IPPROTO_UDP && (dport != 0 || !remote.IsUnspecified()) {
		return Socket{}, false
	}
	s := Socket{
		Proto: q.proto,
		Addr:  local.Unmap(),
		Port:  sport,
		Inode: binary.NativeEndian.Uint32(b[68:72]),
	}
	if q.family == unix.AF_INET6 && !local.Is4In6() {
		if ad, err := netlink.NewAttributeDecoder(b[inetDiagMsgLen:]); err == nil {
			for ad.Next() {
				if v := ad.Bytes(); ad.Type() == inetDiagSKV6Only && len(v) >= 1 {
					s.V6Only = v[0] != 0
				}
			}
		}
	}
	return s, true
}
