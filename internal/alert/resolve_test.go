package alert

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/packet"
)

// fakeDNS is a lookup function that counts its calls and the lookups under
// way at once, and answers as answer says (nil: it hangs until its
// context ends, as DNS that drops every query does).
type fakeDNS struct {
	calls, now, most atomic.Int64
	answer           func(ctx context.Context, addr string) ([]string, error)
}

func (f *fakeDNS) lookup(ctx context.Context, addr string) ([]string, error) {
	f.calls.Add(1)
	n := f.now.Add(1)
	defer f.now.Add(-1)
	for {
		m := f.most.Load()
		if n <= m || f.most.CompareAndSwap(m, n) {
			break
		}
	}
	if f.answer != nil {
		return f.answer(ctx, addr)
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// running starts r's workers with f as its DNS, stopped at the test's end.
func running(t *testing.T, r *Resolver, f *fakeDNS) {
	t.Helper()
	r.Lookup = f.lookup
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("the resolver's workers did not stop on ctx")
		}
	})
}

func addr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// DNS that never answers costs Name nothing: it answers at once from the
// cache ("" when it has nothing) and leaves the lookup to the workers.
func TestNameNeverWaitsForDNS(t *testing.T) {
	r := NewResolver()
	running(t, r, &fakeDNS{})
	start := time.Now()
	for i := range 5000 {
		if n := r.Name(addr(i)); n != "" {
			t.Fatalf("Name = %q", n)
		}
	}
	// Backed up: a line does not wait either.
	if n := r.NameWithin(addr(99999), time.Second); n != "" {
		t.Fatalf("NameWithin = %q", n)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("5000 names with DNS down took %s", took)
	}
}

// A failure (an error or a timeout) is cached: the same address is not
// looked up again while it is, and a line does not wait for it.
func TestFailuresAreCached(t *testing.T) {
	r := NewResolver()
	r.Timeout = 50 * time.Millisecond
	f := &fakeDNS{answer: func(ctx context.Context, addr string) ([]string, error) {
		if addr == "10.0.0.1" {
			return nil, errors.New("NXDOMAIN")
		}
		<-ctx.Done() // 10.0.0.2: timeout
		return nil, ctx.Err()
	}}
	running(t, r, f)
	r.Name(addr(1))
	r.Name(addr(2))
	eventually(t, "both lookups", func() bool { return r.Pending() == 0 && r.Stats.Failures.Load() == 2 })
	start := time.Now()
	for range 100 {
		r.Name(addr(1))
		r.NameWithin(addr(2), time.Second)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("lines waited for names known to fail: %s", took)
	}
	time.Sleep(20 * time.Millisecond)
	if n := f.calls.Load(); n != 2 {
		t.Errorf("%d lookups, want 2: failures are not cached", n)
	}
	// Past the negative time, the address is asked again.
	r.mu.Lock()
	for a, c := range r.cache {
		c.expires = time.Now().Add(-time.Second)
		r.cache[a] = c
	}
	r.mu.Unlock()
	r.Name(addr(1))
	eventually(t, "the lookup again", func() bool { return f.calls.Load() == 3 })
}

// At most Workers lookups run at once; Queue more wait; the rest are
// dropped and counted, and asked again later once there is room.
func TestWorkersAndQueueAreBounded(t *testing.T) {
	r := NewResolver()
	r.Workers, r.Queue = 3, 10
	release := make(chan struct{})
	f := &fakeDNS{answer: func(ctx context.Context, addr string) ([]string, error) {
		select {
		case <-release:
			return []string{"h" + strings.ReplaceAll(addr, ".", "-") + ".example."}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}}
	running(t, r, f)
	for i := range 3 {
		r.Name(addr(i))
	}
	eventually(t, "3 lookups under way", func() bool { return f.now.Load() == 3 })
	for i := 3; i < 100; i++ {
		r.Name(addr(i))
	}
	if d := r.Stats.Dropped.Load(); d != 87 {
		t.Errorf("dropped %d lookups, want 87 (100 asked, 3 workers, queue of 10)", d)
	}
	if p := r.Pending(); p != 13 {
		t.Errorf("%d lookups pending, want 13", p)
	}
	close(release)
	eventually(t, "the 13 lookups", func() bool { return r.Pending() == 0 })
	if most := f.most.Load(); most != 3 {
		t.Errorf("%d lookups at once, want at most (and here exactly) 3", most)
	}
	if n := f.calls.Load(); n != 13 {
		t.Errorf("%d lookups, want 13", n)
	}
	if n := r.Name(addr(5)); n != "h10-0-0-5.example" {
		t.Errorf("Name after the lookup = %q", n)
	}
	// A dropped lookup is queued again when asked again.
	if n := r.Name(addr(50)); n != "" {
		t.Errorf("Name of a dropped lookup = %q", n)
	}
	eventually(t, "the dropped one asked again", func() bool { return r.Cached(addr(50)) == "h10-0-0-50.example" })
}

// A line waits for a name that comes quickly (a hosts file), at most wait
// for one that does not, and only once per lookup; names found are told
// to OnName. Once stopped, nothing waits.
func TestNameWithin(t *testing.T) {
	r := NewResolver()
	var told sync.Map
	r.OnName = func(a netip.Addr, name string) { told.Store(a, name) }
	f := &fakeDNS{answer: func(ctx context.Context, addr string) ([]string, error) {
		if addr == "10.0.0.1" {
			time.Sleep(10 * time.Millisecond)
			return []string{"scanner.example.test."}, nil
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	running(t, r, f)
	if n := r.NameWithin(addr(1), NameWait); n != "scanner.example.test" {
		t.Errorf("NameWithin = %q, want the name", n)
	}
	if n, ok := told.Load(addr(1)); !ok || n != "scanner.example.test" {
		t.Errorf("OnName told %v", n)
	}
	start := time.Now()
	r.NameWithin(addr(2), 100*time.Millisecond)
	if took := time.Since(start); took < 90*time.Millisecond || took > time.Second {
		t.Errorf("the first wait for a hanging lookup took %s, want about 100ms", took)
	}
	start = time.Now()
	r.NameWithin(addr(2), 100*time.Millisecond)
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Errorf("a second line waited %s for a lookup another already waited for in vain", took)
	}
}

// A stop writes what is queued without waiting for names, for at most
// DrainFor: the rest is counted as suppressed.
func TestQueueStopsWithoutWaitingForNames(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return buf.Write(p) })
	log := New(slog.New(slog.NewTextHandler(w, nil)), func(_ netip.Addr, wait time.Duration) string {
		time.Sleep(wait) // DNS that never answers: every wait is spent
		return ""
	})
	q := NewQueue(log)
	for i := range 4096 {
		q.Send(Event{What: KindProbe, Probe: packet.Probe{Src: addr(i), Kind: packet.KindSYN, Proto: packet.TCP, DstPort: 1}})
	}
	done := make(chan struct{})
	close(done)
	start := time.Now()
	q.Run(done)
	if took := time.Since(start); took > DrainFor+500*time.Millisecond {
		t.Errorf("stopping with 4096 lines queued took %s", took)
	}
	mu.Lock()
	lines := strings.Count(buf.String(), "\n")
	mu.Unlock()
	if got := uint64(lines) + q.Suppressed(); got != 4096 {
		t.Errorf("%d lines written + %d suppressed, want 4096", lines, q.Suppressed())
	}
}

// Past DrainFor, what is still queued is counted, not written: a log that
// cannot keep up does not hold the stop either.
func TestQueueStopIsBounded(t *testing.T) {
	var lines atomic.Int64
	w := writerFunc(func(p []byte) (int, error) { time.Sleep(time.Millisecond); lines.Add(1); return len(p), nil })
	q := NewQueue(New(slog.New(slog.NewTextHandler(w, nil)), nil))
	q.drainFor = 100 * time.Millisecond
	for i := range 4096 {
		q.Send(Event{What: KindProbe, Probe: packet.Probe{Src: addr(i), Kind: packet.KindSYN, Proto: packet.TCP, DstPort: 1}})
	}
	done := make(chan struct{})
	close(done)
	start := time.Now()
	q.Run(done)
	if took := time.Since(start); took > time.Second {
		t.Errorf("stopping took %s with a drain bound of 100ms", took)
	}
	if n := uint64(lines.Load()); n+q.Suppressed() != 4096 || q.Suppressed() == 0 {
		t.Errorf("%d lines written + %d suppressed, want 4096 with some suppressed", n, q.Suppressed())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
