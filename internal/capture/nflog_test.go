package capture

import (
	"encoding/binary"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// packetMsg encodes one NFLOG packet message as the kernel sends it.
func packetMsg(t testing.TB, seq uint32, prefix string, payload []byte) []byte {
	t.Helper()
	attrs := []netlink.Attribute{{Type: attrPrefix, Data: append([]byte(prefix), 0)}, {Type: attrSeq, Data: binary.BigEndian.AppendUint32(nil, seq)}}
	if payload != nil {
		attrs = append(attrs, netlink.Attribute{Type: attrPayload, Data: payload})
	}
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		t.Fatal(err)
	}
	m := netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_ULOG<<8 | msgPacket)}, Data: append([]byte{unix.AF_INET, 0, 0, 5}, data...)}
	m.Header.Length = uint32(nlmsgHdrLen + len(m.Data))
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A batch of messages is read in order, in place; a message of another
// type is skipped; a truncated tail is counted as malformed and nothing of
// it is handed on.
func TestEachLogged(t *testing.T) {
	pkt := []byte{0x45, 0, 0, 40}
	b := append(packetMsg(t, 7, PrefixTCP, pkt), packetMsg(t, 8, PrefixUDPAgain, []byte{1, 2, 3})...)
	done := netlink.Message{Header: netlink.Header{Type: netlink.Done, Length: nlmsgHdrLen + 4}, Data: make([]byte, 4)}
	db, _ := done.MarshalBinary()
	b = append(b, db...)
	third := packetMsg(t, 9, PrefixTCP, pkt)
	b = append(b, third[:len(third)-3]...)
	var got []logged
	var m logged
	bad := eachLogged(b, &m, func(m *logged) { got = append(got, *m) })
	if bad != 1 || len(got) != 2 {
		t.Fatalf("%d messages, %d malformed; want 2 and 1", len(got), bad)
	}
	if got[0].seq != 7 || !got[0].hasSeq || prefixes[string(got[0].prefix)] != RuleTCP || string(got[0].payload) != string(pkt) {
		t.Errorf("first: %+v", got[0])
	}
	if got[1].seq != 8 || prefixes[string(got[1].prefix)] != RuleUDPAgain {
		t.Errorf("second: %+v", got[1])
	}
	if n := testing.AllocsPerRun(100, func() { eachLogged(b, &m, func(*logged) {}) }); n != 0 {
		t.Errorf("%v allocations a batch", n)
	}
}

// FuzzEachLogged: any bytes, as a receive could return them, are read
// without panicking, and every slice handed on lies inside the batch.
func FuzzEachLogged(f *testing.F) {
	f.Add(packetMsg(f, 1, PrefixTCP, []byte{0x45, 0, 0, 20}))
	f.Add(append(packetMsg(f, 1, "", nil), 1, 2, 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m logged
		eachLogged(b, &m, func(m *logged) {
			for _, s := range [][]byte{m.prefix, m.payload} {
				if len(s) > len(b) {
					t.Fatalf("a slice of %d bytes from a batch of %d", len(s), len(b))
				}
			}
		})
	})
}
