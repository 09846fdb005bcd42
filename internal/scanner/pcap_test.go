package scanner_test

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// readPcap returns the IP packets of a pcap file (Ethernet or raw IP link
// types), as the kernel's NFLOG copy would hold them: from the IP header on.
// Frames of other types are skipped.
func readPcap(b []byte) ([][]byte, error) {
	if len(b) < 24 {
		return nil, errors.New("pcap: short file header")
	}
	var order binary.ByteOrder
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d: // micro- and nanosecond files
		order = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		order = binary.BigEndian
	default:
		return nil, fmt.Errorf("pcap: magic %#x", b[:4])
	}
	link := order.Uint32(b[20:24])
	var pkts [][]byte
	for off := 24; off < len(b); {
		if len(b)-off < 16 {
			return nil, fmt.Errorf("pcap: short record header at %d", off)
		}
		n := int(order.Uint32(b[off+8 : off+12]))
		off += 16
		if n > len(b)-off {
			return nil, fmt.Errorf("pcap: record of %d bytes past the end at %d", n, off)
		}
		if ip := network(link, b[off:off+n]); ip != nil {
			pkts = append(pkts, ip)
		}
		off += n
	}
	return pkts, nil
}

// network is the IP packet of frame f of link type link, or nil.
func network(link uint32, f []byte) []byte {
	switch link {
	case 1: // Ethernet
		if len(f) < 14 {
			return nil
		}
		if t := binary.BigEndian.Uint16(f[12:14]); t != 0x0800 && t != 0x86dd {
			return nil
		}
		return f[14:]
	case 101, 228, 229: // raw IP, raw IPv4, raw IPv6
		return f
	}
	return nil
}
