package ledger

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// post is Post for a decision: a block is reserved (it counts in Len and
// Holds until announced) and its name looked up at once.
func (l *Ledger) post(a Act) bool {
	d := a.Decision
	if d.Action == decide.Block && !l.reserve(d.Addr) {
		l.Stats.Dropped.Add(1)
		return false
	}
	if d.Action == decide.Block {
		// Start the lookup of the name now (resolve_host; Name does not
		// wait), while the element goes in: a name that comes at once (a
		// hosts file, a DNS cache) is then in the record and the history
		// line.
		l.c.Name(d.Addr)
	}
	if a.At.IsZero() {
		a.At = time.Now()
	}
	select {
	case l.in <- actTask{a}:
		return true
	default:
		if d.Action == decide.Block {
			l.unreserve(d.Addr)
		}
		l.Stats.Dropped.Add(1)
		return false
	}
}

func (l *Ledger) reserve(a netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) >= MaxInflight || l.pending[a] > 0 {
		return false
	}
	l.pending[a]++
	return true
}

func (l *Ledger) unreserve(a netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending[a]--; l.pending[a] <= 0 {
		delete(l.pending, a)
		delete(l.early, a)
	}
}

// act carries out a posted decision on the ledger's goroutine.
func (l *Ledger) act(ctx context.Context, a Act) {
	d := a.Decision
	if d.Lift != "" {
		l.disown(ctx, d.Addr, d.Lift)
	}
	switch d.Action {
	case decide.LogOnly:
		l.release(&a, false)
		l.c.Log.Attack(alert.IgnoringLine(a.Evidence.Probe.Proto))
	case decide.Commands:
		l.release(&a, false)
		if l.c.Commands != nil {
			l.c.Commands.Respond(ctx, Entry{Decision: d, Evidence: a.Evidence, At: a.At})
		}
	case decide.Block:
		first := l.c.Commands != nil && l.c.Commands.Before(ctx, Entry{Decision: d, Evidence: a.Evidence, At: a.At}, func(ok bool) {
			if !ok {
				l.release(&a, false)
				l.unreserve(d.Addr)
				return
			}
			l.add(a)
		})
		if !first {
			l.add(a)
		}
	}
}

// inKernel reports whether d's element is in the kernel already: the
// kernel's first strike, or an element adopted from the sets, with at
// most block.timeout (a repeat offender's longer time must go in).
func inKernel(d decide.Decision, blockTimeout time.Duration) bool {
	return d.Origin == state.OriginKernel && d.Timeout <= blockTimeout
}

// add queues the element; its landing comes back to Run.
func (l *Ledger) add(a Act) {
	if a.Decision.Evict {
		l.evictWeakest()
	}
	if inKernel(a.Decision, l.cfg.Load().BlockTimeout()) {
		l.landAll(context.Background(), []landing{{a, nil}})
		return
	}
	err := l.c.Kernel.Add(nft.Block{Addr: a.Decision.Addr, Timeout: a.Decision.Timeout, Done: func(err error) {
		// On the writer goroutine. landed has room for every block on its
		// way (MaxInflight), so this never waits.
		l.landed <- landing{a, err}
	}})
	if err != nil {
		l.landAll(context.Background(), []landing{{a, err}})
	}
}

// landAll runs once posted elements are in (or could not be added): every
// block is recorded here; the announcing goroutine syncs the journal once
// for all of them, and only then hands them to the announcers, so a block
// whose "has been blocked" line was written survives a power loss, and
// the fsync does not hold up the next element.
func (l *Ledger) landAll(ctx context.Context, ls []landing) {
	var done []recorded
	names := time.Now().Add(RecordNameWait)
	for _, x := range ls {
		a, d := x.a, x.a.Decision
		if l.makeRoom(x) {
			continue // on its way again
		}
		l.release(&a, x.err == nil)
		if x.err != nil {
			l.unreserve(d.Addr)
			l.Stats.BlockFailures.Add(1)
			l.c.Log.Errorf("could not block host %s: %v", d.Addr, x.err)
			continue
		}
		if l.c.OnBlock != nil {
			l.c.OnBlock(time.Since(a.At))
		}
		done = append(done, l.record(ctx, a, names))
	}
	if len(done) > 0 {
		l.announceQ <- announcement{recs: done, posted: true}
		l.keepRoom()
	}
}

// makeRoom adds a block's element again when the full set refused it
// (the kernel's own strikes took the places the decision counted on) and
// the block is no weak one: once, after giving up the oldest weak block.
// It reports whether the element is on its way again.
func (l *Ledger) makeRoom(x landing) bool {
	if x.err == nil || x.a.again || x.a.Decision.Weak || !errors.Is(x.err, nft.ErrSetFull) || !l.evictWeakest() {
		return false
	}
	a := x.a
	a.again = true
	l.add(a)
	return true
}

// landings takes the first landing and every other one waiting now.
func (l *Ledger) landings(first landing) []landing {
	ls := []landing{first}
	for len(ls) < 256 {
		select {
		case x := <-l.landed:
			ls = append(ls, x)
		default:
			return ls
		}
	}
	return ls
}

// recordAct records one decision of an applied batch (its element in):
// a refused kernel element is lifted, an adopted one the ledger holds
// already is left alone.
func (l *Ledger) recordAct(ctx context.Context, a Act) (recorded, bool) {
	d := a.Decision
	if d.Lift != "" {
		l.disown(ctx, d.Addr, d.Lift)
	}
	if d.Action != decide.Block || a.Evidence.Adopted && l.Holds(d.Addr) {
		return recorded{}, false
	}
	if a.Evidence.Adopted {
		l.Stats.Adopted.Add(1)
	}
	return l.record(ctx, a, time.Time{}), true
}

// recorded is a block recorded in the ledger, to be announced once the
// journal is on disk.
type recorded struct{ e Entry }

// announcement is what the announcing goroutine gets: recorded blocks,
// and the caller of Apply waiting for them to be on disk.
type announcement struct {
	recs []recorded
	// posted: the blocks came through Post (their reservations end once
	// they are announced).
	posted bool
	reply  chan reply
}

// record writes a committed block's record, the Followers adding to it;
// the name may be waited for until names (see Config.NameWithin).
func (l *Ledger) record(ctx context.Context, a Act, names time.Time) recorded {
	d, p, ev := &a.Decision, a.Evidence.Probe, a.Evidence
	l.settleStrength(d, p.DstPort)
	l.Stats.Blocks[d.Origin].Add(1)
	b := state.Block{
		Addr: d.Addr, Timeout: d.Timeout, Expires: a.At.Add(d.Timeout), Origin: d.Origin,
		Kind: p.Kind.String(), Proto: p.Proto.String(), Port: p.DstPort, Ports: ev.Ports,
		First: ev.First, Last: ev.Last, Times: d.Times, Host: l.name(d.Addr, names), Weak: d.Weak,
		Evidence: d.Evidence.String(), From: ev.From, Tool: p.Tool.String(),
	}
	switch {
	case d.Origin == state.OriginManual:
		b.Kind, b.Proto, b.First, b.Last, b.Tool = "manual", "", a.At, a.At, ""
	case ev.Adopted:
		b.Kind, b.Proto, b.First, b.Last, b.Tool = "adopted", "", a.At, a.At, ""
	case ev.Kind != "":
		b.Kind, b.First, b.Last = ev.Kind, a.At, a.At
	}
	e := Entry{Decision: *d, Evidence: ev, At: a.At, Record: b}
	l.blocked(ctx, l.c.Followers, &e)
	// The journal's failure is the batch's (announce), logged once (sync).
	l.filesWritten(d.Addr, state.WithoutJournal(l.c.Store.Add(e.Record)))
	if e.Record.Host == "" {
		// The lookup may have finished since Name was asked, before the
		// record was in the store for SetHost to find.
		if name := l.c.Name(d.Addr); name != "" {
			l.SetHost(d.Addr, name)
		}
	}
	return recorded{e}
}

// announce syncs the journal once for every block recorded before it, then
// hands them to the announcers and answers the caller: with an
// ErrNotDurable when the journal could not be synced (the blocks are in
// force all the same).
func (l *Ledger) announce(ctx context.Context, a announcement) {
	err := l.sync()
	for i := range a.recs {
		l.blocked(ctx, l.c.Announcers, &a.recs[i].e)
		if a.posted {
			l.unreserve(a.recs[i].e.Decision.Addr)
		}
	}
	if a.reply != nil {
		a.reply <- reply{n: len(a.recs), err: err}
	}
}

// name is a's name, waiting for it until deadline at most.
func (l *Ledger) name(a netip.Addr, deadline time.Time) string {
	if wait := time.Until(deadline); wait > 0 && l.c.NameWithin != nil {
		return l.c.NameWithin(a, wait)
	}
	return l.c.Name(a)
}

// SetHost fills in the name of a's block in force once it is known
// (resolve_host: the lookup finishes after the block is recorded), so
// that list shows it. The history line, written at block time, keeps the
// address. Safe from any goroutine; a is not blocked: nothing to do.
func (l *Ledger) SetHost(a netip.Addr, name string) {
	if _, err := l.c.Store.SetHost(a, name); state.WithoutJournal(err) != nil {
		l.c.Log.Errorf("could not record the name of %s: %v", a, err)
	}
}

// release gives a held probe its verdict, once.
func (l *Ledger) release(a *Act, drop bool) {
	if !a.Evidence.Held || l.c.Verdicts == nil {
		return
	}
	a.Evidence.Held = false
	if err := l.c.Verdicts.SetVerdict(a.Evidence.ID, drop); err != nil {
		l.c.Log.Warnf("NFQUEUE verdict: %v", err)
	}
}
