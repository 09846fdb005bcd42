package ledger

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// Op is one operation on the ledger, entered by its one door: Post (the
// capture path, which never waits) or Apply (every other origin, which
// waits until the operation is carried out and on disk). The set of
// operations is closed: Act, Lift, LiftAll, Strengthen, BlockPrefix.
type Op interface{ isOp() }

// Act carries out a decision of any origin: a block (its element in the
// kernel, recorded, followed), the response "log" or "command", and for
// an element the kernel holds already (origin kernel) the lift the
// decision asks for (decide.Decision.Lift).
type Act struct {
	Decision decide.Decision
	Evidence Evidence
	// At is when it was decided (time.Now when zero).
	At time.Time
	// again: the element is being added a second time, after a full set
	// refused it and a weak block made room.
	again bool
}

// Unblock lifts blocks: their elements in one transaction, their records,
// what followed them; and the blocks of IPv6 /64s in Prefixes (elements
// of blocked6_64, which have no record).
type Unblock struct {
	Addrs    []netip.Addr
	Prefixes []netip.Prefix
	// Cause is Unblocked, FleetUnblocked or Protected.
	Cause Cause
}

// UnblockAll lifts every block (both sets emptied in one transaction).
type UnblockAll struct{}

// Strengthen says a probe of Port came from Addr: a weak block of Addr
// that rests on another port rests on two now, and is kept (and, on
// unforgeable evidence, becomes an offence).
type Strengthen struct {
	Addr netip.Addr
	Port uint16
}

// BlockPrefix carries out the block of an IPv6 /64 (decide.DecidePrefix):
// its element in blocked6_64 with the decision's timeout, and a line once
// it is in. It is not recorded: the kernel's timeout ends it, a reinstall
// keeps it, `list` reads it from the kernel and Unblock.Prefixes lifts it;
// the journal, hosts.deny, the commands and the fleet do not know it.
type BlockPrefix struct {
	Decision decide.Decision
	Prefix   netip.Prefix
}

func (BlockPrefix) isOp() {}
func (Act) isOp()         {}
func (Unblock) isOp()     {}
func (UnblockAll) isOp()  {}
func (Strengthen) isOp()  {}

// Post hands ops to the ledger without waiting (the capture goroutine and
// verified mode). False when the ledger cannot take one now (too many
// blocks on their way, or its queue is full): then nothing of that op is
// done, and a held probe is the caller's to release. Only Act and
// Strengthen may be posted.
func (l *Ledger) Post(op Op) bool {
	switch o := op.(type) {
	case Act:
		return l.post(o)
	case Strengthen:
		l.corroborate(o.Addr, o.Port)
		return true
	case BlockPrefix:
		return l.blockPrefix(o)
	}
	panic(fmt.Sprintf("ledger: %T cannot be posted", op))
}

// Apply carries out ops in order and waits until they are in the kernel,
// recorded and on disk. Consecutive Acts go into the kernel in one
// transaction; the ledger's goroutine never waits for the kernel or the
// disk meanwhile, so a detected block's element goes in while a large
// batch is committed and journaled. It returns how many blocks it recorded
// plus how many records it lifted.
//
// When the journal could not be written or synced, every operation is
// carried out all the same and the error is an ErrNotDurable (wrapping the
// journal's): they hold until the daemon stops, and survive a restart only
// once the ledger has rewritten the journal (see durable.go).
func (l *Ledger) Apply(ctx context.Context, ops ...Op) (int, error) {
	total := 0
	var notDurable error
	for i := 0; i < len(ops); {
		j := i + 1
		if _, ok := ops[i].(Act); ok {
			for j < len(ops) && isAct(ops[j]) {
				j++
			}
		}
		n, err := l.apply(ctx, ops[i:j])
		total += n
		switch {
		case errors.Is(err, ErrNotDurable):
			notDurable = err
		case err != nil:
			return total, err
		}
		i = j
	}
	return total, notDurable
}

func isAct(op Op) bool { _, ok := op.(Act); return ok }

func (l *Ledger) apply(ctx context.Context, ops []Op) (int, error) {
	switch o := ops[0].(type) {
	case Act:
		acts := make([]Act, len(ops))
		for i, op := range ops {
			acts[i] = op.(Act)
		}
		return l.acts(ctx, acts)
	case Unblock:
		n, err := l.unblockPrefixes(ctx, o.Prefixes)
		if err != nil || len(o.Addrs) == 0 {
			return n, err
		}
		if err := l.c.Kernel.Delete(ctx, o.Addrs...); err != nil {
			return n, err
		}
		m, err := l.call(ctx, func(r chan reply) task { return liftTask{addrs: o.Addrs, cause: o.Cause, reply: r} })
		return n + m, err
	case UnblockAll:
		if err := l.c.Kernel.FlushSets(ctx); err != nil {
			return 0, err
		}
		return l.call(ctx, func(r chan reply) task { return liftTask{all: true, cause: Unblocked, reply: r} })
	case Strengthen:
		l.corroborate(o.Addr, o.Port)
		return 0, nil
	}
	return 0, fmt.Errorf("ledger: unknown operation %T", ops[0])
}

// acts commits the elements of a batch of decisions on the caller's
// goroutine, then has the ledger's goroutine record them.
func (l *Ledger) acts(ctx context.Context, acts []Act) (int, error) {
	now := time.Now()
	var blocks []nft.Block
	for i := range acts {
		if acts[i].At.IsZero() {
			acts[i].At = now
		}
		if d := acts[i].Decision; d.Action == decide.Block && !inKernel(d, l.cfg.Load().BlockTimeout()) {
			blocks = append(blocks, nft.Block{Addr: d.Addr, Timeout: d.Timeout})
		}
	}
	// Until recorded, the batch counts in Len (the capacity), a chunk at a
	// time (recordTask.run).
	l.batched.Add(int64(len(acts)))
	if len(blocks) > 0 {
		if err := l.c.Kernel.Commit(ctx, blocks); err != nil {
			l.batched.Add(-int64(len(acts)))
			return 0, err
		}
	}
	r := make(chan reply, 1)
	select {
	case l.in <- &recordTask{acts: acts, reply: r}:
	case <-ctx.Done():
		l.batched.Add(-int64(len(acts)))
		return 0, ctx.Err()
	}
	return wait(ctx, r)
}

// call hands the task made with a reply channel to the ledger's
// goroutine and waits for its reply.
func (l *Ledger) call(ctx context.Context, mk func(chan reply) task) (int, error) {
	r := make(chan reply, 1)
	select {
	case l.in <- mk(r):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return wait(ctx, r)
}

func wait(ctx context.Context, r chan reply) (int, error) {
	select {
	case x := <-r:
		return x.n, x.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

type reply struct {
	n   int
	err error
}

// unblockPrefixes deletes the elements of IPv6 /64s from blocked6_64
// (a missing one is no error) and says so, a line each.
func (l *Ledger) unblockPrefixes(ctx context.Context, ps []netip.Prefix) (int, error) {
	if len(ps) == 0 {
		return 0, nil
	}
	if err := l.c.Kernel.DeletePrefixes(ctx, ps...); err != nil {
		return 0, err
	}
	for _, p := range ps {
		l.c.Log.Attack(alert.PrefixUnblockedLine(p))
	}
	return len(ps), nil
}

// blockPrefix queues a /64's element; its line is written once the element
// is in (off the writer's goroutine, which must not wait).
func (l *Ledger) blockPrefix(o BlockPrefix) bool {
	d := o.Decision
	line := alert.PrefixBlockedLine(o.Prefix, "inet "+nft.TableName, nft.SetBlocked64, d.Timeout, d.Why)
	err := l.c.Kernel.Add(nft.Block{Addr: o.Prefix.Addr(), Timeout: d.Timeout, Prefix64: true, Done: func(err error) {
		if err != nil {
			go l.c.Log.AttackWarn(fmt.Sprintf("attackalert: Prefix %s could not be blocked: %v", o.Prefix, err))
			return
		}
		go l.c.Log.Attack(line)
	}})
	return err == nil
}
