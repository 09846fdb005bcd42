// Package ledger is the one record of what is blocked and why, and the
// one place that carries a block out.
//
// Every block, whatever its origin (the detector, an administrator, a
// restore; later the kernel's first strike and the fleet), enters here as
// a decide.Decision and is recorded with its origin, expiry and details
// (journaled by internal/state, so a restart restores it). Everything that
// enforces or reports a block follows the ledger, in PortSentry's order:
// the commands marked first, the kernel's element (the writer), the
// "has been blocked" line, the hosts.deny line, the journal, the other
// commands. Lifting a block (expiry, unblock) reaches the same followers
// in one operation.
//
// The ledger also says when the kernel lost an element: a probe from a
// source it holds as blocked, arriving well after the element was
// committed, got past the drop rule, so the element goes back at once
// (Reassert).
package ledger

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/hostsdeny"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// Kernel enforces blocks: the nft writer.
type Kernel interface {
	// Add queues an element without waiting; b.Done is called once it is
	// committed (or could not be).
	Add(b nft.Block) error
	// Commit adds elements and waits.
	Commit(ctx context.Context, blocks []nft.Block) error
	// Delete removes elements and waits; a missing one is no error.
	Delete(ctx context.Context, addrs ...netip.Addr) error
	// FlushSets removes every element of blocked and blocked6.
	FlushSets(ctx context.Context) error
}

// Verdicts gives probes held in NFQUEUE their verdict.
type Verdicts interface {
	SetVerdict(id uint32, drop bool) error
}

// Evidence is what the origin knows of the block.
type Evidence struct {
	Probe       packet.Probe // the probe that decided it (zero for an administrator's block)
	First, Last time.Time    // the episode
	Ports       []uint16     // ports probed, if known
	// Held: the probe waits in NFQUEUE as packet ID until the block is in.
	Held bool
	ID   uint32
	// Adopted: an element found in the kernel's sets that the ledger did
	// not hold (the first strike while the daemon was stopped, frozen or
	// losing NFLOG messages): no probe is known.
	Adopted bool
	// Kind, when set, is what the record says instead of the probe's scan
	// type (a fleet block: the other host's scan type and its name).
	Kind string
}

// Stats are the ledger's counters.
type Stats struct {
	Blocks          map[state.Origin]*atomic.Uint64 // elements committed, by origin
	Restored        atomic.Uint64                   // blocks put back (start, self-heal, Reassert)
	BlockFailures   atomic.Uint64
	Dropped         atomic.Uint64 // decisions lost: too many blocks on their way
	Evicted         atomic.Uint64 // weak blocks given up to make room for stronger ones
	Corroborated    atomic.Uint64 // weak blocks that later probes made offences
	Expired         atomic.Uint64
	Unblocked       atomic.Uint64
	Adopted         atomic.Uint64 // kernel elements the ledger did not hold, recorded
	Disowned        atomic.Uint64 // first strikes the decision refused, lifted
	CommandsRun     atomic.Uint64
	CommandFailures atomic.Uint64
	HostsDenyErrors atomic.Uint64
}

// Config is what a Ledger is made of.
type Config struct {
	Store    *state.Store
	Kernel   Kernel
	Log      *alert.Log
	Settings *config.Config
	// Name is an address's name for the record and the history file, ""
	// when none is known now. It must not wait (resolve_host: it answers
	// from the resolver's cache and queues the lookup); a name found later
	// comes back through SetHost.
	Name func(netip.Addr) string
	// NameWithin, if set, is Name waiting up to a bound for a lookup under
	// way (alert.Resolver.NameWithin: not at all when the resolver is
	// backed up or the lookup was already waited for in vain). A batch of
	// landed blocks waits at most RecordNameWait for all its names, so
	// that a name a hosts file gives at once is in the history line.
	NameWithin func(netip.Addr, time.Duration) string
	// Verdicts, in NFQUEUE mode.
	Verdicts Verdicts
	// OnBlock is told each detected block's probe-to-commit latency.
	OnBlock func(time.Duration)
	// OnLift is told of every address whose block an administrator lifted
	// (the detector starts over for it). Called on the ledger's goroutine;
	// it must not block.
	OnLift func(netip.Addr)
	// Fleet, if set, is told of every block recorded here that did not
	// come from the fleet (once its element is in), and of every
	// administrator's unblock that did not either: the fleet follows the
	// ledger. Its calls must not block.
	Fleet Fleet
}

// Fleet is the fleet's side of the ledger (internal/fleet, adapted by the
// daemon).
type Fleet interface {
	Publish(b state.Block)
	Unblock(a netip.Addr)
}

// Ledger records and carries out blocks. Create with New, then Run.
type Ledger struct {
	c      Config
	cfg    atomic.Pointer[config.Config]
	jobs   chan job
	landed chan landing
	// announce carries recorded blocks to the goroutine that syncs the
	// journal, then writes their lines and runs their commands, so that an
	// fsync never delays the next block's element.
	announceQ chan []recorded
	cmds      chan struct{} // bounds concurrent commands
	wg        sync.WaitGroup

	mu sync.Mutex
	// pending holds the decided blocks whose element is not in yet.
	pending map[netip.Addr]int
	// reasserted: when a block was last put back after a loss.
	reasserted map[netip.Addr]time.Time
	// weak holds the weak blocks in force (decide.Decision.Weak), and
	// weakOrder them oldest first, for eviction (entries no longer weak
	// are skipped there).
	weak      map[netip.Addr]bool
	weakOrder []netip.Addr
	// early: weak blocks corroborated before their element landed.
	early map[netip.Addr]bool

	Stats Stats
}

// job is one thing for the ledger's goroutine to do.
type job struct {
	dec decide.Decision
	ev  Evidence
	at  time.Time
	// An administrator's request, which waits on reply: blocks (admin) or
	// unblocks (lift; all: every block).
	admin []decide.Decision
	evs   []Evidence // of admin, when known (the fleet's blocks)
	lift  []netip.Addr
	// fromFleet: the fleet lifted it; not passed back to the fleet.
	fromFleet bool
	// protected: lift is for addresses that became protected, not an
	// administrator's unblock (no unblock line, offences kept).
	protected bool
	all       bool
	reply     chan reply
	// corroborate: more probes came from a weak block's source.
	corroborate netip.Addr
	// disown: the kernel struck an address the daemon does not block (why).
	disown netip.Addr
	why    string
	// adopt: kernel elements the ledger did not hold, decided.
	adopt []decide.Decision
}

type reply struct {
	n   int
	err error
}

type landing struct {
	j   job
	err error
}

// MaxInflight bounds the blocks decided and not yet committed.
const MaxInflight = 8192

// MaxConcurrentCommands bounds the external commands running at once.
const MaxConcurrentCommands = 8

// RecordNameWait bounds how long a batch of landed blocks waits for names
// (Config.NameWithin): the lookups start when the blocks are submitted,
// so a name that comes at once (a hosts file) is there, and DNS that does
// not answer costs at most this per batch, and nothing once the resolver
// is backed up.
const RecordNameWait = 50 * time.Millisecond

// ReassertAfter is how long after a block's decision a probe from its
// source proves the element missing: probes on their way before the
// element landed (NFLOG copies are sent at once) arrive well within it.
const ReassertAfter = 250 * time.Millisecond

// New makes a Ledger.
func New(c Config) *Ledger {
	if c.Name == nil {
		c.Name = func(netip.Addr) string { return "" }
	}
	l := &Ledger{c: c, jobs: make(chan job, 4096), landed: make(chan landing, MaxInflight), announceQ: make(chan []recorded, 256),
		cmds: make(chan struct{}, MaxConcurrentCommands), pending: map[netip.Addr]int{}, reasserted: map[netip.Addr]time.Time{}, weak: map[netip.Addr]bool{}, early: map[netip.Addr]bool{}}
	l.Stats.Blocks = map[state.Origin]*atomic.Uint64{}
	for _, o := range state.Origins {
		l.Stats.Blocks[o] = new(atomic.Uint64)
	}
	l.cfg.Store(c.Settings)
	return l
}

// SetConfig swaps the configuration (reload).
func (l *Ledger) SetConfig(cfg *config.Config) { l.cfg.Store(cfg) }

// ---- what the decision reads (decide.Ledger) ----

// Holds reports a block of a in force or on its way.
func (l *Ledger) Holds(a netip.Addr) bool {
	l.mu.Lock()
	n := l.pending[a]
	l.mu.Unlock()
	return n > 0 || l.c.Store.Has(a)
}

// Len counts the blocks in force or on their way.
func (l *Ledger) Len() int {
	l.mu.Lock()
	n := len(l.pending)
	l.mu.Unlock()
	return l.c.Store.Len() + n
}

// TimesBlocked is how many times a was blocked before.
func (l *Ledger) TimesBlocked(a netip.Addr) int { return l.c.Store.TimesBlocked(a) }

// Weak counts the weak blocks in force.
func (l *Ledger) Weak() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.weak)
}

// Count is the number of blocks in force by family (constant time).
func (l *Ledger) Count() (v4, v6 int) { return l.c.Store.Count() }

// Get returns the record of a's block in force.
func (l *Ledger) Get(a netip.Addr) (state.Block, bool) { return l.c.Store.Get(a) }

// Active returns the blocks in force at now, soonest expiry first.
func (l *Ledger) Active(now time.Time) []state.Block { return l.c.Store.Active(now) }

// ---- entering blocks ----

// Submit hands a decision of the capture path (or verified mode) to the
// ledger without waiting. False when too many blocks are on their way:
// then nothing is recorded, and a held probe is the caller's to release.
func (l *Ledger) Submit(d decide.Decision, ev Evidence, now time.Time) bool {
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
	select {
	case l.jobs <- job{dec: d, ev: ev, at: now}:
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

// Block carries out an administrator's decisions, every element in one
// transaction, and waits until they are in and recorded.
func (l *Ledger) Block(ctx context.Context, ds ...decide.Decision) error {
	_, err := l.call(ctx, job{admin: ds, at: time.Now()})
	return err
}

// Mirror carries out decisions on the fleet's blocks (origin fleet) as
// Block does, evs[i] saying what is known of ds[i].
func (l *Ledger) Mirror(ctx context.Context, ds []decide.Decision, evs []Evidence) error {
	_, err := l.call(ctx, job{admin: ds, evs: evs, at: time.Now()})
	return err
}

// Unmirror lifts blocks that the fleet lifted (an administrator's unblock
// on another host): as Unblock, but not passed back to the fleet.
func (l *Ledger) Unmirror(ctx context.Context, addrs ...netip.Addr) (int, error) {
	return l.call(ctx, job{lift: addrs, fromFleet: true})
}

// Unblock lifts the blocks of addrs everywhere (elements in one
// transaction, hosts.deny lines, records) and waits. It returns how many
// the ledger held.
func (l *Ledger) Unblock(ctx context.Context, addrs ...netip.Addr) (int, error) {
	return l.call(ctx, job{lift: addrs})
}

// LiftProtected lifts the blocks of addrs, which became protected (a new
// gateway, local address or nameserver): like Unblock, but it is no
// administrator's word, so their offences are kept and the caller says why.
func (l *Ledger) LiftProtected(ctx context.Context, addrs ...netip.Addr) (int, error) {
	return l.call(ctx, job{lift: addrs, protected: true})
}

// UnblockAll lifts every block: both sets emptied in one transaction,
// every hosts.deny line and record removed. It returns how many records
// it lifted.
func (l *Ledger) UnblockAll(ctx context.Context) (int, error) {
	return l.call(ctx, job{all: true})
}

func (l *Ledger) call(ctx context.Context, j job) (int, error) {
	j.reply = make(chan reply, 1)
	select {
	case l.jobs <- j:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case r := <-j.reply:
		return r.n, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Disown lifts the kernel's first strike on a, which the decision (or the
// capture path: a service listens on the port) refused; why completes
// LiftedLine. Nothing happens when the ledger holds a block of a. It does
// not wait.
func (l *Ledger) Disown(a netip.Addr, why string) {
	select {
	case l.jobs <- job{disown: a, why: why}:
	default:
		l.Stats.Dropped.Add(1)
	}
}

// Adopt records elements the kernel holds and the ledger does not (the
// kernel struck while the daemon was stopped, frozen, or losing NFLOG
// messages), decided with origin kernel and their remaining time as
// Timeout: each block is followed (hosts.deny, commands, lines) as any
// other; a refused one is lifted. It waits, and returns how many it
// recorded.
func (l *Ledger) Adopt(ctx context.Context, ds []decide.Decision) (int, error) {
	if len(ds) == 0 {
		return 0, nil
	}
	return l.call(ctx, job{adopt: ds, at: time.Now()})
}

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
	for _, b := range l.c.Store.Active(now) {
		left := b.Expires.Sub(now).Round(time.Second)
		if left < time.Second || missing != nil && !missing(b.Addr) {
			continue
		}
		blocks = append(blocks, nft.Block{Addr: b.Addr, Timeout: left})
	}
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
func (l *Ledger) Reassert(a netip.Addr, now time.Time) (back, held bool) {
	l.mu.Lock()
	if l.pending[a] > 0 {
		// A second probe while the first one's block is on its way: before
		// it is recorded, early tells the recording; once it is (its lines
		// not yet written), corroborate does.
		if len(l.early) < MaxInflight {
			l.early[a] = true
		}
		l.mu.Unlock()
		if l.c.Store.Has(a) {
			l.corroborate(a)
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
		l.corroborate(a)
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
	l.c.Log.AttackWarn(alert.RestoredLine(a, setOf(a), left))
	return true, true
}

// Corroborate is told of a probe from a, which the kernel holds as
// blocked (a sample of the probes its drop rule met, see
// capture.RuleTCPAgain): a's block, if weak, rests on more than one probe
// now, and becomes an offence.
func (l *Ledger) Corroborate(a netip.Addr) { l.corroborate(a) }

// corroborate asks the ledger's goroutine to make a's weak block an
// offence: a probe from a that was on its way when the element landed is
// a second probe.
func (l *Ledger) corroborate(a netip.Addr) {
	l.mu.Lock()
	weak := l.weak[a]
	if weak {
		delete(l.weak, a) // asked once
	}
	l.mu.Unlock()
	if !weak {
		return
	}
	select {
	case l.jobs <- job{corroborate: a}:
	default:
	}
}

func setOf(a netip.Addr) string {
	if a.Is6() {
		return nft.SetBlocked6
	}
	return nft.SetBlocked
}

// ---- the ledger's goroutine ----

// Run carries out decisions and expires blocks until ctx is done, then
// waits for running commands.
func (l *Ledger) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	defer l.wg.Wait()
	announced := make(chan struct{})
	go func() {
		defer close(announced)
		for batch := range l.announceQ {
			l.sync()
			for _, r := range batch {
				l.announce(ctx, r)
				l.unreserve(r.j.dec.Addr)
			}
		}
	}()
	defer func() { close(l.announceQ); <-announced }()
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-l.jobs:
			l.do(ctx, j)
		case x := <-l.landed:
			l.landAll(ctx, l.landings(x))
		case now := <-tick.C:
			l.expire(now)
		}
	}
}

func (l *Ledger) do(ctx context.Context, j job) {
	cfg := l.cfg.Load()
	if j.dec.Origin == state.OriginKernel && (j.dec.Action == decide.LogOnly || j.dec.Action == decide.Commands) {
		// The kernel struck under a ruleset that had not caught up with the
		// configuration yet: the response is not to block.
		l.disown(ctx, j.dec.Addr, decide.Against(cfg, j.dec, j.ev.Probe.Proto))
	}
	switch {
	case j.corroborate.IsValid():
		l.strengthen(j.corroborate)
	case j.disown.IsValid():
		l.disown(ctx, j.disown, j.why)
	case j.reply != nil:
		j.reply <- l.administer(ctx, j)
	case j.dec.Action == decide.LogOnly:
		l.release(&j, false)
		l.c.Log.Attack(alert.IgnoringLine(j.ev.Probe.Proto))
	case j.dec.Action == decide.Commands:
		l.release(&j, false)
		l.runCommands(ctx, cfg, j, func(config.Command) bool { return true }, nil)
	case hasFirst(cfg):
		l.runCommands(ctx, cfg, j, func(c config.Command) bool { return c.First }, func() { l.add(j) })
	default:
		l.add(j)
	}
}

// add queues the element; its landing comes back to Run. The kernel's
// first strike put its element in already, with block.timeout: it is
// added again only to lengthen it (a repeat offender).
func (l *Ledger) add(j job) {
	if j.dec.Evict {
		l.evictWeakest()
	}
	if j.dec.Origin == state.OriginKernel && j.dec.Timeout <= l.cfg.Load().BlockTimeout() {
		l.land(context.Background(), j, nil)
		return
	}
	err := l.c.Kernel.Add(nft.Block{Addr: j.dec.Addr, Timeout: j.dec.Timeout, Done: func(err error) {
		// On the writer goroutine. landed has room for every block on its
		// way (MaxInflight), so this never waits.
		l.landed <- landing{j, err}
	}})
	if err != nil {
		l.land(context.Background(), j, err)
	}
}

// land runs once the element is in (or could not be added).
func (l *Ledger) land(ctx context.Context, j job, err error) {
	l.landAll(ctx, []landing{{j, err}})
}

// landAll runs once elements are in (or could not be added): every block
// is recorded here; the announcing goroutine syncs the journal once for
// all of them, and only then writes their lines and runs their commands,
// so a block whose "has been blocked" line was written survives a power
// loss, and the fsync does not hold up the next element.
func (l *Ledger) landAll(ctx context.Context, ls []landing) {
	var done []recorded
	names := time.Now().Add(RecordNameWait)
	for _, x := range ls {
		j := x.j
		l.release(&j, x.err == nil)
		if x.err != nil {
			l.unreserve(j.dec.Addr)
			l.Stats.BlockFailures.Add(1)
			l.c.Log.Errorf("could not block host %s: %v", j.dec.Addr, x.err)
			continue
		}
		if l.c.OnBlock != nil {
			l.c.OnBlock(time.Since(j.at))
		}
		done = append(done, l.record(j, names))
	}
	if len(done) > 0 {
		l.announceQ <- done
		l.keepRoom()
	}
}

// Headroom is how many places of the sets the ledger keeps free while the
// kernel strikes (nft.Strikes): the kernel adds only to a set with room,
// so a set filled with a spoofed flood's blocks would leave none for a
// real scanner's strike. A 64th of block.set_size (none below 64).
func Headroom(cfg *config.Config) int {
	if tcp, udp := nft.Strikes(cfg); !tcp && !udp {
		return 0
	}
	return cfg.Block.SetSize / 64
}

// keepRoom gives up the oldest weak blocks (one probe, which anyone can
// spoof) while fewer than Headroom places are free.
func (l *Ledger) keepRoom() {
	cfg := l.cfg.Load()
	room := Headroom(cfg)
	for room > 0 && l.Len() > cfg.Block.SetSize-room && l.Weak() > 0 {
		if !l.evictWeakest() {
			return
		}
	}
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

// recorded is a block recorded in the ledger, to be announced once the
// journal is on disk.
type recorded struct {
	j job
	b state.Block
}

// record writes a committed block's hosts.deny line and its record; the
// name may be waited for until names (see Config.NameWithin).
func (l *Ledger) record(j job, names time.Time) recorded {
	cfg := l.cfg.Load()
	d, p := &j.dec, j.ev.Probe
	l.settleStrength(d)
	l.Stats.Blocks[d.Origin].Add(1)
	b := state.Block{
		Addr: d.Addr, Timeout: d.Timeout, Expires: j.at.Add(d.Timeout), Origin: d.Origin,
		Kind: p.Kind.String(), Proto: p.Proto.String(), Port: p.DstPort, Ports: j.ev.Ports,
		First: j.ev.First, Last: j.ev.Last, Times: d.Times, Host: l.name(d.Addr, names), Weak: d.Weak,
	}
	switch {
	case d.Origin == state.OriginManual:
		b.Kind, b.Proto, b.First, b.Last = "manual", "", j.at, j.at
	case j.ev.Adopted:
		b.Kind, b.Proto, b.First, b.Last = "adopted", "", j.at, j.at
	case j.ev.Kind != "":
		b.Kind, b.First, b.Last = j.ev.Kind, j.at, j.at
	}
	if cfg.HostsDeny.Path != "" {
		line := hostsdeny.Line(cfg.HostsDeny.Template, wrapTarget(d.Addr), strconv.Itoa(int(p.DstPort)), mode(p.Proto))
		if _, err := (&hostsdeny.File{Path: cfg.HostsDeny.Path}).Add(line); err != nil {
			l.Stats.HostsDenyErrors.Add(1)
			l.c.Log.Errorf("could not write %s for host %s: %v", cfg.HostsDeny.Path, d.Addr, err)
		} else {
			b.HostsDeny = line
		}
	}
	if err := l.c.Store.Add(b); err != nil {
		l.c.Log.Errorf("could not record the block of %s: %v", d.Addr, err)
	}
	if l.c.Fleet != nil && d.Origin != state.OriginFleet {
		// The element is in: the fleet hears of it now, not after the
		// journal's fsync (the fleet holds its own copy).
		l.c.Fleet.Publish(b)
	}
	if b.Host == "" {
		// The lookup may have finished since Name was asked, before the
		// record was in the store for SetHost to find.
		if name := l.c.Name(d.Addr); name != "" {
			l.SetHost(d.Addr, name)
		}
	}
	return recorded{j, b}
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
	if _, err := l.c.Store.SetHost(a, name); err != nil {
		l.c.Log.Errorf("could not record the name of %s: %v", a, err)
	}
}

// sync puts the journal on disk (one fsync for every block recorded
// before it).
func (l *Ledger) sync() {
	if err := l.c.Store.Sync(); err != nil {
		l.c.Log.Errorf("the journal of blocks is not on disk: %v", err)
	}
}

// announce writes a recorded block's lines and runs the commands that
// follow it.
func (l *Ledger) announce(ctx context.Context, r recorded) {
	d := r.j.dec
	by := ""
	switch d.Origin {
	case state.OriginManual:
		by = "an administrator"
	case state.OriginKernel:
		by = "the kernel"
	case state.OriginFleet:
		by = "the fleet"
	}

	l.c.Log.Attack(alert.BlockedLine(d.Addr, nft.TableName, setOf(d.Addr), r.b.Timeout, r.b.Times, by))
	if r.b.HostsDeny != "" {
		l.c.Log.Attack(alert.WrappersLine(d.Addr, r.b.HostsDeny))
	}
	l.runCommands(ctx, l.cfg.Load(), r.j, func(c config.Command) bool { return !c.First || d.Origin == state.OriginManual }, nil)
}

// strengthen makes a's weak block an offence, with the repeat-offender
// length: the element is re-added with the longer remaining time.
func (l *Ledger) strengthen(a netip.Addr) {
	cfg := l.cfg.Load()
	old, _ := l.c.Store.Get(a)
	b, ok, err := l.c.Store.Strengthen(a, func(times int) time.Duration { return decide.RepeatTimeout(cfg, times) })
	if err != nil {
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

// settleStrength makes a weak block an offence when a second probe came
// while it was on its way in, and keeps the weak ones, oldest first, for
// a full set to give up.
func (l *Ledger) settleStrength(d *decide.Decision) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.early[d.Addr] {
		delete(l.early, d.Addr)
		if d.Weak {
			d.Weak = false
			l.Stats.Corroborated.Add(1)
			if t := decide.RepeatTimeout(l.cfg.Load(), d.Times); t > d.Timeout {
				// The element went in with block.timeout: lengthen it.
				l.c.Kernel.Add(nft.Block{Addr: d.Addr, Timeout: t})
				d.Timeout = t
			}
		}
	}
	if !d.Weak {
		return
	}
	l.weak[d.Addr] = true
	l.weakOrder = append(l.weakOrder, d.Addr)
	if len(l.weakOrder) > 2*len(l.weak)+1024 {
		// Most entries expired or were corroborated: keep the rest.
		kept := l.weakOrder[:0]
		for _, w := range l.weakOrder {
			if l.weak[w] {
				kept = append(kept, w)
			}
		}
		l.weakOrder = kept
	}
}

// release gives a held probe its verdict, once.
func (l *Ledger) release(j *job, drop bool) {
	if !j.ev.Held || l.c.Verdicts == nil {
		return
	}
	j.ev.Held = false
	if err := l.c.Verdicts.SetVerdict(j.ev.ID, drop); err != nil {
		l.c.Log.Warnf("NFQUEUE verdict: %v", err)
	}
}

// administer carries out an administrator's request: blocks committed in
// one transaction, then followed as any block; unblocks.
func (l *Ledger) administer(ctx context.Context, j job) reply {
	switch {
	case j.all:
		return l.unblockAll(ctx)
	case j.lift != nil:
		return l.unblock(ctx, j.lift, !j.protected, j.fromFleet)
	case j.adopt != nil:
		return l.adopt(ctx, j)
	}
	blocks := make([]nft.Block, len(j.admin))
	for i, d := range j.admin {
		blocks[i] = nft.Block{Addr: d.Addr, Timeout: d.Timeout}
	}
	if err := l.c.Kernel.Commit(ctx, blocks); err != nil {
		return reply{err: err}
	}
	done := make([]recorded, len(j.admin))
	for i, d := range j.admin {
		var ev Evidence
		if i < len(j.evs) {
			ev = j.evs[i]
		}
		done[i] = l.record(job{dec: d, at: j.at, ev: ev}, time.Time{})
	}
	l.sync()
	for _, r := range done {
		l.announce(ctx, r)
	}
	return reply{n: len(j.admin)}
}

// adopt records the kernel's elements the ledger did not hold (they are
// in already), and lifts those the decision refused.
func (l *Ledger) adopt(ctx context.Context, j job) reply {
	var done []recorded
	for _, d := range j.adopt {
		if l.Holds(d.Addr) {
			continue
		}
		if d.Action != decide.Block {
			if d.Reason != decide.AlreadyBlocked {
				// No probe is known: the decision took TCP's response.
				l.disown(ctx, d.Addr, decide.Against(l.cfg.Load(), d, packet.TCP))
			}
			continue
		}
		l.Stats.Adopted.Add(1)
		done = append(done, l.record(job{dec: d, at: j.at, ev: Evidence{Adopted: true}}, time.Time{}))
	}
	l.sync()
	for _, r := range done {
		l.announce(ctx, r)
	}
	return reply{n: len(done)}
}

// disown lifts the kernel's element of a, which the ledger does not hold.
func (l *Ledger) disown(ctx context.Context, a netip.Addr, why string) {
	if l.Holds(a) {
		return
	}
	if err := l.c.Kernel.Delete(ctx, a); err != nil {
		l.c.Log.Errorf("could not lift the kernel's block of %s: %v", a, err)
		return
	}
	l.Stats.Disowned.Add(1)
	l.c.Log.AttackWarn(alert.LiftedLine(a, why))
	if l.c.OnLift != nil {
		l.c.OnLift(a)
	}
}

func (l *Ledger) unblock(ctx context.Context, addrs []netip.Addr, admin, fromFleet bool) reply {
	if err := l.c.Kernel.Delete(ctx, addrs...); err != nil {
		return reply{err: err}
	}
	n := 0
	for _, a := range addrs {
		if l.lifted(a, admin) {
			n++
		}
		if admin && !fromFleet && l.c.Fleet != nil {
			l.c.Fleet.Unblock(a)
		}
	}
	l.sync() // an unblock that returned sticks across a reboot
	return reply{n: n}
}

func (l *Ledger) unblockAll(ctx context.Context) reply {
	if err := l.c.Kernel.FlushSets(ctx); err != nil {
		return reply{err: err}
	}
	n := 0
	for _, b := range l.c.Store.Active(time.Time{}) {
		if l.lifted(b.Addr, true) {
			n++
		}
		if l.c.Fleet != nil {
			l.c.Fleet.Unblock(b.Addr)
		}
	}
	l.sync()
	return reply{n: n}
}

// lifted removes a's record once its element is gone, lifts what followed
// it, and lets the detector start over. It reports whether the ledger
// held a. admin: an administrator's unblock, which is logged and resets
// the offences.
func (l *Ledger) lifted(a netip.Addr, admin bool) bool {
	b, ok := l.c.Store.Remove(a)
	if ok {
		l.lift(b)
	}
	l.forgetLocal(a)
	if admin {
		// An administrator's word resets the offences: the next block
		// starts from block.timeout.
		if err := l.c.Store.ForgetOffender(a); err != nil {
			l.c.Log.Errorf("could not record the unblock of %s: %v", a, err)
		}
		l.Stats.Unblocked.Add(1)
		l.c.Log.Attack(alert.UnblockedLine(a))
	}
	if l.c.OnLift != nil {
		l.c.OnLift(a)
	}
	return ok
}

func (l *Ledger) expire(now time.Time) {
	for _, b := range l.c.Store.Expire(now) {
		l.Stats.Expired.Add(1)
		l.lift(b)
		l.forgetLocal(b.Addr)
		l.c.Log.Infof("Block of host %s expired", b.Addr)
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
// one, and says so. It reports whether it lifted one.
func (l *Ledger) evictWeakest() bool {
	for {
		l.mu.Lock()
		if len(l.weakOrder) == 0 {
			l.mu.Unlock()
			return false
		}
		a := l.weakOrder[0]
		l.weakOrder = l.weakOrder[1:]
		weak := l.weak[a]
		delete(l.weak, a)
		l.mu.Unlock()
		if !weak {
			continue // lifted or corroborated meanwhile
		}
		if err := l.c.Kernel.Delete(context.Background(), a); err != nil {
			l.c.Log.Errorf("could not make room in the sets (lift %s): %v", a, err)
			return false
		}
		l.lifted(a, false)
		l.Stats.Evicted.Add(1)
		l.c.Log.Attack(alert.EvictedLine(a))
		return true
	}
}

// lift undoes what followed a block the kernel no longer holds.
func (l *Ledger) lift(b state.Block) {
	cfg := l.cfg.Load()
	if b.HostsDeny == "" || cfg.HostsDeny.Path == "" {
		return
	}
	if _, err := (&hostsdeny.File{Path: cfg.HostsDeny.Path}).Remove(b.HostsDeny); err != nil {
		l.Stats.HostsDenyErrors.Add(1)
		l.c.Log.Errorf("could not remove %s from %s: %v", b.Addr, cfg.HostsDeny.Path, err)
	}
}

// wrapTarget writes an address as TCP wrappers expects it ([v6]).
func wrapTarget(a netip.Addr) string {
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}

func mode(p packet.Proto) string {
	if p == packet.UDP {
		return "udp"
	}
	return "tcp"
}
