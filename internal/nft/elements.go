package nft

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// A transaction of element additions, encoded here rather than through
// google/nftables: the library builds a list of attributes for each
// element and marshals it (several allocations an element, ~0.3 s of CPU
// and most of the garbage of a restore of 1M blocks), and a restore sends
// a million. The messages are the library's, byte for byte (a test
// compares them); they go out on the link's own socket, the one its
// nftables.Conn uses.

// elemBatch encodes one transaction into buffers it keeps for the next.
type elemBatch struct {
	buf  []byte
	msgs []netlink.Message
}

// Attribute sizes: a header, then the payload padded to 4 bytes.
const (
	nlaHdr   = 4
	elem4Len = nlaHdr + (nlaHdr + nlaHdr + 4) + (nlaHdr + 8)  // an IPv4 key and a timeout
	elem6Len = nlaHdr + (nlaHdr + nlaHdr + 16) + (nlaHdr + 8) // an IPv6 key and a timeout
)

// encode makes the transaction that adds batch's elements, in messages
// of at most maxElemsPerCall elements (one attribute holds at most 64 KiB).
func (e *elemBatch) encode(w *Writer, batch []Block) []netlink.Message {
	e.buf = e.buf[:0]
	e.msgs = append(e.msgs[:0], netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES},
	})
	// The offsets of the messages in buf: buf may move while it grows.
	var spans [][2]int
	for set := range w.sets {
		n := 0
		start, elems := 0, 0
		for _, b := range batch {
			if setIndex(b) != set {
				continue
			}
			if n%maxElemsPerCall == 0 {
				if n > 0 {
					spans = append(spans, e.endMsg(start, elems))
				}
				start, elems = e.startMsg(w.sets[set].Name)
			}
			n++
			e.appendElem(b, n-(n-1)/maxElemsPerCall*maxElemsPerCall)
		}
		if n > 0 {
			spans = append(spans, e.endMsg(start, elems))
		}
	}
	for _, sp := range spans {
		e.msgs = append(e.msgs, netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWSETELEM),
				Flags: netlink.Request | netlink.Acknowledge | netlink.Create},
			Data: e.buf[sp[0]:sp[1]:sp[1]],
		})
	}
	return append(e.msgs, netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES},
	})
}

// setIndex is the set b's element goes in: blocked, blocked6 or blocked6_64.
func setIndex(b Block) int {
	switch a := b.Addr.Unmap(); {
	case a.Is4():
		return 0
	case b.Prefix64:
		return 2
	}
	return 1
}

// startMsg begins a NEWSETELEM message for set (its header, the set's
// name, ID and table, and the elements' attribute, whose length endMsg
// writes); it returns where the message and the elements' attribute
// start.
func (e *elemBatch) startMsg(set string) (start, elems int) {
	start = len(e.buf)
	e.buf = append(e.buf, unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0)
	e.putString(unix.NFTA_SET_NAME, set)
	e.buf = nla(e.buf, unix.NFTA_LOOKUP_SET_ID, 4)
	e.buf = binary.BigEndian.AppendUint32(e.buf, 0)
	e.putString(unix.NFTA_SET_TABLE, TableName)
	elems = len(e.buf)
	e.buf = nla(e.buf, unix.NFTA_SET_ELEM_LIST_ELEMENTS|unix.NLA_F_NESTED, 0)
	return start, elems
}

// endMsg writes the length of the elements' attribute begun at elems,
// and returns the message's span.
func (e *elemBatch) endMsg(start, elems int) [2]int {
	binary.NativeEndian.PutUint16(e.buf[elems:], uint16(len(e.buf)-elems))
	return [2]int{start, len(e.buf)}
}

// appendElem appends b's element, the i-th of its message.
func (e *elemBatch) appendElem(b Block, i int) {
	a := b.Addr.Unmap()
	size := elem6Len
	if a.Is4() {
		size = elem4Len
	}
	if b.Timeout == 0 {
		size -= nlaHdr + 8 // none: the element stays (as the library sends it)
	}
	e.buf = nla(e.buf, uint16(i)|unix.NLA_F_NESTED, size-nlaHdr)
	if a.Is4() {
		k := a.As4()
		e.buf = nla(e.buf, unix.NFTA_SET_ELEM_KEY|unix.NLA_F_NESTED, nlaHdr+4)
		e.buf = append(nla(e.buf, unix.NFTA_DATA_VALUE, 4), k[:]...)
	} else {
		k := a.As16()
		if b.Prefix64 {
			k = Prefix64(a).Addr().As16()
		}
		e.buf = nla(e.buf, unix.NFTA_SET_ELEM_KEY|unix.NLA_F_NESTED, nlaHdr+16)
		e.buf = append(nla(e.buf, unix.NFTA_DATA_VALUE, 16), k[:]...)
	}
	if b.Timeout != 0 {
		e.buf = nla(e.buf, unix.NFTA_SET_ELEM_TIMEOUT, 8)
		e.buf = binary.BigEndian.AppendUint64(e.buf, uint64(b.Timeout.Milliseconds()))
	}
}

// putString appends a string attribute (NUL-terminated, padded).
func (e *elemBatch) putString(typ uint16, s string) {
	e.buf = append(nla(e.buf, typ, len(s)+1), s...)
	e.buf = append(e.buf, 0)
	for len(e.buf)%4 != 0 {
		e.buf = append(e.buf, 0)
	}
}

// nla appends an attribute's header for a payload of n bytes (0: written
// later, for a nested attribute).
func nla(buf []byte, typ uint16, n int) []byte {
	buf = binary.NativeEndian.AppendUint16(buf, uint16(nlaHdr+n))
	return binary.NativeEndian.AppendUint16(buf, typ)
}

// send sends batch's elements as one transaction on c and waits for
// the kernel's answer to each message.
func (e *elemBatch) send(c *netlink.Conn, w *Writer, batch []Block) error {
	msgs := e.encode(w, batch)
	if _, err := c.SendMessages(msgs); err != nil {
		return fmt.Errorf("send %d blocks: %w", len(batch), err)
	}
	for want := len(msgs) - 2; want > 0; {
		replies, err := c.Receive()
		if err != nil {
			return fmt.Errorf("commit %d blocks: %w", len(batch), err)
		}
		for _, r := range replies {
			if r.Header.Type == netlink.Error {
				want--
			}
		}
		if len(replies) == 0 {
			return errors.New("commit: no answer from the kernel")
		}
	}
	return nil
}
