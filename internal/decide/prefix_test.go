package decide

import (
	"net/netip"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/packet"
)

// prefixes is a guard that lists what it protects.
type prefixes []netip.Prefix

func (g prefixes) Protected(a netip.Addr) (string, bool) {
	for _, p := range g {
		if p.Contains(a) {
			return "listed", true
		}
	}
	return "", false
}
func (g prefixes) Prefixes() []netip.Prefix { return g }

// A /64 is blocked for block.timeout, locally, on forgeable evidence,
// unless it holds a protected address or the response does not block.
func TestDecidePrefix(t *testing.T) {
	now := time.Now()
	g := prefixes{netip.MustParsePrefix("fd00:201::1/128")}
	l := &ledger{held: map[netip.Addr]bool{}, times: map[netip.Addr]int{}}
	d := New(parse(t, ""), g, l)
	free := netip.MustParsePrefix("fd00:201:0:1::/64")
	if got := d.DecidePrefix(free, 4, packet.TCP, now); got.Action != Block || got.Timeout != time.Hour || got.Reach != Local || got.Evidence != Forgeable {
		t.Errorf("a /64 of scanners: %+v", got)
	}
	if got := d.DecidePrefix(netip.MustParsePrefix("fd00:201::/64"), 4, packet.TCP, now); got.Action != Refuse || got.Reason != Protected {
		t.Errorf("a /64 holding a protected address: %+v", got)
	}
	if got := New(parse(t, "tcp: {response: log}\n"), g, l).DecidePrefix(free, 4, packet.TCP, now); got.Action == Block {
		t.Errorf("response log: %+v", got)
	}
	if got := New(parse(t, ""), guard{}, l).DecidePrefix(free, 4, packet.UDP, now); got.Action != Block {
		t.Errorf("a guard that lists nothing: %+v", got)
	}
}
