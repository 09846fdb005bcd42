package capture

import (
	"encoding/binary"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The NFLOG protocol (linux/netfilter/nfnetlink_log.h), read here rather
// than through github.com/florianl/go-nflog: in a flood that library cost
// most of the daemon's time per probe (a receive that first peeks at each
// datagram's size, a new slice and struct per attribute, a page-sized
// batch), while a probe's own detection and decision cost a tenth of it.
// Here one receive takes a whole batch of up to nlBufSize bytes into a
// buffer that is reused, and each message is read in place.
const (
	msgPacket = 0 // NFULNL_MSG_PACKET
	msgConfig = 1 // NFULNL_MSG_CONFIG

	cfgCmd      = 1 // NFULA_CFG_CMD
	cfgMode     = 2 // NFULA_CFG_MODE
	cfgNlbufsiz = 3 // NFULA_CFG_NLBUFSIZ
	cfgTimeout  = 4 // NFULA_CFG_TIMEOUT
	cfgQthresh  = 5 // NFULA_CFG_QTHRESH
	cfgFlags    = 6 // NFULA_CFG_FLAGS

	cmdBind   = 1 // NFULNL_CFG_CMD_BIND
	cmdUnbind = 2 // NFULNL_CFG_CMD_UNBIND

	copyPacket = 2 // NFULNL_COPY_PACKET
	flagSeq    = 1 // NFULNL_CFG_F_SEQ

	attrPayload = 9  // NFULA_PAYLOAD
	attrPrefix  = 10 // NFULA_PREFIX
	attrSeq     = 12 // NFULA_SEQ

	// nlBufSize is the largest batch the kernel builds for one group
	// (it caps NFULA_CFG_NLBUFSIZ at 128 KiB; its default is a page).
	nlBufSize = 128 << 10
	// recvSize holds one batch whatever its size.
	recvSize = 2 * nlBufSize

	nlmsgHdrLen = 16
	nfgenLen    = 4
	nlaTypeMask = 0x3fff // without NLA_F_NESTED and NLA_F_NET_BYTEORDER
)

// configure sends one NFULNL_MSG_CONFIG for group with attrs and waits for
// the kernel's acknowledgement.
func configure(c *netlink.Conn, group uint16, attrs []netlink.Attribute) error {
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return err
	}
	msg := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_ULOG<<8 | msgConfig),
			Flags: netlink.Request | netlink.Acknowledge,
		},
		Data: append([]byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, byte(group >> 8), byte(group)}, data...),
	}
	_, err = c.Execute(msg)
	return err
}

// bind binds group and sets it up in one message (the kernel binds first,
// then applies the rest): whole packets up to snaplen, sequence numbers,
// the batch size and flush timeout, and the largest batch buffer.
func bind(c *netlink.Conn, cfg Config) error {
	mode := make([]byte, 6)
	binary.BigEndian.PutUint32(mode, cfg.Snaplen)
	mode[4] = copyPacket
	be32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	err := configure(c, cfg.Group, []netlink.Attribute{
		{Type: cfgCmd, Data: []byte{cmdBind}},
		{Type: cfgMode, Data: mode},
		{Type: cfgNlbufsiz, Data: be32(nlBufSize)},
		{Type: cfgFlags, Data: binary.BigEndian.AppendUint16(nil, flagSeq)},
		{Type: cfgTimeout, Data: be32(cfg.FlushTimeout)},
		{Type: cfgQthresh, Data: be32(cfg.QueueThreshold)},
	})
	if err != nil {
		return fmt.Errorf("bind NFLOG group %d: %w", cfg.Group, err)
	}
	return nil
}

// logged is one NFLOG message, its slices pointing into the batch.
type logged struct {
	seq     uint32
	hasSeq  bool
	prefix  []byte // without the trailing NUL
	payload []byte // nil when the message carried none
}

// eachLogged calls fn for each packet message of one received batch, in
// order, read into m (the caller's: nothing is allocated), and returns how many messages (or trailing bytes) were malformed
// and skipped. Acknowledgements, errors and other message types are
// skipped without counting.
func eachLogged(b []byte, m *logged, fn func(m *logged)) (malformed int) {
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return malformed + 1
		}
		n := int(binary.NativeEndian.Uint32(b))
		if n < nlmsgHdrLen || n > len(b) {
			return malformed + 1
		}
		typ := binary.NativeEndian.Uint16(b[4:])
		if typ == unix.NFNL_SUBSYS_ULOG<<8|msgPacket {
			*m = logged{}
			if readAttrs(b[nlmsgHdrLen:n], m) {
				fn(m)
			} else {
				malformed++
			}
		}
		b = b[min(align4(n), len(b)):]
	}
	return malformed
}

// readAttrs reads a packet message's body (nfgenmsg, then attributes)
// into m; false when it is malformed.
func readAttrs(body []byte, m *logged) bool {
	if len(body) < nfgenLen {
		return false
	}
	a := body[nfgenLen:]
	for len(a) > 0 {
		if len(a) < 4 {
			return false
		}
		n := int(binary.NativeEndian.Uint16(a))
		if n < 4 || n > len(a) {
			return false
		}
		data := a[4:n]
		switch binary.NativeEndian.Uint16(a[2:]) & nlaTypeMask {
		case attrPayload:
			m.payload = data
		case attrPrefix:
			for len(data) > 0 && data[len(data)-1] == 0 {
				data = data[:len(data)-1]
			}
			m.prefix = data
		case attrSeq:
			if len(data) < 4 {
				return false
			}
			m.seq, m.hasSeq = binary.BigEndian.Uint32(data), true
		}
		a = a[min(align4(n), len(a)):]
	}
	return true
}

func align4(n int) int { return (n + 3) &^ 3 }
