package ledger

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// Restore puts every block in force into the kernel with its remaining
// time (start, and the self-heal after the table was removed).
func (l *Ledger) Restore(ctx context.Context, why string) (int, error) {
	return l.commitMissing(ctx, why, nil)
}

// Reconcile puts back the blocks in force that inKernel lacks (the sets
// were flushed or elements deleted outside), and returns how many.
func (l *Ledger) Reconcile(ctx context.Context, inKernel map[netip.Addr]time.Duration) (int, error) {
	return l.commitMissing(ctx, "self-heal", func(a netip.Addr) bool { _, ok := inKernel[a]; return !ok })
}

func (l *Ledger) commitMissing(ctx context.Context, why string, missing func(netip.Addr) bool) (int, error) {
	now := time.Now()
	var blocks []nft.Block
	l.c.Store.Expiries(now, func(a netip.Addr, expires time.Time) {
		left := expires.Sub(now).Round(time.Second)
		if left < time.Second || missing != nil && !missing(a) {
			return
		}
		blocks = append(blocks, nft.Block{Addr: a, Timeout: left})
	})
	if len(blocks) == 0 {
		return 0, nil
	}
	if err := l.c.Kernel.Commit(ctx, blocks); err != nil {
		return 0, fmt.Errorf("restore %d blocks (%s): %w", len(blocks), why, err)
	}
	l.Stats.Restored.Add(uint64(len(blocks)))
	return len(blocks), nil
}

// Reassert is asked about a probe from a source the detector holds as
// blocked. If the ledger holds it committed since before ReassertAfter,
// the probe got past the drop rule: the element was lost, and goes back
// now with its remaining time (true). A probe on its way before the
// element landed, or from a source the ledger does not hold, changes
// nothing (false); held says whether the ledger holds the source at all.
func (l *Ledger) Reassert(a netip.Addr, port uint16, now time.Time) (back, held bool) {
	l.mu.Lock()
	if l.pending[a] > 0 {
		// A second probe while the first one's block is on its way: before
		// it is recorded, early tells the recording; once it is (its lines
		// not yet written), corroborate does.
		if len(l.early) < MaxInflight {
			l.early[a] = port
		}
		l.mu.Unlock()
		if l.c.Store.Has(a) {
			l.corroborate(a, port)
		}
		return false, true
	}
	last := l.reasserted[a]
	l.mu.Unlock()
	b, ok := l.c.Store.Get(a)
	if !ok {
		return false, false
	}
	since := b.Expires.Add(-b.Timeout)
	if last.After(since) {
		since = last
	}
	left := b.Expires.Sub(now).Round(time.Second)
	if now.Sub(since) < ReassertAfter || left < time.Second {
		l.corroborate(a, port)
		return false, true
	}
	if err := l.c.Kernel.Add(nft.Block{Addr: a, Timeout: left}); err != nil {
		return false, true
	}
	l.mu.Lock()
	if len(l.reasserted) >= MaxInflight {
		clear(l.reasserted)
	}
	l.reasserted[a] = now
	l.mu.Unlock()
	l.Stats.Restored.Add(1)
	l.c.Log.AttackWarn(alert.RestoredLine(a, nft.SetOf(a), left))
	return true, true
}

// corroborate asks the ledger's goroutine to strengthen a's weak block
// when a probe of another port than the one it rests on came from a (a
// probe on its way when the element landed, or a sample of the drop
// rule's): a forger repeating a packet to one port proves nothing more.
func (l *Ledger) corroborate(a netip.Addr, port uint16) {
	l.mu.Lock()
	on, weak := l.weak[a]
	if weak && on != port {
		delete(l.weak, a) // asked once
	}
	l.mu.Unlock()
	if !weak || on == port {
		return
	}
	select {
	case l.in <- strengthenTask{a}:
	default:
	}
}
