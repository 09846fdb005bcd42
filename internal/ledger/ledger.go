// Package ledger is the one record of what is blocked and why, and the
// one place that carries a block out.
//
// Every block, whatever its origin (the detector, the kernel's first
// strike, an administrator, the fleet, an adoption, a restore), enters by
// one door: Post (the capture path, which never waits) or Apply (the rest,
// which wait until it is on disk), with a small closed set of operations
// (Act, Unblock, UnblockAll, Strengthen). Each is recorded with its
// origin, expiry and details (journaled by internal/state, so a restart
// restores it). Everything that enforces or reports a block follows the
// ledger, in PortSentry's order: the commands marked first, the kernel's
// element (the writer), the followers that write into the record
// (hosts.deny) or must hear at once (the fleet), the journal, then the
// announcing followers (the "has been blocked" line, the other commands).
// Lifting a block (expiry, unblock, eviction) reaches the same followers.
//
// One goroutine owns the record (Run). It never waits for the kernel or
// the disk on behalf of a batch: Apply commits a batch's elements on the
// caller's goroutine, the record is written in small chunks between other
// work, and the fsync runs on the announcing goroutine.
//
// The ledger also says when the kernel lost an element: a probe from a
// source it holds as blocked, arriving well after the element was
// committed, got past the drop rule, so the element goes back at once
// (Reassert).
package ledger

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
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
	// CommitStream adds the elements of each part received until parts
	// is closed, and waits; release is given each part once committed.
	CommitStream(ctx context.Context, parts <-chan []nft.Block, release func([]nft.Block)) error
	// Delete removes elements and waits; a missing one is no error.
	Delete(ctx context.Context, addrs ...netip.Addr) error
	// DeletePrefixes removes IPv6 /64s from blocked6_64 and waits.
	DeletePrefixes(ctx context.Context, prefixes ...netip.Prefix) error
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
	// From is the fleet host whose record a fleet block mirrors.
	From string
}

// Stats are the ledger's counters.
type Stats struct {
	Blocks        map[state.Origin]*atomic.Uint64 // elements committed, by origin
	Restored      atomic.Uint64                   // blocks put back (start, self-heal, Reassert)
	BlockFailures atomic.Uint64
	Dropped       atomic.Uint64 // decisions lost: too many blocks on their way
	Evicted       atomic.Uint64 // weak blocks given up to make room for stronger ones
	Corroborated  atomic.Uint64 // weak blocks that later probes made offences
	Expired       atomic.Uint64
	Unblocked     atomic.Uint64
	Adopted       atomic.Uint64 // kernel elements the ledger did not hold, recorded
	Disowned      atomic.Uint64 // first strikes the decision refused, lifted
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
	// Commands runs the commands marked first and the response
	// "command" (internal/follow); nil runs none.
	Commands Commands
	// Followers follow every block as it is recorded, before the journal
	// is synced (hosts.deny, the fleet); Announcers once it is on disk
	// (lines, commands). See Follower.
	Followers, Announcers []Follower
	// OnLift is told of every address whose block was lifted but for
	// expiry (the detector starts over for it). Called on the ledger's
	// goroutine; it must not block.
	OnLift func(netip.Addr)
}

// Ledger records and carries out blocks. Create with New, then Run.
type Ledger struct {
	c   Config
	cfg atomic.Pointer[config.Config]
	// in carries the operations to the ledger's goroutine.
	in     chan task
	landed chan landing
	// backlog holds the rest of a batch being recorded in chunks; resume
	// says it is waiting, so the ledger's goroutine takes other work
	// between chunks.
	backlog []task
	resume  chan struct{}
	// announceQ carries recorded blocks to the goroutine that syncs the
	// journal, then hands them to the announcing followers, so that an
	// fsync never delays the next block's element.
	announceQ chan announcement
	// batched counts the blocks of batches being applied (Apply), for Len.
	batched atomic.Int64
	// notDurable: the last sync of the journal failed; filesFailing: the
	// last write of PortSentry's files did (see durable.go).
	notDurable, filesFailing atomic.Bool

	mu sync.Mutex
	// pending holds the posted blocks whose element is not in yet.
	pending map[netip.Addr]int
	// reasserted: when a block was last put back after a loss.
	reasserted map[netip.Addr]time.Time
	// weak holds the weak blocks in force (decide.Decision.Weak) with the
	// one port they rest on, and weakOrder them oldest first, for eviction
	// (entries no longer weak are skipped there).
	weak      map[netip.Addr]uint16
	weakOrder []netip.Addr
	// early: the ports of more probes from a posted block's source that
	// came while its element was on its way.
	early map[netip.Addr]uint16

	Stats Stats
}

type landing struct {
	a   Act
	err error
}

// MaxInflight bounds the blocks decided and not yet committed (their
// landings are preallocated: 2048 of them take 0.8 MB, 8192 took a sixth
// of the idle daemon's memory).
const MaxInflight = 2048

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
	l := &Ledger{c: c, in: make(chan task, 4096), landed: make(chan landing, MaxInflight), announceQ: make(chan announcement, 256),
		resume: make(chan struct{}, 1), pending: map[netip.Addr]int{}, reasserted: map[netip.Addr]time.Time{}, weak: map[netip.Addr]uint16{}, early: map[netip.Addr]uint16{}}
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
	return l.c.Store.Len() + n + int(l.batched.Load())
}

// TimesBlocked is how many times a was blocked before.
func (l *Ledger) TimesBlocked(a netip.Addr) int { return l.c.Store.TimesBlocked(a) }

// Weak counts the weak blocks in force.
func (l *Ledger) Weak() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.weak)
}

// Fleet counts the blocks of origin fleet in force, and those mirrored
// from host (decide.Ledger: each fleet host's share).
func (l *Ledger) Fleet(host string) (all, from int) { return l.c.Store.Fleet(host) }

// Count is the number of blocks in force by family (constant time).
func (l *Ledger) Count() (v4, v6 int) { return l.c.Store.Count() }

// Get returns the record of a's block in force.
func (l *Ledger) Get(a netip.Addr) (state.Block, bool) { return l.c.Store.Get(a) }

// Walk calls each with every block in force at now, in no order, without
// copying them all (state.Store.Walk).
func (l *Ledger) Walk(now time.Time, each func(state.Block) error) error {
	return l.c.Store.Walk(now, each)
}

// Active returns the blocks in force at now, soonest expiry first.
func (l *Ledger) Active(now time.Time) []state.Block { return l.c.Store.Active(now) }
