package nft_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// A completed handshake makes its source a peer (IPv4 and IPv6), a SYN
// that gets a reset does not, and PeerLookup reads the sets one element
// at a time.
func TestPeersFromHandshakes(t *testing.T) {
	netnstest.Require(t)
	p := netnstest.NewPair(t)
	install(t, p.A, nft.Build(config.Default(), nft.Shape{}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv := p.A.Command(ctx, "ncat", "-k", "-l", "8080")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); srv.Wait() }()
	time.Sleep(200 * time.Millisecond)
	// A SYN to a closed port (reset): conntrack never sees it assured.
	p.B.Run("ncat", "-z", "-w", "1", netnstest.AddrA, "8081")
	if out := p.A.MustRun("nft", "list", "set", "inet", "portsentry", "peers"); strings.Contains(out, netnstest.AddrB) {
		t.Fatalf("a refused SYN made a peer:\n%s", out)
	}
	for _, dst := range []string{netnstest.AddrA, netnstest.Addr6A} {
		p.B.MustRun("sh", "-c", "echo hi | ncat -w 2 "+dst+" 8080")
	}
	look := nft.NewPeerLookup(p.A.Open())
	defer look.Close()
	for _, c := range []struct {
		addr string
		peer bool
	}{{netnstest.AddrB, true}, {netnstest.Addr6B, true}, {"10.201.0.9", false}, {"fd00:201::9", false}} {
		if got := look.Peer(netip.MustParseAddr(c.addr)); got != c.peer {
			t.Errorf("Peer(%s) = %v, want %v", c.addr, got, c.peer)
		}
	}
	if n := look.Errors(); n != 0 {
		t.Errorf("%d lookups failed", n)
	}
	out := p.A.MustRun("nft", "list", "set", "inet", "portsentry", "peers6")
	if !strings.Contains(out, netnstest.Addr6B+" timeout 30m expires") {
		t.Errorf("peers6 lacks %s with the window:\n%s", netnstest.Addr6B, out)
	}
}

// A blocked /64 drops its sources, but a peer's own address in it: the
// peer keeps reaching the host while its neighbours do not.
func TestBlocked64SparesPeer(t *testing.T) {
	netnstest.Require(t, "ncat")
	p := netnstest.NewPair(t)
	install(t, p.A, nft.Build(config.Default(), nft.Shape{}))
	p.B.MustRun("ip", "addr", "add", "fd00:201::3/64", "dev", "veth-b", "nodad")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := p.A.Command(ctx, "ncat", "-k", "-l", "8080", "--sh-exec", "echo hi")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); srv.Wait() }()
	time.Sleep(200 * time.Millisecond)
	reach := func(src string) bool {
		out, _ := p.B.Run("ncat", "--recv-only", "-w", "2", "-s", src, netnstest.Addr6A, "8080")
		return strings.Contains(out, "hi")
	}
	if !reach(netnstest.Addr6B) || !reach("fd00:201::3") {
		t.Fatal("no connection before the /64's block")
	}
	p.A.MustRun("nft", "delete", "element", "inet", "portsentry", "peers6", "{ fd00:201::3 }")
	p.A.MustRun("nft", "add", "element", "inet", "portsentry", "blocked6_64", "{ fd00:201:: timeout 1m }")
	if reach("fd00:201::3") {
		t.Error("an address of the blocked /64 that is no peer still connects")
	}
	if !reach(netnstest.Addr6B) {
		t.Error("the peer's own address in the blocked /64 no longer connects")
	}
}
