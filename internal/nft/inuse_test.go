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
	rs := nft.Build(config.Default(), nft.Shape{InUse: nft.InUse{
		AnyTCP: []uint16{111},
		TCP4:   []netip.AddrPort{netip.MustParseAddrPort("10.201.0.1:1")},
		TCP6:   []netip.AddrPort{netip.MustParseAddrPort("[fd00:201::1]:79")},
		AnyUDP: []uint16{69},
		UDP4:   []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:161")},
	}})
	viaNetlink, _ := textMatchesNetlink(t, rs)
	out := viaNetlink.MustRun("nft", "list", "set", "inet", "portsentry", "tcp_inuse4")
	if !strings.Contains(out, "10.201.0.1 . 1") {
		t.Fatalf("tcp_inuse4:\n%s", out)
	}

	rs = nft.Build(config.Default(), nft.Shape{InUse: nft.InUse{TCP4: []netip.AddrPort{netip.MustParseAddrPort("10.201.0.1:8080")}}})
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

// The wildcard ports of both families and of one family all land in the
// one family-agnostic port set per protocol.
func TestInUseWildcardUnion(t *testing.T) {
	text := nft.Build(config.Default(), nft.Shape{InUse: nft.InUse{
		AnyTCP: []uint16{111}, AnyTCP4: []uint16{25}, AnyTCP6: []uint16{443, 25},
		AnyUDP6: []uint16{69},
	}}).Text()
	for _, want := range []string{
		"set tcp_inuse {\n\t\ttype inet_service\n\t\telements = {\n\t\t\t25, 111, 443\n",
		"set udp_inuse {\n\t\ttype inet_service\n\t\telements = {\n\t\t\t69\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
}
