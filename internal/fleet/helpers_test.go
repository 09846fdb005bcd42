package fleet

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// startServer runs an embedded JetStream server (in-process only unless
// opts says otherwise) until the test ends.
func startServer(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	if opts == nil {
		opts = &server.Options{DontListen: true}
	}
	opts.JetStream = true
	if opts.StoreDir == "" {
		opts.StoreDir = t.TempDir()
	}
	opts.NoLog, opts.NoSigs = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// sink records what a Client tells its daemon.
type sink struct {
	mu       sync.Mutex
	blocks   []Block
	unblocks []Lift
	changed  chan struct{}
}

func newSink() *sink { return &sink{changed: make(chan struct{}, 1)} }

func (s *sink) FleetBlock(b Block) {
	s.mu.Lock()
	s.blocks = append(s.blocks, b)
	s.mu.Unlock()
	s.poke()
}

func (s *sink) FleetUnblock(l Lift) {
	s.mu.Lock()
	s.unblocks = append(s.unblocks, l)
	s.mu.Unlock()
	s.poke()
}

func (s *sink) poke() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *sink) snapshot() ([]Block, []Lift) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.blocks), slices.Clone(s.unblocks)
}

// blocksOf returns the blocks of a received so far.
func (s *sink) blocksOf(a netip.Addr) []Block {
	bs, _ := s.snapshot()
	var out []Block
	for _, b := range bs {
		if b.Addr == a {
			out = append(out, b)
		}
	}
	return out
}

// waitFor waits until cond holds on the sink, or fails the test.
func (s *sink) waitFor(t testing.TB, what string, cond func(blocks []Block, lifts []Lift) bool) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		if cond(s.snapshot()) {
			return
		}
		select {
		case <-s.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			bs, ls := s.snapshot()
			t.Fatalf("timed out waiting for %s; blocks %v, lifts %v", what, bs, ls)
		}
	}
}

// waitBlocks waits until the sink holds n blocks of a and returns them.
func (s *sink) waitBlocks(t testing.TB, a netip.Addr, n int) []Block {
	t.Helper()
	s.waitFor(t, "blocks of "+a.String(), func([]Block, []Lift) bool { return len(s.blocksOf(a)) >= n })
	return s.blocksOf(a)
}

type host struct {
	c    *Client
	sink *sink
	done chan error
}

// testCfg is a fleet section for the tests.
func testCfg(name string) config.Fleet {
	return config.Fleet{Servers: []string{"nats://127.0.0.1:4222"}, Name: name,
		Correlate:  config.FleetCorrelate{Hosts: 3, Window: config.Duration(10 * time.Minute)},
		MaxTimeout: config.Duration(7 * 24 * time.Hour)}
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startHost runs a Client named name on ns (in-process) until the test ends.
func startHost(t testing.TB, ns *server.Server, name string, mod ...func(*config.Fleet, *Options)) *host {
	t.Helper()
	cfg := testCfg(name)
	h := &host{sink: newSink(), done: make(chan error, 1)}
	opts := Options{Sink: h.sink, Logger: testLogger(t), Replicas: 1}
	if ns != nil {
		opts.NATSOptions = []nats.Option{nats.InProcessServer(ns)}
	}
	for _, m := range mod {
		m(&cfg, &opts)
	}
	c, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("%s: Run: %v", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s: Run did not return", name)
		}
	})
	return h
}

// waitReady waits for the host's first complete replay of the fleet.
func (h *host) waitReady(t testing.TB) {
	t.Helper()
	select {
	case <-h.c.Ready():
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: not ready", h.c.Name())
	}
}

// waitStats waits until cond holds on the host's Stats.
func (h *host) waitStats(t testing.TB, what string, cond func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := h.c.Stats()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out waiting for %s: %+v", h.c.Name(), what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// nearly reports whether a and b are within d of each other.
func nearly(a, b time.Time, d time.Duration) bool { return a.Sub(b).Abs() <= d }

// waitPurged waits until key of kv holds no block (purged or gone), and
// fails with what otherwise.
func waitPurged(t testing.TB, kv jetstream.KeyValue, key, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		e, err := kv.Get(context.Background(), key)
		if err != nil || e.Operation() != jetstream.KeyValuePut {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
