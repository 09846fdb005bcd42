package decide

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
	sc "github.com/portsentry-nft/portsentry-nft/internal/scanner"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

type guard map[netip.Addr]string

func (g guard) Protected(a netip.Addr) (string, bool) { why, ok := g[a]; return why, ok }

type ledger struct {
	held  map[netip.Addr]bool
	times map[netip.Addr]int
	n     int
	weak  int
	fleet int
	from  map[string]int
}

func (l *ledger) Holds(a netip.Addr) bool           { return l.held[a] }
func (l *ledger) Len() int                          { return l.n }
func (l *ledger) TimesBlocked(a netip.Addr) int     { return l.times[a] }
func (l *ledger) Weak() int                         { return l.weak }
func (l *ledger) Fleet(host string) (all, from int) { return l.fleet, l.from[host] }
func (l *ledger) Get(a netip.Addr) (state.Block, bool) {
	if !l.held[a] {
		return state.Block{}, false
	}
	// held's block began 30 minutes ago and has 30 minutes left.
	return state.Block{Addr: a, Timeout: time.Hour, Expires: now.Add(30 * time.Minute)}, true
}

func parse(t *testing.T, y string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

var (
	gw      = netip.MustParseAddr("10.201.0.254")
	scanner = netip.MustParseAddr("10.201.0.2")
	held    = netip.MustParseAddr("10.201.0.3")
	now     = time.Unix(1_800_000_000, 0)
)

// Each reason is decided once, in order, and the outcome is a value.
func TestDecide(t *testing.T) {
	for _, c := range []struct {
		name   string
		yaml   string
		req    Request
		n      int // blocks in the ledger
		action Action
		reason Reason
		tmo    time.Duration
		times  int
	}{
		{"detected scan", "", Request{Addr: scanner, Origin: state.OriginDetect, Proto: packet.TCP, Probes: 2, Ports: 2}, 0, Block, None, time.Hour, 1},
		{"forged pair: one port twice is weak", "", Request{Addr: scanner, Origin: state.OriginDetect, Proto: packet.TCP, Probes: 2, Ports: 1}, 0, Block, None, time.Hour, 1},
		{"one probe: weak, no offence", "block: {repeat_factor: 4}\n", Request{Addr: scanner, Origin: state.OriginDetect, Probes: 1, Ports: 1}, 0, Block, None, time.Hour, 1},
		{"repeat offender", "block: {repeat_factor: 4}\n", Request{Addr: held, Origin: state.OriginDetect, Probes: 3}, 0, Refuse, AlreadyBlocked, 0, 0},
		{"protected first", "tcp: {response: log}\n", Request{Addr: gw, Origin: state.OriginDetect}, 0, Refuse, Protected, 0, 0},
		{"response log", "udp: {response: log}\n", Request{Addr: scanner, Origin: state.OriginDetect, Proto: packet.UDP}, 0, LogOnly, None, 0, 0},
		{"response command", "tcp: {response: command}\ncommands: [{argv: [/bin/true]}]\n", Request{Addr: scanner, Origin: state.OriginDetect, Proto: packet.TCP}, 0, Commands, None, 0, 0},
		{"set full, one probe", "block: {set_size: 5}\n", Request{Addr: scanner, Origin: state.OriginDetect, Probes: 1}, 5, Refuse, SetFull, 0, 0},
		{"set full, several ports, a weak block to give up", "block: {set_size: 5}\n", Request{Addr: scanner, Origin: state.OriginDetect, Probes: 2, Ports: 2}, 5, Block, None, time.Hour, 1},
		{"manual", "", Request{Addr: scanner, Origin: state.OriginManual}, 0, Block, None, time.Hour, 1},
		{"manual with timeout", "", Request{Addr: scanner, Origin: state.OriginManual, Timeout: 90 * time.Second}, 0, Block, None, 90 * time.Second, 1},
		{"manual protected", "", Request{Addr: gw, Origin: state.OriginManual}, 0, Refuse, Protected, 0, 0},
		{"manual re-block of a held address", "", Request{Addr: held, Origin: state.OriginManual}, 0, Block, None, time.Hour, 3},
		{"manual when full", "block: {set_size: 5}\n", Request{Addr: scanner, Origin: state.OriginManual}, 5, Refuse, SetFull, 0, 0},
		{"manual ignores response log", "tcp: {response: log}\nudp: {response: log}\n", Request{Addr: scanner, Origin: state.OriginManual}, 0, Block, None, time.Hour, 1},
		{"first strike", "", Request{Addr: scanner, Origin: state.OriginKernel, Proto: packet.TCP, Probes: 1, Ports: 1}, 0, Block, None, time.Hour, 1},
		{"first strike when full: the kernel's set had room", "block: {set_size: 5}\n", Request{Addr: scanner, Origin: state.OriginKernel, Probes: 1, Ports: 1}, 5, Block, None, time.Hour, 1},
		{"first strike of a protected address", "", Request{Addr: gw, Origin: state.OriginKernel, Probes: 1}, 0, Refuse, Protected, 0, 0},
		{"first strike of a held address", "", Request{Addr: held, Origin: state.OriginKernel, Probes: 1}, 0, Refuse, AlreadyBlocked, 0, 0},
		{"first strike, response log", "udp: {response: log}\n", Request{Addr: scanner, Origin: state.OriginKernel, Proto: packet.UDP}, 0, LogOnly, None, 0, 0},
		{"adopted element keeps its time", "", Request{Addr: scanner, Origin: state.OriginKernel, Timeout: 42 * time.Minute}, 0, Block, None, 42 * time.Minute, 1},
		{"first strike on a port a service listens on", "", Request{Addr: scanner, Origin: state.OriginKernel, Proto: packet.TCP, Listening: "tcp port 22"}, 0, Refuse, NotATripwire, 0, 0},
		{"first strike below the trigger", "detect: {scan_trigger: 1}\n", Request{Addr: scanner, Origin: state.OriginKernel, Proto: packet.TCP, Untriggered: true}, 0, Refuse, NotATripwire, 0, 0},
		{"fleet block", "", Request{Addr: scanner, Origin: state.OriginFleet, Timeout: 2 * time.Hour, Evidence: Unforgeable, FleetHost: "h2"}, 0, Block, None, 2 * time.Hour, 1},
		{"fleet block on forgeable probes", "", Request{Addr: scanner, Origin: state.OriginFleet, Timeout: 2 * time.Hour, FleetHost: "h2"}, 0, Refuse, NotShared, 0, 0},
		{"fleet block on forgeable probes, shared", "fleet: {servers: [nats://n1:4222], share_forgeable: true}\n", Request{Addr: scanner, Origin: state.OriginFleet, Timeout: 2 * time.Hour, FleetHost: "h2"}, 0, Block, None, 2 * time.Hour, 1},
		{"fleet block beyond the host's share", "block: {set_size: 100}\n", Request{Addr: scanner, Origin: state.OriginFleet, Timeout: time.Hour, Evidence: Unforgeable, FleetHost: "full"}, 0, Refuse, FleetShare, 0, 0},
		{"fleet blocks beyond the fleet's part", "block: {set_size: 100}\n", Request{Addr: scanner, Origin: state.OriginFleet, Timeout: time.Hour, Evidence: Corroborated, FleetHost: "h2"}, 80, Refuse, FleetShare, 0, 0},
		{"fleet administrator's block beyond the shares", "block: {set_size: 100}\n", Request{Addr: scanner, Origin: state.OriginFleet, Timeout: time.Hour, Evidence: Administrator, FleetHost: "admin"}, 80, Block, None, time.Hour, 1},
		{"peer on one probe", "", Request{Addr: scanner, Origin: state.OriginDetect, Probes: 1, Ports: 1, Peer: true}, 0, Refuse, Peer, 0, 0},
		{"peer on two ports", "", Request{Addr: scanner, Origin: state.OriginDetect, Probes: 5, Ports: 2, Peer: true}, 0, Refuse, Peer, 0, 0},
		{"peer on three ports", "", Request{Addr: scanner, Origin: state.OriginDetect, Probes: 3, Ports: 3, Peer: true}, 0, Block, None, time.Hour, 1},
		{"peer's handshake", "", Request{Addr: scanner, Origin: state.OriginDetect, Probes: 1, Peer: true, Evidence: Unforgeable}, 0, Block, None, time.Hour, 1},
		{"forged probes never escalate", "block: {repeat_factor: 4}\n", Request{Addr: held.Next(), Origin: state.OriginDetect, Probes: 9, Ports: 9}, 0, Block, None, time.Hour, 4},
		{"a handshake escalates", "block: {repeat_factor: 4}\n", Request{Addr: held.Next(), Origin: state.OriginDetect, Probes: 9, Ports: 9, Evidence: Unforgeable}, 0, Block, None, 64 * time.Hour, 4},
		{"a forged probe's tool never lengthens a block", "block: {timeout_by_tool: {mirai: 24h}}\n", Request{Addr: scanner, Origin: state.OriginDetect, Probes: 4, Ports: 4, Tool: sc.Mirai}, 0, Block, None, time.Hour, 1},
		{"a handshake's tool does", "block: {timeout_by_tool: {mirai: 24h}}\n", Request{Addr: scanner, Origin: state.OriginDetect, Probes: 1, Evidence: Unforgeable, Tool: sc.Mirai}, 0, Block, None, 24 * time.Hour, 1},
		{"another tool's length does not apply", "block: {timeout_by_tool: {mirai: 24h}}\n", Request{Addr: scanner, Origin: state.OriginDetect, Probes: 1, Evidence: Unforgeable, Tool: sc.NmapSYN}, 0, Block, None, time.Hour, 1},
		{"a tool's length never shortens", "block: {repeat_factor: 4, timeout_by_tool: {mirai: 2h}}\n", Request{Addr: held.Next(), Origin: state.OriginDetect, Probes: 9, Ports: 9, Evidence: Unforgeable, Tool: sc.Mirai}, 0, Block, None, 64 * time.Hour, 4},
		{"fleet block run out", "", Request{Addr: scanner, Origin: state.OriginFleet, Timeout: 500 * time.Millisecond}, 0, Refuse, Expired, 0, 0},
		{"fleet block held as long already", "", Request{Addr: held, Origin: state.OriginFleet, Timeout: 20 * time.Minute}, 0, Refuse, AlreadyBlocked, 0, 0},
		{"fleet block longer than held", "", Request{Addr: held, Origin: state.OriginFleet, Timeout: 2 * time.Hour, Evidence: Unforgeable, FleetHost: "h2"}, 0, Block, None, 2 * time.Hour, 3},
		{"fleet block of a protected address", "", Request{Addr: gw, Origin: state.OriginFleet, Timeout: time.Hour}, 0, Refuse, Protected, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := &ledger{held: map[netip.Addr]bool{held: true}, times: map[netip.Addr]int{held: 2, held.Next(): 3}, n: c.n, weak: 1,
				fleet: c.n, from: map[string]int{"full": 25}}
			d := New(parse(t, c.yaml), guard{gw: "default gateway"}, l)
			c.req.Now = now
			got := d.Decide(c.req)
			if got.Action != c.action || got.Reason != c.reason || got.Timeout != c.tmo || got.Times != c.times {
				t.Errorf("got action %d reason %d timeout %s times %d; want %d %d %s %d", got.Action, got.Reason, got.Timeout, got.Times, c.action, c.reason, c.tmo, c.times)
			}
			if weak := c.action == Block && c.req.Origin != state.OriginManual && c.req.Evidence == Forgeable && (c.req.Origin == state.OriginFleet || c.req.Ports < 2); got.Weak != weak {
				t.Errorf("weak %v, want %v", got.Weak, weak)
			}
			if evict := c.action == Block && c.n >= 5 && strings.Contains(c.yaml, "set_size: 5}") && c.req.Origin != state.OriginKernel; got.Evict != evict {
				t.Errorf("evict %v, want %v", got.Evict, evict)
			}
			if got.Addr != c.req.Addr || got.Origin != c.req.Origin {
				t.Errorf("decision for %s/%s, asked for %s/%s", got.Addr, got.Origin, c.req.Addr, c.req.Origin)
			}
		})
	}
}

// A kernel element the decision does not keep is lifted, and the decision
// says why (the end of the "has been unblocked" line); one it holds, or
// one of another origin, is not.
func TestKernelElementsTheDecisionRefusesAreLifted(t *testing.T) {
	for _, c := range []struct {
		name, yaml string
		req        Request
		lift       string
	}{
		{"protected", "", Request{Addr: gw, Origin: state.OriginKernel, Proto: packet.TCP}, "it is protected (default gateway)"},
		{"response log", "udp: {response: log}\n", Request{Addr: scanner, Origin: state.OriginKernel, Proto: packet.UDP}, "the response for UDP is log"},
		{"adopted, response command", "tcp: {response: command}\ncommands: [{argv: [/bin/true]}]\n", Request{Addr: scanner, Origin: state.OriginKernel}, "the response for TCP is command"},
		{"in use", "", Request{Addr: scanner, Origin: state.OriginKernel, Listening: "tcp port 22"}, "a service listens on tcp port 22"},
		{"below the trigger", "detect: {scan_trigger: 2}\n", Request{Addr: scanner, Origin: state.OriginKernel, Untriggered: true}, "detect.scan_trigger is 2"},
		{"held", "", Request{Addr: held, Origin: state.OriginKernel}, ""},
		{"kept", "", Request{Addr: scanner, Origin: state.OriginKernel}, ""},
		{"not the kernel's", "", Request{Addr: gw, Origin: state.OriginDetect, Listening: "tcp port 22"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := &ledger{held: map[netip.Addr]bool{held: true}, times: map[netip.Addr]int{}}
			c.req.Now = now
			if got := New(parse(t, c.yaml), guard{gw: "default gateway"}, l).Decide(c.req); got.Lift != c.lift {
				t.Errorf("lift %q, want %q (%+v)", got.Lift, c.lift, got)
			}
		})
	}
}

// An administrator's fleet-wide lift reaches a block that began before it,
// never a later one.
func TestLiftReaches(t *testing.T) {
	b := state.Block{Timeout: time.Hour, Expires: now.Add(30 * time.Minute), Origin: state.OriginFleet} // began at now-30m
	for at, want := range map[time.Time]bool{now: true, now.Add(-29 * time.Minute): true, now.Add(-30 * time.Minute): false, now.Add(-time.Hour): false} {
		if got := LiftReaches(b, at, false); got != want {
			t.Errorf("lift at %s: %v, want %v", at.Sub(now), got, want)
		}
	}
	// A host's lift never reaches what this host decided itself; the fleet
	// administrator's does.
	b.Origin = state.OriginDetect
	if LiftReaches(b, now, false) || !LiftReaches(b, now, true) {
		t.Errorf("a detected block: a host's lift reaches it %v, the administrator's %v; want false, true", LiftReaches(b, now, false), LiftReaches(b, now, true))
	}
}

// The rate cap spends its budget only on blocks, and never on an
// administrator's.
func TestRateCapSpendsOnlyOnBlocks(t *testing.T) {
	l := &ledger{held: map[netip.Addr]bool{}, times: map[netip.Addr]int{}}
	d := New(parse(t, "block: {max_per_second: 2}\n"), guard{gw: "default gateway"}, l)
	for i := 0; i < 5; i++ {
		if got := d.Decide(Request{Addr: gw, Origin: state.OriginDetect, Now: now}); got.Reason != Protected {
			t.Fatalf("protected: %+v", got)
		}
	}
	for i := 0; i < 3; i++ {
		if got := d.Decide(Request{Addr: scanner, Origin: state.OriginManual, Now: now}); got.Action != Block {
			t.Fatalf("manual %d: %+v", i, got)
		}
	}
	var blocked, limited int
	for i := 0; i < 4; i++ {
		a := netip.AddrFrom4([4]byte{10, 201, 1, byte(i)})
		switch d.Decide(Request{Addr: a, Origin: state.OriginDetect, Now: now, Probes: 4, Ports: 4}).Reason {
		case None:
			blocked++
		case RateLimited:
			limited++
		}
	}
	if blocked != 2 || limited != 2 {
		t.Errorf("%d blocked, %d rate-limited; want 2 and 2 (the refusals and manual blocks cost nothing)", blocked, limited)
	}
}

// Under pressure the budget goes to the strongest evidence first: sources
// of one port (a spoofed flood, or forged pairs and triples: one port
// repeated) get half of it, sources of two or three ports three quarters,
// sources of StrongPorts ports all of it.
func TestRateGoesToTheStrongestEvidence(t *testing.T) {
	l := &ledger{held: map[netip.Addr]bool{}, times: map[netip.Addr]int{}}
	d := New(parse(t, "block: {max_per_second: 8}\n"), guard{}, l)
	count := func(third byte, probes, ports int) int {
		n := 0
		for i := range 10 {
			a := netip.AddrFrom4([4]byte{10, 201, third, byte(i)})
			if d.Decide(Request{Addr: a, Origin: state.OriginDetect, Now: now, Probes: probes, Ports: ports}).Action == Block {
				n++
			}
		}
		return n
	}
	once, pairs, two, strong := count(2, 1, 1), count(3, 2, 1), count(4, 3, 2), count(5, 9, 4)
	if once != 4 || pairs != 0 || two != 2 || strong != 2 {
		t.Errorf("of a budget of 8: seen once %d, forged pairs %d, two ports %d, four ports %d; want 4, 0, 2, 2", once, pairs, two, strong)
	}
}

func TestRepeatTimeout(t *testing.T) {
	cfg := parse(t, "block: {timeout: 1h, repeat_factor: 4, max_timeout: 30d}\n")
	for times, want := range map[int]time.Duration{
		1: time.Hour, 2: 4 * time.Hour, 3: 16 * time.Hour, 4: 64 * time.Hour, 5: 256 * time.Hour, 6: 720 * time.Hour, 50: 720 * time.Hour,
	} {
		if got := RepeatTimeout(cfg, times); got != want {
			t.Errorf("block %d: %s, want %s", times, got, want)
		}
	}
	if got := RepeatTimeout(parse(t, "block: {timeout: 2h, repeat_factor: 1}\n"), 9); got != 2*time.Hour {
		t.Errorf("repeat_factor 1: %s, want 2h every time", got)
	}
}

// The refusal says why, as the control socket and the log show it.
func TestRefusalText(t *testing.T) {
	d := Decision{Addr: gw, Reason: Protected, Why: "default gateway"}
	if got, want := d.String(), "10.201.0.254 is protected (default gateway) and is never blocked"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
}

// The kernel's strikes are never refused for the rate (they happened,
// within the kernel's own caps), and are spent from the same budget, down
// to the quarter kept for sources of several ports: kernel and daemon
// together stay within block.max_per_second (R1), and a scanner is still
// blocked after a flood of strikes.
func TestFirstStrikesLeaveTheStrongQuarter(t *testing.T) {
	l := &ledger{held: map[netip.Addr]bool{}}
	d := New(parse(t, "block: {max_per_second: 8}\n"), guard{}, l)
	for i := range 10 {
		a := netip.AddrFrom4([4]byte{10, 201, 1, byte(i)})
		if got := d.Decide(Request{Addr: a, Origin: state.OriginKernel, Probes: 1, Ports: 1, Now: now}); got.Action != Block {
			t.Fatalf("strike %d: %+v, want Block", i, got)
		}
	}
	for _, ports := range []int{1, 2} {
		if got := d.Decide(Request{Addr: scanner, Origin: state.OriginDetect, Probes: 3, Ports: ports, Now: now}); got.Reason != RateLimited {
			t.Errorf("a source of %d ports after the strikes: %+v, want RateLimited", ports, got)
		}
	}
	for i := range 2 {
		a := netip.AddrFrom4([4]byte{10, 201, 2, byte(i)})
		if got := d.Decide(Request{Addr: a, Origin: state.OriginDetect, Probes: 5, Ports: StrongPorts, Now: now}); got.Action != Block {
			t.Errorf("source of %d ports %d after the strikes: %+v, want Block", StrongPorts, i, got)
		}
	}
	if got := d.Decide(Request{Addr: scanner.Next(), Origin: state.OriginDetect, Probes: 5, Ports: StrongPorts, Now: now}); got.Reason != RateLimited {
		t.Errorf("a third strong source: %+v, want RateLimited (the quarter is 2)", got)
	}
}

// Against says why a block of the kernel's making does not stay, for each
// way a decision can go against it.
func TestAgainst(t *testing.T) {
	cfg := parse(t, "tcp: {response: log}\nudp: {response: command}\ncommands: [{argv: [/bin/true]}]\n")
	for _, c := range []struct {
		d     Decision
		proto packet.Proto
		want  string
	}{
		{Decision{Action: Refuse, Reason: Protected, Why: "default gateway"}, packet.TCP, "it is protected (default gateway)"},
		{Decision{Action: LogOnly}, packet.TCP, "the response for TCP is log"},
		{Decision{Action: Commands}, packet.UDP, "the response for UDP is command"},
		{Decision{Action: LogOnly}, 0, "the response for TCP is log"}, // no probe: TCP's response
	} {
		if got := Against(cfg, c.d, c.proto); got != c.want {
			t.Errorf("Against(%+v, %s) = %q, want %q", c.d, c.proto, got, c.want)
		}
	}
}
