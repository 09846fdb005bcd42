package nft

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The writer's own encoding of element additions is google/nftables',
// byte for byte: both families and the /64s, more elements than one
// message holds, an element without a timeout.
func TestElemBatchIsTheLibrarysEncoding(t *testing.T) {
	var batch []Block
	for i := range 2500 {
		batch = append(batch, Block{Addr: netip.AddrFrom4([4]byte{10, 201, byte(i >> 8), byte(i)}), Timeout: time.Duration(i+1) * time.Second})
		if i%3 == 0 {
			batch = append(batch, Block{Addr: netip.AddrFrom16([16]byte{0xfd, 0, 2, 1, 14: byte(i >> 8), 15: byte(i)}), Timeout: time.Hour})
		}
	}
	batch = append(batch,
		Block{Addr: netip.MustParseAddr("fd00:201::1:2:3:4"), Timeout: time.Minute, Prefix64: true},
		Block{Addr: netip.MustParseAddr("::ffff:10.201.9.9"), Timeout: time.Minute},
		Block{Addr: netip.MustParseAddr("10.201.9.10")},
	)
	w := NewWriter(WriterConfig{})
	var lib []netlink.Message
	c, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		lib = append(lib, req...)
		var acks []netlink.Message
		for _, m := range req {
			if m.Header.Flags&netlink.Acknowledge != 0 {
				acks = append(acks, netlink.Message{Header: netlink.Header{Type: netlink.Error, Sequence: m.Header.Sequence}, Data: make([]byte, 4)})
			}
		}
		return acks, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.flush(c, batch); err != nil {
		t.Fatal(err)
	}
	var e elemBatch
	for round := range 2 { // the buffers reused
		own := e.encode(w, batch)
		if len(own) != len(lib) {
			t.Fatalf("round %d: %d messages, the library %d", round, len(own), len(lib))
		}
		for i := range own {
			if own[i].Header.Type != lib[i].Header.Type || own[i].Header.Flags != lib[i].Header.Flags || !bytes.Equal(own[i].Data, lib[i].Data) {
				t.Fatalf("round %d, message %d of %d differs:\nown %v %v % x\nlib %v %v % x", round, i, len(own),
					own[i].Header.Type, own[i].Header.Flags, own[i].Data[:min(64, len(own[i].Data))],
					lib[i].Header.Type, lib[i].Header.Flags, lib[i].Data[:min(64, len(lib[i].Data))])
			}
		}
	}
	if lib[1].Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWSETELEM) {
		t.Errorf("the library's second message is %v, not NEWSETELEM", lib[1].Header.Type)
	}
}
