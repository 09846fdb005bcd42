package pipeline

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/capture"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/detect"
	"github.com/portsentry-nft/portsentry-nft/internal/follow"
	"github.com/portsentry-nft/portsentry-nft/internal/guard"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger/ledgertest"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
	"github.com/portsentry-nft/portsentry-nft/internal/scanner"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// syn is an IPv4 TCP SYN from 10.201.0.<src>:40000 to 10.201.0.1:port.
func syn(src, port byte) []byte {
	return []byte{
		0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 201, 0, src, 10, 201, 0, 1,
		0x9c, 0x40, 0, port, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 4, 0, 0, 0, 0, 0,
	}
}

// rig is a pipeline with its decision and ledger, a recording kernel and
// no root.
type rig struct {
	*Pipeline
	kernel   *ledgertest.Kernel
	verdicts *ledgertest.Verdicts
	ledger   *ledger.Ledger
	store    *state.Store
	alerts   *alert.Queue
	log      *netnstest.Output
}

type noPorts struct{}

func (noPorts) InUse(uint8, netip.Addr, uint16) bool { return false }

func newRig(t testing.TB, yaml string, run bool) *rig {
	t.Helper()
	return newRigNamed(t, yaml, run, nil)
}

// newRigNamed is newRig with resolve_host: names resolves the sources for
// the ledger's records and the alert lines (as the daemon wires it).
func newRigNamed(t testing.TB, yaml string, run bool, names *alert.Resolver) *rig {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{kernel: &ledgertest.Kernel{}, verdicts: &ledgertest.Verdicts{}, log: &netnstest.Output{}}
	var w io.Writer = r.log
	if _, ok := t.(*testing.B); ok {
		w = io.Discard
	}
	var namer alert.Namer
	var name func(netip.Addr) string
	if names != nil {
		namer, name = names.NameWithin, names.Name
	}
	log := alert.New(slog.New(slog.NewTextHandler(w, nil)), namer)
	r.store, err = state.Open(state.Paths{Dir: t.TempDir()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.store.Close() })
	lc := ledger.Config{Store: r.store, Kernel: r.kernel, Log: log, Settings: cfg, Verdicts: r.verdicts,
		Name: name, NameWithin: namer, OnLift: func(a netip.Addr) { r.Forget(a) }}
	follow.NewSet(func() *config.Config { return cfg }, log).Wire(&lc)
	r.ledger = ledger.New(lc)
	if names != nil {
		names.OnName = r.ledger.SetHost
	}
	g := guard.New(guard.Sources{}, cfg.NeverBlockPrefixes)
	if err := g.Refresh(); err != nil {
		t.Log(err)
	}
	r.alerts = alert.NewQueue(log)
	r.Pipeline = New(Config{Settings: cfg, Decider: decide.New(cfg, g, r.ledger), Ledger: r.ledger, Alerts: r.alerts,
		Ports: func() Ports { return noPorts{} }})
	if run {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { r.ledger.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	return r
}

// waitFor polls cond for up to two seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Garbage and truncated packets are counted and skipped; capture goes on.
func TestMalformedPacketsAreCountedAndSkipped(t *testing.T) {
	r := newRig(t, "", false)
	for _, pkt := range [][]byte{nil, {0x45}, {0x60, 0, 0}, bytes.Repeat([]byte{0xff}, 60), syn(2, 1)[:30]} {
		r.Handle(pkt, capture.RuleUnknown)
	}
	if got := r.Malformed.Load(); got != 5 {
		t.Errorf("malformed = %d, want 5", got)
	}
	r.Handle(syn(2, 1), capture.RuleTCP)
	if got := r.Probes[packet.KindSYN].Load(); got != 1 {
		t.Errorf("a valid SYN after garbage was not counted (SYN probes = %d)", got)
	}
}

// deep6 is an IPv6 TCP SYN from fd00:201::<src> to fd00:201::1 port 1
// behind one 1 KB destination options header, cut at snaplen bytes as NFLOG
// copies it: the transport header is not in the copy.
func deep6(src byte, snaplen int) []byte {
	const opts = 1024
	b := make([]byte, 40+opts+20)
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], opts+20) // payload length
	b[6], b[7] = 60, 64                        // destination options, hop limit
	copy(b[8:], netip.MustParseAddr("fd00:201::").AsSlice())
	b[23] = src
	copy(b[24:], netip.MustParseAddr("fd00:201::1").AsSlice())
	b[40], b[41] = 6, opts/8-1 // next header TCP
	for i := 42; i < 40+opts; i += 2 + 254 {
		b[i], b[i+1] = 1, byte(min(254, 40+opts-i-2)) // PadN
	}
	t := b[40+opts:]
	t[0], t[1], t[3], t[12], t[13] = 0x9c, 0x40, 1, 0x50, 0x02
	return b[:snaplen]
}

// A probe whose transport header lies past the copy (deep IPv6 extension
// headers, a cut copy) is still acted on when its rule is known: the
// source is in the IP header. TCP: an unknown-flags scan of port 0.
func TestOpaqueProbeIsBlocked(t *testing.T) {
	for _, tc := range []struct {
		name string
		pkt  []byte
		rule capture.Rule
		src  string
		kind packet.Kind
		line string
	}{
		{"v6_deep_tcp", deep6(2, 256), capture.RuleTCP, "fd00:201::2", packet.KindUnknown,
			"attackalert: TCP unknown-flags scan from host fd00:201::2/fd00:201::2 to TCP port: 0 from TCP port: 0"},
		{"v6_deep_udp", deep6(3, 1024), capture.RuleUDP, "fd00:201::3", packet.KindUDP,
			"attackalert: UDP scan from host fd00:201::3/fd00:201::3 to UDP port: 0 from UDP port: 0"},
		{"v4_cut_tcp", syn(2, 1)[:30], capture.RuleTCP, "10.201.0.2", packet.KindUnknown,
			"attackalert: TCP unknown-flags scan from host 10.201.0.2/10.201.0.2 to TCP port: 0 from TCP port: 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, "", true)
			src := netip.MustParseAddr(tc.src)
			r.Handle(tc.pkt, tc.rule)
			if r.Malformed.Load() != 0 || r.Opaque.Load() != 1 || r.Probes[tc.kind].Load() != 1 {
				t.Fatalf("malformed %d, opaque %d, %v %d; want 0, 1, 1", r.Malformed.Load(), r.Opaque.Load(), tc.kind, r.Probes[tc.kind].Load())
			}
			waitFor(t, "the block", func() bool { _, ok := r.store.Get(src); return ok })
			if got := r.kernel.Added(); len(got) != 1 || got[0].Addr != src {
				t.Errorf("kernel got %v, want %s", got, src)
			}
			if b, _ := r.store.Get(src); b.Kind != tc.kind.String() {
				t.Errorf("record %+v, want kind %v", b, tc.kind)
			}
			r.alerts.Drain()
			if !strings.Contains(r.log.String(), tc.line) {
				t.Errorf("log lacks %q:\n%s", tc.line, r.log)
			}
		})
	}
}

// Without a known rule (NFQUEUE, another rule logging to the group), a
// packet whose transport header was not captured cannot be told from
// garbage: malformed, skipped, nothing blocked.
func TestOpaquePacketWithoutRuleIsMalformed(t *testing.T) {
	r := newRig(t, "", true)
	r.Handle(deep6(2, 256), capture.RuleUnknown)
	r.Handle(syn(2, 1)[:30], capture.RuleUnknown)
	if v := r.HandleQueued(deep6(2, 256), 9); v != capture.Accept {
		t.Errorf("queued verdict %v, want Accept", v)
	}
	if r.Malformed.Load() != 3 || r.Opaque.Load() != 0 {
		t.Errorf("malformed %d, opaque %d; want 3, 0", r.Malformed.Load(), r.Opaque.Load())
	}
	time.Sleep(50 * time.Millisecond)
	if len(r.kernel.Added()) != 0 || r.ledger.Len() != 0 {
		t.Errorf("blocked %v", r.kernel.Added())
	}
}

// Triggers from a protected address are logged and never reach the ledger.
func TestProtectedSourceIsNotBlocked(t *testing.T) {
	r := newRig(t, "never_block: [10.201.0.0/24]\n", true)
	r.Handle(syn(2, 1), capture.RuleTCP)
	if r.Protected.Load() != 1 {
		t.Fatalf("protected = %d, want 1", r.Protected.Load())
	}
	if n := r.alerts.Len(); n != 2 {
		t.Errorf("%d alert events, want the probe and the protected-host line", n)
	}
	r.alerts.Drain()
	if want := "attackalert: Host 10.201.0.2 is protected (never_block 10.201.0.0/24) and is never blocked"; !strings.Contains(r.log.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, r.log)
	}
	if len(r.kernel.Added()) != 0 || r.ledger.Len() != 0 {
		t.Errorf("a protected source reached the kernel (%v) or the ledger (%d)", r.kernel.Added(), r.ledger.Len())
	}
}

// Past block.max_per_second, triggers are logged and not blocked; half the
// budget is kept for sources that come back, and a refused source is kept,
// so its next probe gets that half.
func TestRateCap(t *testing.T) {
	r := newRig(t, "block: {max_per_second: 3}\n", true)
	for i := byte(0); i < 10; i++ {
		r.Handle(syn(10+i, 1), capture.RuleTCP) // distinct sources, seen once
	}
	if got := r.RateLimited.Load(); got != 8 {
		t.Errorf("rate limited %d of 10, want 8 (a burst of 3, 1 of it kept for sources that come back)", got)
	}
	waitFor(t, "2 elements", func() bool { return len(r.kernel.Added()) == 2 })
	r.Handle(syn(19, 2), capture.RuleTCP) // a refused source comes back
	waitFor(t, "the source that came back", func() bool { return len(r.kernel.Added()) == 3 })
	if got := r.kernel.Added()[2].Addr; got != netip.MustParseAddr("10.201.0.19") {
		t.Errorf("third element %s, want 10.201.0.19", got)
	}
}

// A spoofed flood, every packet a new source past the rate cap, writes a
// second's worth of lines and counts the rest as suppressed (not two lines
// per packet).
func TestSpoofedFloodLinesAreCapped(t *testing.T) {
	r := newRig(t, "block: {max_per_second: 3}\ndetect: {max_sources: 100000}\n", false)
	const n = 5000
	start := time.Now()
	for i := 0; i < n; i++ {
		pkt := syn(0, 1)
		pkt[13], pkt[14], pkt[15] = 7, byte(i>>8), byte(i)
		r.Handle(pkt, capture.RuleTCP)
	}
	// The bucket holds a second's worth and refills as the loop runs.
	refill := int(time.Since(start).Seconds()*alert.LinesPerSecond) + 1
	lines, suppressed := r.alerts.Len(), int(r.alerts.Suppressed())
	if max := alert.LinesPerSecond + refill + 3 + 10; lines > max {
		t.Errorf("%d alert lines queued for %d spoofed probes, want at most %d", lines, n, max)
	}
	limited := int(r.RateLimited.Load())
	if want := 2*limited + (n - limited); lines+suppressed != want || limited < n-3 {
		t.Errorf("lines %d + suppressed %d = %d, want %d (each refused trigger: probe and reason, each block: probe; %d refused)", lines, suppressed, lines+suppressed, want, limited)
	}
}

// A full set gives up a block that rests on one probe for a source with
// more evidence; a source refused for want of room is marked nothing:
// its later probes are refused again, never "already blocked", and one
// warning says so.
func TestFullSetGivesUpWeakBlocks(t *testing.T) {
	r := newRig(t, "block: {set_size: 1}\n", true)
	weak, strong, third := netip.MustParseAddr("10.201.0.2"), netip.MustParseAddr("10.201.0.3"), netip.MustParseAddr("10.201.0.4")
	r.Handle(syn(2, 1), capture.RuleTCP) // one probe: a weak block
	waitFor(t, "the weak block", func() bool { return r.store.Has(weak) })
	r.Handle(syn(3, 1), capture.RuleTCP) // seen once: no room
	if got := r.SetFull.Load(); got != 1 {
		t.Fatalf("set full %d, want 1", got)
	}
	r.Handle(syn(3, 2), capture.RuleTCP) // comes back: the weak block makes room
	waitFor(t, "the stronger block", func() bool { return r.store.Has(strong) })
	if r.store.Has(weak) || r.ledger.Len() != 1 {
		t.Errorf("the weak block was kept (held %v, %d blocks)", r.store.Has(weak), r.ledger.Len())
	}
	if d := r.kernel.Deleted(); len(d) != 1 || d[0] != weak {
		t.Errorf("kernel deletes %v, want %s", d, weak)
	}
	for i := byte(1); i <= 3; i++ {
		r.Handle(syn(4, i), capture.RuleTCP) // the strong block is not given up
	}
	if got := r.SetFull.Load(); got != 4 {
		t.Errorf("set full %d, want 4", got)
	}
	if r.store.Has(third) || r.AlreadyBlocked.Load() != 0 {
		t.Errorf("a refused source was blocked (%v) or taken as already blocked (%d)", r.store.Has(third), r.AlreadyBlocked.Load())
	}
	r.alerts.Drain()
	for _, want := range []string{"attackalert: Host 10.201.0.2 has been unblocked to make room in the full sets", "the blocked sets are full"} {
		if c := strings.Count(r.log.String(), want); c != 1 {
			t.Errorf("%q %d times, want once:\n%s", want, c, r.log)
		}
	}
}

// The element, the record and the detector all get the repeat-offender
// timeout that the decision chose, for evidence that cannot be forged (a
// completed handshake, verified mode); forged probes never lengthen a
// block, however often they come.
func TestRepeatOffenderTimeoutIsOneDecision(t *testing.T) {
	r := newRig(t, "block: {timeout: 1h, repeat_factor: 4}\ndetect: {scan_trigger: 2}\n", true)
	src, forged := netip.MustParseAddr("10.201.0.2"), netip.MustParseAddr("10.201.0.3")
	for _, a := range []netip.Addr{src, forged} {
		if err := r.store.Add(state.Block{Addr: a, Timeout: time.Hour, Expires: time.Now().Add(time.Millisecond), Times: 1}); err != nil {
			t.Fatal(err)
		}
	}
	r.store.Expire(time.Now().Add(time.Second))
	r.Handle(syn(3, 1), capture.RuleTCP)
	r.Handle(syn(3, 2), capture.RuleTCP)
	waitFor(t, "the forged block", func() bool { _, ok := r.store.Get(forged); return ok })
	if b, _ := r.store.Get(forged); b.Timeout != time.Hour || b.Evidence != "forgeable" {
		t.Errorf("a second block on forged probes: %+v, want 1h, forgeable", b)
	}
	now := time.Now()
	conn := packet.Probe{Src: src, Kind: packet.KindConnect, Proto: packet.TCP, DstPort: 2}
	r.det.Observe(&conn, now)
	_, srcState := r.det.Observe(&conn, now)
	r.Act(r.det, &Trigger{Probe: conn, Src: srcState}, now)
	waitFor(t, "the block", func() bool { _, ok := r.store.Get(src); return ok })
	if got := r.kernel.Added(); len(got) != 2 || got[1].Addr != src || got[1].Timeout != 4*time.Hour {
		t.Errorf("kernel got %v, want %s's element of 4h", got, src)
	}
	b, _ := r.store.Get(src)
	if b.Timeout != 4*time.Hour || b.Times != 2 || b.Origin != state.OriginDetect || b.Evidence != "handshake" {
		t.Errorf("record %+v, want 4h, the second block, origin detect, handshake", b)
	}
	// The detector holds it for 4h too: a probe in 2h is still "blocked".
	verdict, _ := r.det.Observe(&packet.Probe{Src: src, Kind: packet.KindSYN, Proto: packet.TCP, DstPort: 2}, time.Now().Add(2*time.Hour))
	if verdict != detect.AlreadyBlocked {
		t.Errorf("detector verdict 2h later: %d, want already blocked", verdict)
	}
}

// Forged probes are never an offence: spoofing an address once an hour,
// or twice (the second probe corroborates the first), never makes its
// blocks longer (S5: 20 rounds of two forged SYNs). A corroborated block is
// kept (a full set no longer gives it up first), but it counts nothing.
func TestOnlyCorroboratedBlocksEscalate(t *testing.T) {
	r := newRig(t, "block: {timeout: 1h, repeat_factor: 4}\n", true)
	src := netip.MustParseAddr("10.201.0.2")
	blockAndExpire := func(probes int) state.Block {
		t.Helper()
		for i := range probes {
			r.Handle(syn(2, byte(1+i)), capture.RuleTCP)
		}
		var b state.Block
		waitFor(t, "the block", func() bool { var ok bool; b, ok = r.store.Get(src); return ok && (probes < 2 || !b.Weak) })
		r.store.Expire(time.Now().Add(5 * time.Hour))
		// The block counts as on its way until it is announced (its line
		// written after the journal's fsync): wait for that, or the next
		// round's probe is "already blocked".
		waitFor(t, "the block announced", func() bool { return !r.ledger.Holds(src) })
		r.Forget(src)
		return b
	}
	for range 3 {
		if b := blockAndExpire(1); !b.Weak || b.Timeout != time.Hour || r.store.TimesBlocked(src) != 0 {
			t.Fatalf("a block on one probe: %+v, offences %d; want weak, 1h, none", b, r.store.TimesBlocked(src))
		}
	}
	for round := range 20 {
		if b := blockAndExpire(2); b.Weak || b.Timeout != time.Hour || r.store.TimesBlocked(src) != 0 {
			t.Fatalf("round %d of two forged probes: %+v, offences %d; want kept, 1h, none", round, b, r.store.TimesBlocked(src))
		}
	}
	if got := r.kernel.Added(); len(got) != 23 {
		t.Errorf("%d elements added, want 23 (none lengthened)", len(got))
	}
}

// A probe from a source the ledger holds as blocked, well after its
// element was committed, proves the kernel lost the element: it goes back
// at once, with one line, and the probe is dropped. A probe on its way
// before the element landed is "already blocked".
func TestLostElementGoesBackAtOnce(t *testing.T) {
	r := newRig(t, "", true)
	src := netip.MustParseAddr("10.201.0.2")
	r.Handle(syn(2, 1), capture.RuleTCP)
	waitFor(t, "the block", func() bool { _, ok := r.store.Get(src); return ok })
	r.Handle(syn(2, 2), capture.RuleTCP) // in flight
	if got := r.AlreadyBlocked.Load(); got != 1 {
		t.Errorf("already blocked %d, want 1 for a probe right after the block", got)
	}
	if n := len(r.kernel.Added()); n != 1 {
		t.Fatalf("%d elements added, want 1", n)
	}
	time.Sleep(ledger.ReassertAfter + 50*time.Millisecond)
	r.Handle(syn(2, 3), capture.RuleTCP) // past the drop rule: the element is gone
	added := r.kernel.Added()
	if len(added) != 2 || added[1].Addr != src || added[1].Timeout < 59*time.Minute {
		t.Fatalf("kernel got %v, want the element back with about 1h left", added)
	}
	if got := r.AlreadyBlocked.Load(); got != 1 {
		t.Errorf("already blocked %d, want still 1: the lost element is not 'already blocked'", got)
	}
	if want := "attackalert: Host 10.201.0.2 was missing from set blocked"; !strings.Contains(r.log.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, r.log)
	}
	r.Handle(syn(2, 4), capture.RuleTCP) // right after the re-add: in flight again
	if n := len(r.kernel.Added()); n != 2 {
		t.Errorf("%d elements added, want 2: one re-add per loss", n)
	}
}

// An administrator's unblock reaches the kernel, the record and the
// detector: the next probe counts afresh and blocks again.
func TestUnblockReachesEveryFollower(t *testing.T) {
	r := newRig(t, "", true)
	src := netip.MustParseAddr("10.201.0.2")
	r.Handle(syn(2, 1), capture.RuleTCP)
	waitFor(t, "the block", func() bool { _, ok := r.store.Get(src); return ok })
	if _, err := r.ledger.Apply(context.Background(), ledger.Unblock{Addrs: []netip.Addr{src}, Cause: ledger.Unblocked}); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.store.Get(src); ok {
		t.Error("record kept after unblock")
	}
	if d := r.kernel.Deleted(); len(d) != 1 || d[0] != src {
		t.Errorf("kernel deletes %v, want %s", d, src)
	}
	r.Handle(syn(2, 2), capture.RuleTCP)
	waitFor(t, "the second block", func() bool { _, ok := r.store.Get(src); return ok })
	if r.AlreadyBlocked.Load() != 0 {
		t.Error("a probe after unblock was taken as already blocked")
	}
}

// NFQUEUE: the triggering probe is held and gets its verdict (drop) once
// the element is in; the verdict is a value the ledger gives.
func TestQueuedTriggerIsReleasedAfterCommit(t *testing.T) {
	r := newRig(t, "", true)
	if v := r.HandleQueued(syn(2, 1), 77); v != capture.Pending {
		t.Fatalf("verdict %v, want Pending", v)
	}
	waitFor(t, "the verdict", func() bool { _, ok := r.verdicts.Verdict(77); return ok })
	if drop, _ := r.verdicts.Verdict(77); !drop {
		t.Error("held probe accepted after its block")
	}
	if v := r.HandleQueued(syn(2, 2), 78); v != capture.Drop {
		t.Errorf("probe from the blocked source: %v, want Drop", v)
	}
}

// BenchmarkProcessSpoofedFlood: the capture path for a flood where every
// packet comes from a new source and the rate cap refuses blocks.
func BenchmarkProcessSpoofedFlood(b *testing.B) {
	r := newRig(b, "detect: {max_sources: 1000000}\n", false)
	pkt := syn(0, 1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		pkt[13], pkt[14], pkt[15] = byte(i>>16), byte(i>>8), byte(i)
		r.Handle(pkt, capture.RuleTCP)
		r.alerts.Drain() // the alert lines cost too
	}
}

// Lifting more blocks at once than the detector's hand-off holds (unblock
// --all of hundreds) loses none: a probe from a source the detector still
// marks but the ledger no longer holds counts afresh and blocks again.
func TestEveryUnblockReachesTheDetector(t *testing.T) {
	r := newRig(t, "block: {max_per_second: 5000}\n", true)
	const n = 600 // more than the hand-off channel's 256
	pkt := func(i int) []byte {
		p := syn(0, 1)
		p[13], p[14], p[15] = 99, byte(i>>8), byte(i)
		return p
	}
	for i := range n {
		r.Handle(pkt(i), capture.RuleTCP)
	}
	waitFor(t, "the blocks", func() bool { return r.ledger.Len() == n && r.store.Len() == n })
	if got, err := r.ledger.Apply(context.Background(), ledger.UnblockAll{}); err != nil || got != n {
		t.Fatalf("unblock all: %d, %v", got, err)
	}
	for i := range n {
		r.Handle(pkt(i), capture.RuleTCP)
	}
	waitFor(t, "the blocks again", func() bool { return r.store.Len() == n })
	if got := r.AlreadyBlocked.Load(); got != 0 {
		t.Errorf("%d probes after unblock --all were taken as already blocked", got)
	}
}

// resolving runs a resolver whose lookups answer as answer says, stopped
// at the test's end.
func resolving(t *testing.T, answer func(ctx context.Context, addr string) ([]string, error)) *alert.Resolver {
	res := alert.NewResolver()
	res.Lookup = answer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { res.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return res
}

// resolve_host with DNS that drops every query (each lookup hangs for its
// timeout) and a spoofed flood: the ledger never waits for a name, so
// 1000 triggers from distinct sources are all committed and recorded
// within a couple of seconds, and their alert lines are written as well.
// (Before, each record waited up to 2 s for its lookup: 104 blocks in 20 s.)
func TestHangingDNSStallsNeitherLedgerNorLines(t *testing.T) {
	res := resolving(t, func(ctx context.Context, _ string) ([]string, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	r := newRigNamed(t, "resolve_host: true\nblock: {max_per_second: 100000}\ndetect: {max_sources: 100000}\n", true, res)
	stop := make(chan struct{})
	alertsDone := make(chan struct{})
	go func() { r.alerts.Run(stop); close(alertsDone) }()
	const n = 1000
	start := time.Now()
	pkt := syn(0, 1)
	for i := range n {
		pkt[13], pkt[14], pkt[15] = 99, byte(i>>8), byte(i)
		r.Handle(pkt, capture.RuleTCP)
	}
	waitFor(t, "1000 blocks committed and recorded", func() bool { return len(r.kernel.Added()) == n && r.store.Len() == n })
	waitFor(t, "1000 probe lines", func() bool { return strings.Count(r.log.String(), "attackalert: TCP SYN scan from host") == n })
	t.Logf("1000 blocks and their lines in %s with DNS down (%d lookups dropped)", time.Since(start).Round(time.Millisecond), res.Stats.Dropped.Load())
	close(stop)
	select {
	case <-alertsDone:
	case <-time.After(alert.DrainFor + time.Second):
		t.Error("the alert lines did not stop")
	}
}

// A name that comes after the block was recorded goes into the record
// (list shows it); the history line keeps the address it was written with.
func TestNameFilledInLater(t *testing.T) {
	release := make(chan struct{})
	res := resolving(t, func(ctx context.Context, addr string) ([]string, error) {
		select {
		case <-release:
			return []string{"late.example.test."}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	r := newRigNamed(t, "resolve_host: true\n", true, res)
	src := netip.MustParseAddr("10.201.0.2")
	r.Handle(syn(2, 1), capture.RuleTCP)
	waitFor(t, "the block", func() bool { _, ok := r.store.Get(src); return ok })
	if b, _ := r.store.Get(src); b.Host != "" {
		t.Fatalf("Host = %q before the lookup finished", b.Host)
	}
	close(release)
	waitFor(t, "the name in the record", func() bool { b, _ := r.store.Get(src); return b.Host == "late.example.test" })
}

// A first strike is followed: recorded with origin kernel and its scan
// type, no second element; a probe from the struck source that the again
// rule sent corroborates it (kept, but forged probes are no offence: no
// longer element); a strike on a protected source is lifted.
func TestFirstStrikeIsFollowed(t *testing.T) {
	r := newRig(t, "block: {timeout: 1h, repeat_factor: 4}\nnever_block: [10.201.0.9/32]\n", true)
	src := netip.MustParseAddr("10.201.0.2")
	r.store.Add(state.Block{Addr: src, Timeout: time.Hour, Expires: time.Now().Add(-time.Minute), Times: 1})
	r.store.Expire(time.Now())
	r.Handle(syn(2, 1), capture.RuleTCPStrike)
	waitFor(t, "the strike's record", func() bool { return r.store.Has(src) })
	b, _ := r.store.Get(src)
	if b.Origin != state.OriginKernel || b.Kind != "TCP SYN scan" || !b.Weak {
		t.Errorf("record %+v, want a weak block by the kernel, TCP SYN scan", b)
	}
	if len(r.kernel.Added()) != 0 {
		t.Errorf("the strike's element was added again: %v", r.kernel.Added())
	}
	time.Sleep(ledger.ReassertAfter)
	r.Handle(syn(2, 2), capture.RuleTCPAgain)
	waitFor(t, "the corroboration", func() bool { b, _ := r.store.Get(src); return !b.Weak })
	if got := r.kernel.Added(); len(got) != 0 {
		t.Errorf("kernel got %v, want nothing: forged probes never lengthen a block", got)
	}
	if b, _ := r.store.Get(src); b.Timeout != time.Hour || r.store.TimesBlocked(src) != 1 {
		t.Errorf("record %+v, offences %d; want 1h, and only the earlier offence", b, r.store.TimesBlocked(src))
	}
	r.Handle(syn(9, 1), capture.RuleTCPStrike)
	waitFor(t, "the protected strike lifted", func() bool { return r.ledger.Stats.Disowned.Load() == 1 })
	if got := r.kernel.Deleted(); len(got) != 1 || got[0] != netip.MustParseAddr("10.201.0.9") {
		t.Errorf("kernel deleted %v, want 10.201.0.9", got)
	}
}

// A probe the peer rule logged is a peer's: refused on one and two ports
// (one forged packet never blocks a peer), blocked on the third; the same
// probes from the plain rule block at once.
func TestPeerNeedsThreePorts(t *testing.T) {
	r := newRig(t, "", true)
	r.Handle(syn(2, 1), capture.RuleTCPPeer)
	r.Handle(syn(2, 1), capture.RuleTCPPeer) // the same port again
	r.Handle(syn(2, 2), capture.RuleTCPPeer)
	if r.Peers.Load() != 3 || r.ledger.Len() != 0 {
		t.Fatalf("peer refusals %d, blocks %d: want 3 and none", r.Peers.Load(), r.ledger.Len())
	}
	r.alerts.Drain()
	if want := "attackalert: Host 10.201.0.2 not blocked: 10.201.0.2 is a peer"; !strings.Contains(r.log.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, r.log)
	}
	r.Handle(syn(2, 3), capture.RuleTCPPeer)
	waitFor(t, "the peer's block on its third port", func() bool { return len(r.kernel.Added()) == 1 })
	r.Handle(syn(3, 1), capture.RuleTCP)
	waitFor(t, "a block of a source that is no peer", func() bool { return len(r.kernel.Added()) == 2 })
}

// peersOf is a decide.Peers of fixed addresses.
type peersOf []netip.Addr

func (p peersOf) Peer(a netip.Addr) bool { return slices.Contains(p, a) }

// A queued probe carries no rule: the pipeline asks its Peers at the
// trigger.
func TestQueuedPeerIsAsked(t *testing.T) {
	r := newRig(t, "capture: {mode: nfqueue}\n", true)
	r.c.Peers = peersOf{netip.MustParseAddr("10.201.0.2")}
	if v := r.HandleQueued(syn(2, 1), 1); v != capture.Accept || r.Peers.Load() != 1 {
		t.Fatalf("a peer's queued probe: verdict %v, peer refusals %d", v, r.Peers.Load())
	}
	if v := r.HandleQueued(syn(3, 1), 2); v != capture.Pending {
		t.Fatalf("another source's queued probe: verdict %v, want pending", v)
	}
}

// syn6 is an IPv6 TCP SYN from src to fd00:201::1:port.
func syn6(src string, port byte) []byte {
	b := make([]byte, 60)
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], 20)
	b[6], b[7] = 6, 64
	copy(b[8:], netip.MustParseAddr(src).AsSlice())
	copy(b[24:], netip.MustParseAddr("fd00:201::1").AsSlice())
	t := b[40:]
	t[0], t[1], t[3], t[12], t[13] = 0x9c, 0x40, port, 0x50, 0x02
	return b
}

// A scanner that takes a new address of its /64 for each probe: at the
// third address the /64 is blocked (once); a /64 that holds a protected
// address never is.
func TestRotatingIPv6ScannerBlocksItsPrefix(t *testing.T) {
	r := newRig(t, "never_block: [\"fd00:201:0:2::7\"]\n", true)
	for i := range 6 {
		r.Handle(syn6(fmt.Sprintf("fd00:201:0:1::%x", 10+i), byte(1+i)), capture.RuleTCP)
		r.Handle(syn6(fmt.Sprintf("fd00:201:0:2::%x", 10+i), byte(1+i)), capture.RuleTCP)
	}
	waitFor(t, "the /64's element", func() bool {
		for _, b := range r.kernel.Added() {
			if b.Prefix64 {
				return true
			}
		}
		return false
	})
	var prefixes []string
	for _, b := range r.kernel.Added() {
		if b.Prefix64 {
			prefixes = append(prefixes, b.Addr.String())
		}
	}
	if len(prefixes) != 1 || prefixes[0] != "fd00:201:0:1::" || r.Prefixes.Load() != 1 {
		t.Errorf("/64 elements %v (%d), want fd00:201:0:1:: alone", prefixes, r.Prefixes.Load())
	}
	r.alerts.Drain()
	waitFor(t, "the /64's line", func() bool {
		return strings.Contains(r.log.String(), "attackalert: Prefix fd00:201:0:1::/64 has been blocked via nftables set inet portsentry blocked6_64 (timeout 1h0m0s): 3 addresses of fd00:201:0:1::/64 probed")
	})
	if !strings.Contains(r.log.String(), "its /64 is not blocked: fd00:201:0:2::/64 holds protected fd00:201:0:2::7/128") {
		t.Errorf("no line for the protected /64:\n%s", r.log)
	}
}

// The tool that sent the trigger's probe is a fact of the probe: counted,
// and in the block's record.
func TestToolReachesTheRecord(t *testing.T) {
	r := newRig(t, "", true)
	masscan, nmap := syn(2, 7), syn(3, 7)
	// masscan's IP ID: destination ^ port ^ sequence number (1), low 16 bits.
	binary.BigEndian.PutUint16(masscan[4:6], 0x0001^7^1)
	r.Handle(masscan, capture.RuleTCP)
	r.Handle(nmap, capture.RuleTCP)
	for src, want := range map[string]string{"10.201.0.2": "masscan", "10.201.0.3": "nmap-syn"} {
		a := netip.MustParseAddr(src)
		waitFor(t, "the block", func() bool { _, ok := r.store.Get(a); return ok })
		if b, _ := r.store.Get(a); b.Tool != want {
			t.Errorf("%s: tool %q, want %q", src, b.Tool, want)
		}
	}
	if m, n := r.Tools[scanner.Masscan].Load(), r.Tools[scanner.NmapSYN].Load(); m != 1 || n != 1 {
		t.Errorf("probes by tool: masscan %d, nmap-syn %d; want 1, 1", m, n)
	}
}

// With a trigger of more than one probe, the block is named for the tool
// of the first.
func TestToolOfTheFirstProbe(t *testing.T) {
	r := newRig(t, "detect:\n  scan_trigger: 2\n", true)
	first := syn(4, 7)
	binary.BigEndian.PutUint16(first[4:6], 0x0001^7^1) // masscan's IP ID
	r.Handle(first, capture.RuleTCP)
	r.Handle(syn(4, 8), capture.RuleTCP) // nmap-syn's
	src := netip.MustParseAddr("10.201.0.4")
	waitFor(t, "the block", func() bool { _, ok := r.store.Get(src); return ok })
	if b, _ := r.store.Get(src); b.Tool != "masscan" {
		t.Errorf("tool %q, want masscan (the first probe's)", b.Tool)
	}
}
