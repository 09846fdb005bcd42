package alert

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Resolver does PortSentry's RESOLVE_HOST: reverse DNS, never in the way.
//
// An attacker decides which addresses the daemon looks up (a spoofed flood
// brings a new one with every packet) and may control the DNS that answers
// them, slowly or never. So no caller waits for a lookup it did not bound:
// Name answers from the cache at once and queues the lookup; a bounded
// pool of workers does the lookups, from a bounded queue (a lookup that
// does not fit is dropped and counted); failures and timeouts are cached
// too, so a name that does not resolve is not asked for again for a while.
// NameWithin lets a caller that can afford it (an alert line) wait a
// little, and not at all when the resolver is backed up or the name is
// known to fail.
//
// The fields are read once, at the first use: set them before.
type Resolver struct {
	// Lookup is the reverse lookup (default net.DefaultResolver.LookupAddr);
	// it must return once ctx is done.
	Lookup func(ctx context.Context, addr string) ([]string, error)
	// Timeout bounds each lookup.
	Timeout time.Duration
	// Workers lookups run at once, and Queue more wait for a worker.
	Workers, Queue int
	// Names are kept for Positive, failures and timeouts for Negative;
	// the cache holds at most Cache addresses.
	Positive, Negative time.Duration
	Cache              int
	// OnName is told each name found (on a worker's goroutine; it must not
	// wait long).
	OnName func(a netip.Addr, name string)

	Stats ResolverStats

	once     sync.Once
	queue    chan netip.Addr
	stop     chan struct{} // closed when Run's ctx is done
	stopOnce sync.Once

	mu      sync.Mutex
	cache   map[netip.Addr]cached
	pending map[netip.Addr]*pending
}

// pending is a lookup queued or under way.
type pending struct {
	done   chan struct{} // closed when it is done
	waited bool          // a caller waited for it in vain: the next do not
}

// ResolverStats are the resolver's counters.
type ResolverStats struct {
	Lookups  atomic.Uint64 // lookups done
	Failures atomic.Uint64 // lookups that found no name (errors and timeouts included)
	Dropped  atomic.Uint64 // lookups not queued: the queue was full
}

type cached struct {
	name    string // "" for a failure
	expires time.Time
}

// The defaults of NewResolver.
const (
	resolveTimeout  = 2 * time.Second
	resolveWorkers  = 4
	resolveQueue    = 1024
	resolveCache    = 4096
	resolvePositive = time.Hour
	resolveNegative = 5 * time.Minute
)

// NewResolver makes a Resolver with the defaults: net.DefaultResolver, a
// 2 s timeout, 4 workers, a queue of 1024, names kept for an hour and
// failures for 5 minutes, 4096 addresses cached. Run starts the workers.
func NewResolver() *Resolver {
	return &Resolver{
		Lookup:   net.DefaultResolver.LookupAddr,
		Timeout:  resolveTimeout,
		Workers:  resolveWorkers,
		Queue:    resolveQueue,
		Positive: resolvePositive,
		Negative: resolveNegative,
		Cache:    resolveCache,
	}
}

func (r *Resolver) init() {
	r.once.Do(func() {
		if r.Lookup == nil {
			r.Lookup = net.DefaultResolver.LookupAddr
		}
		if r.Timeout <= 0 {
			r.Timeout = resolveTimeout
		}
		r.Workers = max(r.Workers, 1)
		r.Queue = max(r.Queue, 0)
		r.Cache = max(r.Cache, 1)
		r.queue = make(chan netip.Addr, r.Queue)
		r.stop = make(chan struct{})
		r.cache = map[netip.Addr]cached{}
		r.pending = map[netip.Addr]*pending{}
	})
}

// Run does the lookups on Workers goroutines until ctx is done (a lookup
// under way is cancelled), then returns. Names asked for after that are
// answered from the cache only.
func (r *Resolver) Run(ctx context.Context) {
	r.init()
	var wg sync.WaitGroup
	for range r.Workers {
		wg.Go(func() { r.work(ctx) })
	}
	<-ctx.Done()
	r.stopOnce.Do(func() { close(r.stop) })
	wg.Wait()
}

func (r *Resolver) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-r.queue:
			r.resolve(ctx, a)
		}
	}
}

// resolve looks a up and caches the answer, a failure included.
func (r *Resolver) resolve(ctx context.Context, a netip.Addr) {
	lctx, cancel := context.WithTimeout(ctx, r.Timeout)
	names, err := r.Lookup(lctx, a.String())
	cancel()
	name := ""
	if err == nil && len(names) > 0 {
		name = strings.TrimSuffix(names[0], ".")
	}
	r.Stats.Lookups.Add(1)
	ttl := r.Positive
	if name == "" {
		r.Stats.Failures.Add(1)
		ttl = r.Negative
	}
	if ctx.Err() != nil && name == "" {
		ttl = 0 // stopped, not failed: not cached
	}
	r.mu.Lock()
	if ttl > 0 {
		r.put(a, cached{name, time.Now().Add(ttl)})
	}
	p := r.pending[a]
	delete(r.pending, a)
	r.mu.Unlock()
	if name != "" && r.OnName != nil {
		r.OnName(a, name)
	}
	if p != nil {
		close(p.done)
	}
}

// put caches an answer (under mu); a full cache first gives up an expired
// entry, or else an arbitrary one.
func (r *Resolver) put(a netip.Addr, c cached) {
	if _, ok := r.cache[a]; !ok && len(r.cache) >= r.Cache {
		now := time.Now()
		var victim netip.Addr
		n := 0
		for k, v := range r.cache { // map order is random
			if !victim.IsValid() || v.expires.Before(now) {
				victim = k
			}
			if n++; v.expires.Before(now) || n >= 16 {
				break
			}
		}
		delete(r.cache, victim)
	}
	r.cache[a] = c
}

// Name is a's name if it is known now, else "" at once: a lookup is then
// queued, unless one is under way or a failure is cached.
func (r *Resolver) Name(a netip.Addr) string {
	name, _, _ := r.lookup(a)
	return name
}

// Cached is a's name if the cache has it; it queues nothing.
func (r *Resolver) Cached(a netip.Addr) string {
	r.init()
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.cache[a]; ok && time.Now().Before(c.expires) {
		return c.name
	}
	return ""
}

// NameWithin is Name, waiting up to wait for a lookup to finish. It does
// not wait when a's lookup is known to fail (cached failure), when the
// resolver is backed up (as many lookups queued or under way as workers:
// the wait would be for DNS that does not answer), when a caller already
// waited for this lookup in vain, or once Run has stopped.
func (r *Resolver) NameWithin(a netip.Addr, wait time.Duration) string {
	name, p, busy := r.lookup(a)
	if p == nil || busy || wait <= 0 {
		return name
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-p.done:
		return r.Cached(a)
	case <-t.C:
	case <-r.stop:
	}
	r.mu.Lock()
	p.waited = true
	r.mu.Unlock()
	return ""
}

// lookup answers from the cache or queues a's lookup. p is the lookup
// queued or under way for a (nil when there is none: answered from the
// cache, dropped, or stopped); busy says not to wait for it: the resolver
// was backed up before this call, or a caller already waited in vain.
func (r *Resolver) lookup(a netip.Addr) (name string, p *pending, busy bool) {
	r.init()
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.cache[a]; ok {
		if now.Before(c.expires) {
			return c.name, nil, false
		}
		delete(r.cache, a)
	}
	select {
	case <-r.stop:
		return "", nil, true
	default:
	}
	busy = len(r.pending) >= r.Workers
	if p = r.pending[a]; p != nil {
		return "", p, busy || p.waited
	}
	p = &pending{done: make(chan struct{})}
	select {
	case r.queue <- a:
		r.pending[a] = p
		return "", p, busy
	default:
		r.Stats.Dropped.Add(1)
		return "", nil, true
	}
}

// Pending is how many lookups are queued or under way.
func (r *Resolver) Pending() int {
	r.init()
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}
