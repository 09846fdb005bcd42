package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Reading blocked and blocked6 back from the kernel: `status`, `list`,
// every metrics scrape and the watchdog's element check do. The dump is
// read here, not through google/nftables, for two measured reasons:
//
//   - The kernel walks a set's hash from the start for every chunk of a
//     dump (nft_rhash_walk skips what it sent before), so the cost grows
//     with the square of the set over the chunk size. The chunk is as large
//     as the reader's largest receive buffer (up to 32 KiB); the libraries
//     read a page at a time. At 100k elements: 3-4 s a dump with 4 KiB
//     reads here, a fraction of that with 32 KiB.
//   - google/nftables v0.3.0 decodes every element into its own structures
//     (tens of MiB of garbage at 100k), and on a lasting connection aliases
//     keys to reused buffers.
//
// A dump that the kernel flags as interrupted, or that lists a key twice
// (a hash resize during the walk), is repeated.

// CheapDump is the most elements a dump of the sets is worth at start and
// in the watchdog's frequent checks: about a second of the kernel's time
// at 100k, four at 200k, and 50 s at 1M (measured: BenchmarkMillion).
// Above it the ledger's record stands in for the kernel's sets, and the
// sets are read back rarely (see ElementCheckEvery).
const CheapDump = 200000

// ElementCheckEvery is how often, in seconds, the sets are worth reading
// back to find elements lost or added outside the daemon, when the ledger
// holds n blocks: every 5 s while it costs nothing, then every minute up
// to 100k, then less often with the square of the sets, so that the
// dumps take about 2% of one core's time.
func ElementCheckEvery(n int) int {
	if n < 10000 {
		return 5
	}
	r := max(1, n/100000)
	return 60 * r * r
}

// dumpRead is the receive buffer: the largest chunk the kernel will make.
const dumpRead = 32 << 10

// Blocked returns every element of blocked and blocked6 with the time it
// has left. netns, when set, is the network namespace to read in.
func Blocked(netns *os.File) (map[netip.Addr]time.Duration, error) {
	out := map[netip.Addr]time.Duration{}
	err := dumpBlocked(netns, func(set string, els map[[16]byte]time.Duration) {
		for k, left := range els {
			if set == SetBlocked {
				out[netip.AddrFrom4([4]byte(k[:4]))] = left
			} else {
				out[netip.AddrFrom16(k)] = left
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// BlockedPrefixes returns every element of blocked6_64 (an IPv6 /64) with
// the time it has left; none when the ruleset has no such set.
func BlockedPrefixes(netns *os.File) (map[netip.Prefix]time.Duration, error) {
	c, err := dial(netns)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	els, err := dumpSet(c, SetBlocked64, make([]byte, dumpRead))
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make(map[netip.Prefix]time.Duration, len(els))
	for k, left := range els {
		out[Prefix64(netip.AddrFrom16(k))] = left
	}
	return out, nil
}

// CountBlocked returns how many elements blocked and blocked6 hold.
func CountBlocked(netns *os.File) (v4, v6 int, err error) {
	err = dumpBlocked(netns, func(set string, els map[[16]byte]time.Duration) {
		if set == SetBlocked {
			v4 = len(els)
		} else {
			v6 = len(els)
		}
	})
	return v4, v6, err
}

// dial opens a netfilter netlink socket, in netns when set.
func dial(netns *os.File) (*netlink.Conn, error) {
	cfg := &netlink.Config{}
	if netns != nil {
		cfg.NetNS = int(netns.Fd())
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, fmt.Errorf("open netfilter netlink socket: %w", err)
	}
	return c, nil
}

func dumpBlocked(netns *os.File, fn func(set string, els map[[16]byte]time.Duration)) error {
	c, err := dial(netns)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, dumpRead)
	for _, set := range []string{SetBlocked, SetBlocked6} {
		els, err := dumpSet(c, set, buf)
		if err != nil {
			return err
		}
		fn(set, els)
	}
	return nil
}

// dumpSet reads set's elements: key (4 or 16 bytes, zero-padded) to time
// left, repeating an interrupted or inconsistent dump.
func dumpSet(c *netlink.Conn, set string, buf []byte) (map[[16]byte]time.Duration, error) {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, TableName)
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, set)
	attrs, err := ae.Encode()
	if err != nil {
		return nil, err
	}
	req := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, attrs...),
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	els := map[[16]byte]time.Duration{}
	for attempt := 0; ; attempt++ {
		clear(els)
		sent, err := c.Send(req)
		if err != nil {
			return nil, fmt.Errorf("dump set %s: %w", set, err)
		}
		clean, err := receiveDump(rc, buf, sent.Header.Sequence, els)
		if err != nil {
			return nil, fmt.Errorf("dump set %s: %w", set, err)
		}
		if clean || attempt == 20 {
			return els, nil
		}
		time.Sleep(time.Duration(attempt+1) * 25 * time.Millisecond)
	}
}

// receiveDump reads the datagrams of one dump until NLMSG_DONE.
func receiveDump(rc syscall.RawConn, buf []byte, seq uint32, els map[[16]byte]time.Duration) (clean bool, err error) {
	clean = true
	for {
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN
		}); err != nil {
			return false, err
		}
		if rerr != nil {
			return false, fmt.Errorf("receive: %w", rerr)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return false, fmt.Errorf("%w: %v", errMalformed, err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue // an answer to something earlier
			}
			if m.Header.Flags&unix.NLM_F_DUMP_INTR != 0 {
				clean = false
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return clean, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
						return false, syscall.Errno(-code)
					}
				}
				return clean, nil
			}
			if len(m.Data) < 4 {
				return false, errMalformed
			}
			dup, err := parseElems(m.Data[4:], els)
			if err != nil {
				return false, err
			}
			clean = clean && !dup
		}
	}
}

var errMalformed = errors.New("malformed set element message")

// parseElems adds the elements of one NFT_MSG_NEWSETELEM message's
// attributes (after its nfgenmsg header) to els, and reports whether one
// was there already. It allocates nothing per element.
func parseElems(attrs []byte, els map[[16]byte]time.Duration) (dup bool, err error) {
	err = walkAttrs(attrs, func(typ uint16, list []byte) error {
		if typ != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			return nil
		}
		return walkAttrs(list, func(typ uint16, elem []byte) error {
			if typ != unix.NFTA_LIST_ELEM {
				return nil
			}
			var key []byte
			var left time.Duration
			err := walkAttrs(elem, func(typ uint16, b []byte) error {
				switch typ {
				case unix.NFTA_SET_ELEM_KEY:
					return walkAttrs(b, func(typ uint16, v []byte) error {
						if typ == unix.NFTA_DATA_VALUE {
							key = v
						}
						return nil
					})
				case unix.NFTA_SET_ELEM_EXPIRATION:
					if len(b) != 8 {
						return fmt.Errorf("%w: expiration of %d bytes", errMalformed, len(b))
					}
					left = time.Duration(binary.BigEndian.Uint64(b)) * time.Millisecond
				}
				return nil
			})
			if err != nil {
				return err
			}
			if len(key) != 4 && len(key) != 16 {
				return fmt.Errorf("%w: key of %d bytes", errMalformed, len(key))
			}
			var k [16]byte // one set holds one family: no mixing
			copy(k[:], key)
			if _, ok := els[k]; ok {
				dup = true
			}
			els[k] = left
			return nil
		})
	})
	return dup, err
}

// walkAttrs calls fn with each netlink attribute in b: its type (without
// the nested and byte-order flags) and payload.
func walkAttrs(b []byte, fn func(typ uint16, payload []byte) error) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return fmt.Errorf("%w: %d bytes left, no attribute header", errMalformed, len(b))
		}
		n := int(binary.NativeEndian.Uint16(b))
		if n < 4 || n > len(b) {
			return fmt.Errorf("%w: attribute length %d with %d bytes left", errMalformed, n, len(b))
		}
		if err := fn(binary.NativeEndian.Uint16(b[2:])&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER), b[4:n]); err != nil {
			return err
		}
		b = b[min((n+3)&^3, len(b)):]
	}
	return nil
}
