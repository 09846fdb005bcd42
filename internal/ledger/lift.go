package ledger

import (
	"context"
	"net/netip"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// lifted removes a's record once its element is gone, has the followers
// lift what followed it, and lets the detector start over. It reports
// whether the ledger held a. An administrator's lift resets the offences.
func (l *Ledger) lifted(ctx context.Context, a netip.Addr, cause Cause, why string) bool {
	var b, ok = l.c.Store.Remove(a)
	l.forgetLocal(a)
	if cause.Administrator() {
		// An administrator's word resets the offences: the next block
		// starts from block.timeout.
		if err := l.c.Store.ForgetOffender(a); state.WithoutJournal(err) != nil {
			l.c.Log.Errorf("could not record the unblock of %s: %v", a, err)
		}
		l.Stats.Unblocked.Add(1)
	}
	l.followLift(ctx, Lift{Addr: a, Cause: cause, Held: ok, Record: b, Why: why})
	return ok
}

func (l *Ledger) expire(ctx context.Context, now time.Time) {
	for _, b := range l.c.Store.Expire(now) {
		l.Stats.Expired.Add(1)
		l.forgetLocal(b.Addr)
		l.followLift(ctx, Lift{Addr: b.Addr, Cause: Expired, Held: true, Record: b})
	}
}

// forgetLocal drops what the ledger keeps in memory of a block.
func (l *Ledger) forgetLocal(a netip.Addr) {
	l.mu.Lock()
	delete(l.reasserted, a)
	delete(l.weak, a)
	l.mu.Unlock()
}

// evictWeakest lifts the oldest weak block to make room for a stronger
// one. It reports whether it lifted one.
func (l *Ledger) evictWeakest() bool {
	for {
		l.mu.Lock()
		if len(l.weakOrder) == 0 {
			l.mu.Unlock()
			return false
		}
		a := l.weakOrder[0]
		l.weakOrder = l.weakOrder[1:]
		_, weak := l.weak[a]
		delete(l.weak, a)
		l.mu.Unlock()
		if !weak {
			continue // lifted or corroborated meanwhile
		}
		if err := l.c.Kernel.Delete(context.Background(), a); err != nil {
			l.c.Log.Errorf("could not make room in the sets (lift %s): %v", a, err)
			return false
		}
		l.Stats.Evicted.Add(1)
		l.lifted(context.Background(), a, Evicted, "")
		return true
	}
}

// disown lifts the kernel's element of a, which the ledger does not hold
// and the decision refused (why completes alert.LiftedLine).
func (l *Ledger) disown(ctx context.Context, a netip.Addr, why string) {
	if l.Holds(a) {
		return
	}
	if err := l.c.Kernel.Delete(ctx, a); err != nil {
		l.c.Log.Errorf("could not lift the kernel's block of %s: %v", a, err)
		return
	}
	l.Stats.Disowned.Add(1)
	l.followLift(ctx, Lift{Addr: a, Cause: Disowned, Why: why})
}

// keepRoom gives up the oldest weak blocks (one probe, which anyone can
// spoof) while fewer than Headroom places are free.
func (l *Ledger) keepRoom() {
	cfg := l.cfg.Load()
	room := decide.Headroom(cfg)
	for room > 0 && l.Len() > cfg.Block.SetSize-room && l.Weak() > 0 {
		if !l.evictWeakest() {
			return
		}
	}
}

// strengthen makes a's weak block an offence, with the repeat-offender
// length: the element is re-added with the longer remaining time. A block
// on forgeable evidence is only kept (no longer the first a full set
// gives up): forged probes never lengthen a block.
func (l *Ledger) strengthen(a netip.Addr) {
	cfg := l.cfg.Load()
	old, _ := l.c.Store.Get(a)
	offence := func(times int) time.Duration { return decide.RepeatTimeout(cfg, times) }
	if decide.EvidenceOf(old.Evidence) == decide.Forgeable {
		offence = nil // kept, but forgeable evidence is never an offence
	}
	b, ok, err := l.c.Store.Strengthen(a, offence)
	if state.WithoutJournal(err) != nil {
		l.c.Log.Errorf("could not record the block of %s: %v", a, err)
	}
	if !ok {
		return
	}
	l.Stats.Corroborated.Add(1)
	if left := time.Until(b.Expires).Round(time.Second); b.Timeout > old.Timeout && left >= time.Second {
		if err := l.c.Kernel.Add(nft.Block{Addr: a, Timeout: left}); err != nil {
			l.c.Log.Errorf("could not lengthen the block of %s: %v", a, err)
		}
	}
}

// settleStrength makes a weak block (on port) stronger when a probe of
// another port came while it was on its way in, and keeps the weak ones, oldest first, for
// a full set to give up.
func (l *Ledger) settleStrength(d *decide.Decision, port uint16) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if other, ok := l.early[d.Addr]; ok {
		delete(l.early, d.Addr)
		if d.Weak && other != port {
			d.Weak = false
			l.Stats.Corroborated.Add(1)
			if t := decide.RepeatTimeout(l.cfg.Load(), d.Times); t > d.Timeout && d.Evidence != decide.Forgeable {
				// The element went in with block.timeout: lengthen it.
				_ = l.c.Kernel.Add(nft.Block{Addr: d.Addr, Timeout: t})
				d.Timeout = t
			}
		}
	}
	if !d.Weak {
		return
	}
	l.weak[d.Addr] = port
	l.weakOrder = append(l.weakOrder, d.Addr)
	if len(l.weakOrder) > 2*len(l.weak)+1024 {
		// Most entries expired or were corroborated: keep the rest.
		kept := l.weakOrder[:0]
		for _, w := range l.weakOrder {
			if _, ok := l.weak[w]; ok {
				kept = append(kept, w)
			}
		}
		l.weakOrder = kept
	}
}
