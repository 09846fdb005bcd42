package nft_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// The in-use sets render and install alike, and UpdateInUse replaces
// their contents in place.
func TestInUseSets(t *testing.T) {
	netnstest.Require(t)
	rs := nft.Build(config.Default())
	rs.SetInUse(nft.InUse{
		TCPAny: []uint16{111},
		TCP4:   []nft.AddrPort{{Addr: netip.MustParseAddr("10.201.0.1"), Port: 1}},
		TCP6:   []nft.AddrPort{{Addr: netip.MustParseAddr("fd00:201::1"), Port: 79}},
		UDPAny: []uint16{69},
		UDP4:   []nft.AddrPort{{Addr: netip.MustParseAddr("127.0.0.1"), Port: 161}},
	})
	viaNetlink, _ := textMatchesNetlink(t, rs)
	out := viaNetlink.MustRun("nft", "list", "set", "inet", "portsentry", "tcp_inuse4")
	if !strings.Contains(out, "10.201.0.1 . 1") {
		t.Fatalf("tcp_inuse4:\n%s", out)
	}

	rs.SetInUse(nft.InUse{TCP4: []nft.AddrPort{{Addr: netip.MustParseAddr("10.201.0.1"), Port: 8080}}})
	c, err := nft.Dial(viaNetlink.Open())
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	if err := rs.UpdateInUse(c); err != nil {
		t.Fatal(err)
	}
	out = viaNetlink.MustRun("nft", "list", "set", "inet", "portsentry", "tcp_inuse4")
	if !strings.Contains(out, "10.201.0.1 . 8080") || strings.Contains(out, "10.201.0.1 . 1 ") {
		t.Fatalf("after UpdateInUse:\n%s", out)
	}
	if out := viaNetlink.MustRun("nft", "list", "set", "inet", "portsentry", "tcp_inuse"); strings.Contains(out, "111") {
		t.Fatalf("tcp_inuse not emptied:\n%s", out)
	}
}
