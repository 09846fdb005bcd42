package keeper

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/capture"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/listeners"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// The fakes below stand in for the kernel, the ledger, the decider, the
// guard and the watcher. What the kernel and the ledger are asked is
// written to one journal, in order.

type journal struct {
	mu     sync.Mutex
	events []string
}

func (j *journal) add(e string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events = append(j.events, e)
}

// take returns the events since the last take.
func (j *journal) take() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := j.events
	j.events = nil
	return out
}

// fakeKernel is a table that installs make whole again.
type fakeKernel struct {
	j  *journal
	mu sync.Mutex
	// refuse, when set, fails the installs it returns an error for.
	refuse func(rs *nft.Ruleset) error
	// problems is what Check reports until the next install.
	problems []string
	// print is the fingerprint the kernel shows; printErr fails it.
	print    []byte
	printErr error
	blocked  map[netip.Addr]time.Duration
	// shapes are the shapes installed, in order.
	shapes               []nft.Shape
	inUse, protected     []*nft.Ruleset
	checks, blockedReads int
}

func (f *fakeKernel) Install(rs *nft.Ruleset) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse != nil {
		if err := f.refuse(rs); err != nil {
			f.j.add("install refused")
			return err
		}
	}
	f.j.add("install")
	f.shapes = append(f.shapes, rs.Shape())
	f.problems = nil
	return nil
}

func (f *fakeKernel) UpdateInUse(rs *nft.Ruleset) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.j.add("update in-use")
	f.inUse = append(f.inUse, rs)
	return nil
}

func (f *fakeKernel) UpdateProtected(rs *nft.Ruleset) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.j.add("update protected")
	f.protected = append(f.protected, rs)
	return nil
}

func (f *fakeKernel) Check(rs *nft.Ruleset) ([]string, []byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks++
	if len(f.problems) > 0 {
		return f.problems, nil, nil
	}
	return nil, f.print, f.printErr
}

func (f *fakeKernel) Fingerprint(rs *nft.Ruleset) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.print, f.printErr
}

func (f *fakeKernel) Blocked() (map[netip.Addr]time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blockedReads++
	f.j.add("read sets")
	return f.blocked, nil
}

func (f *fakeKernel) set(do func(f *fakeKernel)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	do(f)
}

type fakeLedger struct {
	j     *journal
	mu    sync.Mutex
	holds map[netip.Addr]bool
	size  int // Len; len(holds) when zero
	// restored and reconciled are what Restore and Reconcile return.
	restored, reconciled int
	applyErr             error
	applied              []ledger.Op
}

func (l *fakeLedger) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.size > 0 {
		return l.size
	}
	return len(l.holds)
}

func (l *fakeLedger) Holds(a netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.holds[a]
}

func (l *fakeLedger) Restore(ctx context.Context, why string) (int, error) {
	l.j.add("restore (" + why + ")")
	return l.restored, nil
}

func (l *fakeLedger) Reconcile(ctx context.Context, inKernel map[netip.Addr]time.Duration) (int, error) {
	l.j.add("reconcile")
	return l.reconciled, nil
}

func (l *fakeLedger) Apply(ctx context.Context, ops ...ledger.Op) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.j.add("apply")
	l.applied = append(l.applied, ops...)
	return len(ops), l.applyErr
}

// fakeDecider blocks whatever it is asked about, for the time asked.
type fakeDecider struct{ asked []decide.Request }

func (d *fakeDecider) Decide(r decide.Request) decide.Decision {
	d.asked = append(d.asked, r)
	return decide.Decision{Action: decide.Block, Addr: r.Addr, Origin: r.Origin, Timeout: r.Timeout}
}

type fakeGuard struct {
	mu        sync.Mutex
	prefixes  []netip.Prefix
	refreshes int
	changed   func()
}

func (g *fakeGuard) Prefixes() []netip.Prefix {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.prefixes
}

func (g *fakeGuard) OnChange(f func()) func() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.changed = f
	return func() {}
}

func (g *fakeGuard) Refresh() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refreshes++
	return nil
}

type fakeWatcher struct{ sockets []listeners.Socket }

func (w *fakeWatcher) Snapshot() *listeners.Set { return listeners.NewSet(w.sockets) }

func (w *fakeWatcher) Follow(ctx context.Context, changed func(added, removed []listeners.Socket)) error {
	<-ctx.Done()
	return nil
}

// lockedBuffer is the log's output, read while the keeper writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// rig is a Keeper on fakes.
type rig struct {
	k       *Keeper
	j       *journal
	kernel  *fakeKernel
	ledger  *fakeLedger
	decider *fakeDecider
	guard   *fakeGuard
	watcher *fakeWatcher
	stats   *capture.Stats
	log     *lockedBuffer
	// ticks are the tick channels the keeper asked for, by period.
	ticks map[time.Duration]chan time.Time
	// ticking is told each period the keeper asks ticks of.
	ticking chan time.Duration
}

func newRig(t *testing.T, cfg *config.Config) *rig {
	t.Helper()
	if cfg == nil {
		cfg = config.Default()
	}
	j := &journal{}
	r := &rig{j: j, kernel: &fakeKernel{j: j, print: []byte("as installed")},
		ledger: &fakeLedger{j: j, holds: map[netip.Addr]bool{}}, decider: &fakeDecider{},
		guard: &fakeGuard{}, watcher: &fakeWatcher{}, stats: &capture.Stats{}, log: &lockedBuffer{},
		ticks: map[time.Duration]chan time.Time{}, ticking: make(chan time.Duration, 4)}
	for _, d := range []time.Duration{time.Second, floodTick} {
		r.ticks[d] = make(chan time.Time)
	}
	r.k = New(Config{Settings: cfg, Log: alert.New(slog.New(slog.NewTextHandler(r.log, nil)), nil),
		Ledger: r.ledger, Decider: r.decider, Guard: r.guard, Watcher: r.watcher, Capture: r.stats,
		Kernel: r.kernel, Tick: r.tick})
	return r
}

func (r *rig) tick(d time.Duration) (<-chan time.Time, func()) {
	c, ok := r.ticks[d]
	if !ok {
		panic("no ticks every " + d.String())
	}
	r.ticking <- d
	return c, func() {}
}

// run runs the keeper until the returned stop, which waits for it.
func (r *rig) run() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		r.k.Run(ctx)
		close(done)
	}()
	return func() {
		cancel()
		<-done
	}
}

// logged fails t unless the log holds want.
func (r *rig) logged(t *testing.T, want string) {
	t.Helper()
	if !strings.Contains(r.log.String(), want) {
		t.Errorf("the log lacks %q:\n%s", want, r.log.String())
	}
}

var errNoQueue = errors.New("no such file or directory")

func equal(a, b []string) bool { return strings.Join(a, "|") == strings.Join(b, "|") }
