package ledger

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// task is one piece of work for the ledger's goroutine.
type task interface {
	run(ctx context.Context, l *Ledger)
}

// actTask is a posted decision (Post).
type actTask struct{ a Act }

func (t actTask) run(ctx context.Context, l *Ledger) { l.act(ctx, t.a) }

// recordTask records a batch whose elements are in (Apply), a chunk at a
// time.
type recordTask struct {
	acts  []Act
	done  []recorded
	reply chan reply
}

// RecordChunk is how many blocks of a batch the ledger's goroutine records
// before it takes other work (a posted block's element) again.
const RecordChunk = 32

func (t *recordTask) run(ctx context.Context, l *Ledger) {
	k := min(RecordChunk, len(t.acts))
	for _, a := range t.acts[:k] {
		if r, ok := l.recordAct(ctx, a); ok {
			t.done = append(t.done, r)
		}
	}
	l.batched.Add(-int64(k))
	if t.acts = t.acts[k:]; len(t.acts) > 0 {
		l.later(t)
		return
	}
	l.announceQ <- announcement{recs: t.done, reply: t.reply}
	l.keepRoom()
}

// liftTask lifts records whose elements are gone (Apply: Unblock,
// UnblockAll).
type liftTask struct {
	addrs []netip.Addr
	all   bool
	cause Cause
	reply chan reply
}

func (t liftTask) run(ctx context.Context, l *Ledger) {
	n := 0
	if t.all {
		for _, b := range l.c.Store.Active(time.Time{}) {
			t.addrs = append(t.addrs, b.Addr)
		}
	}
	for _, a := range t.addrs {
		if l.lifted(ctx, a, t.cause, "") {
			n++
		}
	}
	// An unblock that returned sticks across a reboot, or says it does not.
	t.reply <- reply{n: n, err: l.sync()}
}

// strengthenTask makes a weak block an offence (Strengthen).
type strengthenTask struct{ a netip.Addr }

func (t strengthenTask) run(_ context.Context, l *Ledger) { l.strengthen(t.a) }

// later puts t in the backlog, to run when the goroutine is free again.
func (l *Ledger) later(t task) {
	l.backlog = append(l.backlog, t)
	l.wake()
}

func (l *Ledger) wake() {
	select {
	case l.resume <- struct{}{}:
	default:
	}
}

// Run carries out operations and expires blocks until ctx is done, then
// waits for the announcing goroutine.
func (l *Ledger) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// The announcing goroutine lives as long as Run: it drains what was
	// recorded before Run returns.
	var announcer sync.WaitGroup
	announcer.Go(func() {
		for a := range l.announceQ {
			l.announce(ctx, a)
		}
	})
	defer func() { close(l.announceQ); announcer.Wait() }()
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-l.in:
			t.run(ctx, l)
		case x := <-l.landed:
			l.landAll(ctx, l.landings(x))
		case <-l.resume:
			t := l.backlog[0]
			l.backlog = l.backlog[1:]
			t.run(ctx, l)
			if len(l.backlog) > 0 {
				l.wake()
			}
		case now := <-tick.C:
			l.expire(ctx, now)
			l.retryJournal()
		}
	}
}
