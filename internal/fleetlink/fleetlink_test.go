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
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
	"github.com/portsentry-nft/portsentry-nft/internal/scanner"
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
	dec    *decide.Decider
	ledger *ledger.Ledger
	kernel *ledgertest.Kernel
	link   *fleetlink.Link
	log    *netnstest.Output
}

// shareForgeable, given to startHost, turns fleet.share_forgeable on.
const shareForgeable = "share_forgeable: true, "

// startHost starts a host; opts are more keys of its fleet section
// (shareForgeable) and more YAML documents' lines.
func startHost(t *testing.T, ns *server.Server, name string, g guard, opts ...string) *host {
	t.Helper()
	fleetKeys, more := "", ""
	for _, o := range opts {
		if strings.HasSuffix(o, ", ") {
			fleetKeys += o
		} else {
			more += o
		}
	}
	cfg, err := config.Parse("t.yaml", []byte("fleet: {"+fleetKeys+"servers: [nats://127.0.0.1:4222], name: "+name+", correlate: {hosts: 0}}\n"+more))
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
	h.dec = dec
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

// block decides r on h and applies it, as the control socket and the
// pipeline do.
func (h *host) block(t *testing.T, r decide.Request) {
	t.Helper()
	if r.Now.IsZero() {
		r.Now = time.Now()
	}
	d := h.dec.Decide(r)
	if d.Action != decide.Block {
		t.Fatalf("%s refused: %s", r.Addr, d)
	}
	if _, err := h.ledger.Apply(context.Background(), ledger.Act{Decision: d}); err != nil {
		t.Fatal(err)
	}
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
	h1.block(t, decide.Request{Addr: a, Origin: state.OriginManual})
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
	h1.block(t, decide.Request{Addr: a, Origin: state.OriginManual})
	waitFor(t, "no refusal on h2", func() bool {
		return strings.Contains(h2.log.String(), `refused a fleet block" fleet=h2 addr=203.0.113.8 host=h1 why="protected: never_block"`)
	})
	if _, ok := h2.ledger.Get(a); ok {
		t.Error("h2 blocked an address its guard protects")
	}
}

// No amplification: a block on probes one host saw (forgeable: one forged
// SYN does it) stays on that host; a handshake's and an administrator's
// travel. The forged one is published nowhere, so the
// other host never even decides on it.
func TestForgeableBlocksStayLocal(t *testing.T) {
	ns := startServer(t)
	h1, h2 := startHost(t, ns, "h1", guard{}), startHost(t, ns, "h2", guard{})
	forged, verified := netip.MustParseAddr("203.0.113.20"), netip.MustParseAddr("203.0.113.29")
	h1.block(t, decide.Request{Addr: forged, Origin: state.OriginDetect, Probes: 1, Ports: 1})
	h1.block(t, decide.Request{Addr: forged.Next(), Origin: state.OriginKernel, Probes: 5, Ports: 5})
	h1.block(t, decide.Request{Addr: verified, Origin: state.OriginDetect, Probes: 1, Ports: 1, Evidence: decide.Unforgeable})
	h1.block(t, decide.Request{Addr: verified.Next(), Origin: state.OriginManual})
	waitFor(t, "h2 did not get the administrator's block", func() bool { _, ok := h2.ledger.Get(verified.Next()); return ok })
	waitFor(t, "h2 did not get the handshake's block", func() bool { _, ok := h2.ledger.Get(verified); return ok })
	time.Sleep(200 * time.Millisecond)
	for _, a := range []netip.Addr{forged, forged.Next()} {
		if _, ok := h2.ledger.Get(a); ok {
			t.Errorf("a block on forgeable probes of %s reached h2", a)
		}
	}
}

// With fleet.share_forgeable, forgeable blocks travel, and arrive weak:
// a full set gives them up first, and they never count as offences.
func TestSharedForgeableBlocksArriveWeak(t *testing.T) {
	ns := startServer(t)
	h1, h2 := startHost(t, ns, "h1", guard{}, shareForgeable), startHost(t, ns, "h2", guard{}, shareForgeable)
	a := netip.MustParseAddr("203.0.113.30")
	h1.block(t, decide.Request{Addr: a, Origin: state.OriginDetect, Probes: 3, Ports: 3})
	waitFor(t, "h2 did not get the shared block", func() bool { _, ok := h2.ledger.Get(a); return ok })
	if b, _ := h2.ledger.Get(a); !b.Weak || b.Evidence != "forgeable" || b.From != "h1" {
		t.Errorf("h2's record %+v, want weak, forgeable, from h1", b)
	}
}

// A compromised host's blocks take at most its share of another host's
// sets (fleet.host_share of block.set_size), so a real scan is still
// blocked there.
func TestAHostsBlocksTakeOnlyItsShare(t *testing.T) {
	ns := startServer(t)
	small := "block: {set_size: 400}\n"
	h1, h2 := startHost(t, ns, "h1", guard{}, small), startHost(t, ns, "h2", guard{}, small)
	for i := range 300 {
		a := netip.AddrFrom4([4]byte{198, 51, 100 + byte(i/250), byte(1 + i%250)})
		h2.block(t, decide.Request{Addr: a, Origin: state.OriginManual})
	}
	waitFor(t, "h1 took none of h2's blocks", func() bool { all, _ := h1.ledger.Fleet("h2"); return all > 0 })
	time.Sleep(300 * time.Millisecond)
	if all, from := h1.ledger.Fleet("h2"); from != 100 || all != 100 {
		t.Errorf("h1 holds %d of h2's blocks (%d fleet blocks), want a quarter of 400: 100", from, all)
	}
	if !strings.Contains(h1.log.String(), "used its share here (fleet.host_share 0.25)") {
		t.Errorf("no refusal line on h1:\n%s", h1.log.String())
	}
	scanner := netip.MustParseAddr("10.201.0.99")
	if d := h1.dec.Decide(decide.Request{Addr: scanner, Origin: state.OriginDetect, Probes: 5, Ports: 5, Now: time.Now()}); d.Action != decide.Block {
		t.Errorf("a real scan on h1 after h2's flood: %s", d)
	}
}

// The tool a block's probe came from travels with the record: h2's
// record names the tool h1's probe was sent by.
func TestToolTravelsWithTheBlock(t *testing.T) {
	ns := startServer(t)
	h1, h2 := startHost(t, ns, "h1", guard{}), startHost(t, ns, "h2", guard{})
	a := netip.MustParseAddr("203.0.113.40")
	d := h1.dec.Decide(decide.Request{Addr: a, Origin: state.OriginDetect, Probes: 1, Ports: 1, Evidence: decide.Unforgeable, Now: time.Now()})
	ev := ledger.Evidence{Probe: packet.Probe{Src: a, Proto: packet.TCP, DstPort: 79, Kind: packet.KindConnect, Tool: scanner.OSStack}}
	if _, err := h1.ledger.Apply(context.Background(), ledger.Act{Decision: d, Evidence: ev}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "h2 did not get h1's block", func() bool { _, ok := h2.ledger.Get(a); return ok })
	if b, _ := h2.ledger.Get(a); b.Tool != "os-stack" {
		t.Errorf("h2's record names tool %q, want os-stack", b.Tool)
	}
	if b, _ := h1.ledger.Get(a); b.Tool != "os-stack" {
		t.Errorf("h1's record names tool %q, want os-stack", b.Tool)
	}
}
