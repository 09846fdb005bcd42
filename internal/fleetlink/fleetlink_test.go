package fleetlink_test

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/fleet"
	"github.com/portsentry-nft/portsentry-nft/internal/fleetlink"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger/ledgertest"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// startServer runs an in-process JetStream server until the test ends.
func startServer(t *testing.T) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{DontListen: true, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
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

// guard protects nothing and has no local address.
type guard map[netip.Addr]string

func (g guard) Protected(a netip.Addr) (string, bool) { why, ok := g[a]; return why, ok }
func (guard) Local() []netip.Addr                     { return nil }
func (guard) OnChange(func()) func()                  { return func() {} }

// host is one daemon's ledger, decision and fleet link, on ns.
type host struct {
	ledger *ledger.Ledger
	kernel *ledgertest.Kernel
	link   *fleetlink.Link
	log    *netnstest.Output
}

func startHost(t *testing.T, ns *server.Server, name string, g guard) *host {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte("fleet: {servers: [nats://127.0.0.1:4222], name: "+name+", correlate: {hosts: 0}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	settings := func() *config.Config { return cfg }
	h := &host{kernel: &ledgertest.Kernel{}, log: &netnstest.Output{}}
	log := alert.New(slog.New(slog.NewTextHandler(h.log, nil)), nil)
	h.link, err = fleetlink.New(fleetlink.Config{Settings: settings, Guard: g, Log: log, Logger: slog.New(slog.NewTextHandler(h.log, nil)),
		Options: func(o *fleet.Options) { o.Replicas = 1; o.NATSOptions = []nats.Option{nats.InProcessServer(ns)} }})
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(state.Paths{Dir: t.TempDir()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h.ledger = ledger.New(ledger.Config{Store: st, Kernel: h.kernel, Log: log, Settings: cfg, Followers: []ledger.Follower{h.link}})
	dec := decide.New(cfg, g, h.ledger)
	ctx, cancel := context.WithCancel(context.Background())
	h.link.Start(ctx)
	done := make(chan struct{}, 3)
	for _, run := range []func(){func() { h.ledger.Run(ctx) }, func() { h.link.Run(ctx) }, func() { h.link.Intake(ctx, dec, h.ledger) }} {
		go func() { run(); done <- struct{}{} }()
	}
	t.Cleanup(func() {
		cancel()
		for range 3 {
			<-done
		}
		st.Close()
	})
	select {
	case <-h.link.Client().Ready():
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: not ready", name)
	}
	return h
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
	}
}

// An administrator's block on h1 goes through h1's ledger to the fleet
// (the link follows the ledger) and enters h2's ledger by its door, with
// origin fleet and its time left; the administrator's unblock lifts it on
// h2 too. A block h2 holds longer already is left as it is.
func TestAdministratorsBlockTravelsThroughTheLedgers(t *testing.T) {
	ns := startServer(t)
	h1, h2 := startHost(t, ns, "h1", guard{}), startHost(t, ns, "h2", guard{})
	a := netip.MustParseAddr("203.0.113.7")
	ctx := context.Background()
	d := decide.Decision{Action: decide.Block, Addr: a, Origin: state.OriginManual, Timeout: time.Hour, Times: 1}
	if _, err := h1.ledger.Apply(ctx, ledger.Act{Decision: d}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "h2 did not get h1's block", func() bool { _, ok := h2.ledger.Get(a); return ok })
	b, _ := h2.ledger.Get(a)
	if b.Origin != state.OriginFleet || !strings.Contains(b.Kind, "(from h1)") || time.Until(b.Expires) < 59*time.Minute {
		t.Errorf("h2's record %+v", b)
	}
	if _, err := h1.ledger.Apply(ctx, ledger.Unblock{Addrs: []netip.Addr{a}, Cause: ledger.Unblocked}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "h2 did not lift the block h1's administrator lifted", func() bool { _, ok := h2.ledger.Get(a); return !ok })
	if _, ok := h1.ledger.Get(a); ok {
		t.Error("h1 still holds it")
	}
}

// A fleet block of an address the receiver's own guard protects is
// refused there, with a line saying why.
func TestReceiverAppliesItsOwnGuard(t *testing.T) {
	ns := startServer(t)
	a := netip.MustParseAddr("203.0.113.8")
	h1, h2 := startHost(t, ns, "h1", guard{}), startHost(t, ns, "h2", guard{a: "never_block"})
	d := decide.Decision{Action: decide.Block, Addr: a, Origin: state.OriginManual, Timeout: time.Hour, Times: 1}
	if _, err := h1.ledger.Apply(context.Background(), ledger.Act{Decision: d}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "no refusal on h2", func() bool {
		return strings.Contains(h2.log.String(), `refused a fleet block" fleet=h2 addr=203.0.113.8 why="protected: never_block"`)
	})
	if _, ok := h2.ledger.Get(a); ok {
		t.Error("h2 blocked an address its guard protects")
	}
}
