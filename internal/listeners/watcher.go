package listeners

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultInterval is how often a Watcher reads the socket tables unless
// told otherwise: a new listener is noticed well within a second.
const DefaultInterval = 250 * time.Millisecond

// Watcher keeps an up-to-date Set of the host's listening sockets by
// reading them every Interval, and reports what changed. Set the fields,
// then call Run; Snapshot may be called from any goroutine at any time.
// A socket replaced by another on the same address and port (a restarted
// service) is no change: the snapshot keeps the earlier one's Inode.
type Watcher struct {
	// Interval between readings; DefaultInterval when zero.
	Interval time.Duration
	// NetNS is the network namespace to watch (nil: the daemon's own). It
	// must stay open while the Watcher runs.
	NetNS *os.File
	// Dump, when set, replaces reading the kernel's tables (for tests).
	Dump func() ([]Socket, error)
	// OnChange, when set, is called on Run's goroutine after a reading that
	// differs from the previous one, with the sockets that appeared and
	// those that went away (sorted; one of them may be empty). Snapshot
	// already returns the new Set when it is called. The first reading
	// reports every socket as added, unless Update was called before Run.
	OnChange func(added, removed []Socket)
	// OnError, when set, is called on Run's goroutine when a reading fails;
	// the same error is reported once until a reading succeeds again. The
	// previous Set stays in force meanwhile.
	OnError func(error)

	mu      sync.Mutex // serialises readings
	d       *dumper
	started bool // a reading has succeeded: cur is no guess
	lastErr string
	cur     atomic.Pointer[Set]
}

// Snapshot returns the Set of the latest successful reading (an empty Set
// before the first). It is one atomic load: cheap enough for every packet.
func (w *Watcher) Snapshot() *Set {
	if s := w.cur.Load(); s != nil {
		return s
	}
	return emptySet
}

var emptySet = &Set{}

// Update makes one reading now, installs its Set as the snapshot and
// returns how it differs from the previous one. It does not call OnChange:
// the daemon calls it once at start (before installing the ruleset, so the
// kernel sets start out right), then Run.
func (w *Watcher) Update() (added, removed []Socket, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	sockets, err := w.read()
	if err != nil {
		return nil, nil, err
	}
	next := NewSet(sockets)
	added, removed = w.Snapshot().Diff(next)
	if len(added) > 0 || len(removed) > 0 || !w.started {
		w.cur.Store(next)
	}
	w.started = true
	return added, removed, nil
}

func (w *Watcher) read() ([]Socket, error) {
	if w.Dump != nil {
		return w.Dump()
	}
	if w.d == nil {
		d, err := dial(w.NetNS)
		if err != nil {
			return nil, err
		}
		w.d = d
	}
	s, err := w.d.dump()
	if err != nil {
		// A netlink socket that failed may hold half a reply: start afresh.
		w.d.close()
		w.d = nil
	}
	return s, err
}

// Run reads the socket tables every Interval until ctx is done, keeping
// Snapshot current and calling OnChange and OnError. It returns nil when
// ctx is cancelled.
func (w *Watcher) Run(ctx context.Context) error {
	defer func() {
		w.mu.Lock()
		if w.d != nil {
			w.d.close()
			w.d = nil
		}
		w.mu.Unlock()
	}()
	iv := w.Interval
	if iv <= 0 {
		iv = DefaultInterval
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		w.poll()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Follow is Run with changed as OnChange: the way for a caller that starts
// the Watcher to hear of its changes.
func (w *Watcher) Follow(ctx context.Context, changed func(added, removed []Socket)) error {
	w.OnChange = changed
	return w.Run(ctx)
}

func (w *Watcher) poll() {
	added, removed, err := w.Update()
	if err != nil {
		if msg := err.Error(); msg != w.lastErr {
			w.lastErr = msg
			if w.OnError != nil {
				w.OnError(err)
			}
		}
		return
	}
	w.lastErr = ""
	if (len(added) > 0 || len(removed) > 0) && w.OnChange != nil {
		w.OnChange(added, removed)
	}
}
