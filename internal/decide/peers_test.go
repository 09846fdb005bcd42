package decide

import (
	"net/netip"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// peerSet is a Peers of fixed addresses.
type peerSet map[netip.Addr]bool

func (p peerSet) Peer(a netip.Addr) bool { return p[a] }

// A receiver applies its own peers to the fleet's blocks: one of its peers
// is refused on corroborated or shared forgeable evidence, taken on a
// handshake; without Peers nothing is refused for it.
func TestFleetBlockOfAPeer(t *testing.T) {
	peer, other := netip.MustParseAddr("10.201.0.7"), netip.MustParseAddr("10.201.0.8")
	l := &ledger{held: map[netip.Addr]bool{}, times: map[netip.Addr]int{}, from: map[string]int{}}
	d := New(parse(t, "fleet: {servers: [nats://n1:4222], share_forgeable: true}\n"), guard{}, l)
	req := func(a netip.Addr, ev Evidence) Request {
		return Request{Addr: a, Origin: state.OriginFleet, Timeout: time.Hour, Evidence: ev, FleetHost: "h2", Now: time.Now()}
	}
	if got := d.Decide(req(peer, Corroborated)); got.Action != Block {
		t.Fatalf("no Peers yet: %+v", got)
	}
	d.SetPeers(peerSet{peer: true})
	for _, c := range []struct {
		a    netip.Addr
		ev   Evidence
		want Action
	}{{peer, Forgeable, Refuse}, {peer, Corroborated, Refuse}, {peer, Unforgeable, Block}, {other, Forgeable, Block}} {
		got := d.Decide(req(c.a, c.ev))
		if got.Action != c.want || (c.want == Refuse && got.Reason != Peer) {
			t.Errorf("%s on %v: %v %v, want %v", c.a, c.ev, got.Action, got.Reason, c.want)
		}
	}
}
