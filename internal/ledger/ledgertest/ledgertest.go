// Package ledgertest has a Kernel that records what the ledger asks of
// the kernel, and a Follower that records what the ledger tells its
// followers, for unit tests that need no root. The kernel tier tests the
// real writer.
package ledgertest

import (
	"context"
	"net/netip"
	"sync"

	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// Kernel records elements added and deleted. Fail, when set, fails every
// add.
type Kernel struct {
	mu   sync.Mutex
	Fail error
	// CommitGate, when set, holds every Commit until it is closed (or
	// receives): a transaction that takes its time.
	CommitGate chan struct{}
	// Refuse, when set, is asked about every Add: an error it returns
	// fails that element alone, which is not added (a full set, say).
	Refuse          func(nft.Block) error
	added           []nft.Block
	deleted         []netip.Addr
	deletedPrefixes []netip.Prefix
}

// Add records b and reports it committed at once.
func (k *Kernel) Add(b nft.Block) error {
	k.mu.Lock()
	var err error
	if k.Refuse != nil {
		err = k.Refuse(b)
	}
	if err == nil {
		k.added = append(k.added, nft.Block{Addr: b.Addr, Timeout: b.Timeout, Prefix64: b.Prefix64})
		err = k.Fail
	}
	k.mu.Unlock()
	if b.Done != nil {
		b.Done(err)
	}
	return nil
}

// Commit records the blocks (once CommitGate lets it).
func (k *Kernel) Commit(ctx context.Context, blocks []nft.Block) error {
	if k.CommitGate != nil {
		select {
		case <-k.CommitGate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.Fail != nil {
		return k.Fail
	}
	for _, b := range blocks {
		k.added = append(k.added, nft.Block{Addr: b.Addr, Timeout: b.Timeout, Prefix64: b.Prefix64})
	}
	return nil
}

// CommitStream commits each part received (as Commit) until parts is
// closed, and releases it.
func (k *Kernel) CommitStream(ctx context.Context, parts <-chan []nft.Block, release func([]nft.Block)) error {
	var err error
	for p := range parts {
		if err == nil {
			err = k.Commit(ctx, p)
		}
		if release != nil {
			release(p)
		}
	}
	return err
}

// Delete records the addresses.
func (k *Kernel) Delete(_ context.Context, addrs ...netip.Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.deleted = append(k.deleted, addrs...)
	return nil
}

// DeletePrefixes records the prefixes.
func (k *Kernel) DeletePrefixes(_ context.Context, ps ...netip.Prefix) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.deletedPrefixes = append(k.deletedPrefixes, ps...)
	return nil
}

// DeletedPrefixes returns the prefixes deleted so far.
func (k *Kernel) DeletedPrefixes() []netip.Prefix {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]netip.Prefix(nil), k.deletedPrefixes...)
}

// FlushSets records a flush as the deletion of every address added so far.
func (k *Kernel) FlushSets(context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, b := range k.added {
		k.deleted = append(k.deleted, b.Addr)
	}
	k.added = nil
	return nil
}

// Added is every element added so far.
func (k *Kernel) Added() []nft.Block {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]nft.Block(nil), k.added...)
}

// Deleted is every element deleted so far.
func (k *Kernel) Deleted() []netip.Addr {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]netip.Addr(nil), k.deleted...)
}

// Verdicts records NFQUEUE verdicts.
type Verdicts struct {
	mu sync.Mutex
	// Got maps a packet ID to its verdict (true: drop).
	Got map[uint32]bool
}

// SetVerdict records the verdict.
func (v *Verdicts) SetVerdict(id uint32, drop bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.Got == nil {
		v.Got = map[uint32]bool{}
	}
	v.Got[id] = drop
	return nil
}

// Verdict returns the verdict of id, if given.
func (v *Verdicts) Verdict(id uint32) (drop, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	drop, ok = v.Got[id]
	return
}
