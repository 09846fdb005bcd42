package ledgertest

import (
	"context"
	"net/netip"
	"sync"

	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
)

// Follower records the blocks and lifts the ledger tells it of. Gate,
// when set, holds every Blocked until it is closed (or receives): a
// follower, or a disk, that takes its time.
type Follower struct {
	Gate    chan struct{}
	mu      sync.Mutex
	blocked []ledger.Entry
	lifted  []ledger.Lift
}

// Blocked records e (once Gate lets it).
func (f *Follower) Blocked(ctx context.Context, e *ledger.Entry) {
	if f.Gate != nil {
		select {
		case <-f.Gate:
		case <-ctx.Done():
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blocked = append(f.blocked, *e)
}

// Lifted records l.
func (f *Follower) Lifted(_ context.Context, l ledger.Lift) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lifted = append(f.lifted, l)
}

// Blocks is every entry told so far.
func (f *Follower) Blocks() []ledger.Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ledger.Entry(nil), f.blocked...)
}

// Lifts is every lift told so far.
func (f *Follower) Lifts() []ledger.Lift {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ledger.Lift(nil), f.lifted...)
}

// Has reports whether a block of a was told.
func (f *Follower) Has(a netip.Addr) bool {
	for _, e := range f.Blocks() {
		if e.Decision.Addr == a {
			return true
		}
	}
	return false
}
