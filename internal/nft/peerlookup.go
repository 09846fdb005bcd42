package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// PeerLookup answers whether an address is in peers/peers6 now, one
// element asked of the kernel (no dump), each answer kept for
// PeerCacheFor. It is the decision's Peers for what carries no peer rule:
// the fleet's blocks, which a receiver checks against its own peers, and
// NFQUEUE's held probes. Safe for concurrent use.
type PeerLookup struct {
	netns *os.File
	mu    sync.Mutex
	c     *netlink.Conn
	cache map[netip.Addr]peerAnswer
	fails int
}

type peerAnswer struct {
	peer bool
	at   time.Time
}

// PeerCacheFor is how long an answer is kept; peerCacheMax bounds the
// answers kept (beyond it they are all dropped).
const (
	PeerCacheFor = time.Second
	peerCacheMax = 1 << 14
)

// NewPeerLookup asks in the network namespace netns (nil: the process's).
func NewPeerLookup(netns *os.File) *PeerLookup {
	return &PeerLookup{netns: netns, cache: map[netip.Addr]peerAnswer{}}
}

// Peer reports whether a is a peer of this host. A failed lookup says no.
func (p *PeerLookup) Peer(a netip.Addr) bool {
	a = a.Unmap()
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if ans, ok := p.cache[a]; ok && now.Sub(ans.at) < PeerCacheFor {
		return ans.peer
	}
	peer, err := p.ask(a)
	if err != nil {
		p.fails++
		if p.c != nil {
			p.c.Close()
			p.c = nil
		}
		return false
	}
	if len(p.cache) >= peerCacheMax {
		clear(p.cache)
	}
	p.cache[a] = peerAnswer{peer, now}
	return peer
}

// Errors counts the lookups that failed (each answered "no peer").
func (p *PeerLookup) Errors() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fails
}

// Close closes the lookup's socket.
func (p *PeerLookup) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.c == nil {
		return nil
	}
	err := p.c.Close()
	p.c = nil
	return err
}

// ask gets a's element of peers/peers6: ENOENT is no peer.
func (p *PeerLookup) ask(a netip.Addr) (bool, error) {
	if p.c == nil {
		cfg := &netlink.Config{}
		if p.netns != nil {
			cfg.NetNS = int(p.netns.Fd())
		}
		c, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
		if err != nil {
			return false, fmt.Errorf("open netfilter netlink socket: %w", err)
		}
		p.c = c
	}
	set := SetPeers
	if a.Is6() {
		set = SetPeers6
	}
	req, err := getElemRequest(set, a.AsSlice())
	if err != nil {
		return false, err
	}
	_, err = p.c.Execute(req)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOENT):
		return false, nil
	}
	return false, fmt.Errorf("get element %s of set %s: %w", a, set, err)
}

// getElemRequest asks for one element of set by key (nft get element).
func getElemRequest(set string, key []byte) (netlink.Message, error) {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, TableName)
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, set)
	ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(ae *netlink.AttributeEncoder) error {
		ae.Nested(unix.NFTA_LIST_ELEM, func(ae *netlink.AttributeEncoder) error {
			ae.Nested(unix.NFTA_SET_ELEM_KEY, func(ae *netlink.AttributeEncoder) error {
				ae.Bytes(unix.NFTA_DATA_VALUE, key)
				return nil
			})
			return nil
		})
		return nil
	})
	attrs, err := ae.Encode()
	if err != nil {
		return netlink.Message{}, fmt.Errorf("encode get element: %w", err)
	}
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM),
			Flags: netlink.Request,
		},
		Data: append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, attrs...),
	}, nil
}
