package ledger_test

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/follow"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger/ledgertest"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

func newLedger(t *testing.T, yaml string) (*ledger.Ledger, *ledgertest.Kernel, *state.Store, *netnstest.Output) {
	t.Helper()
	return newLedgerIn(t, t.TempDir(), yaml)
}

// newLedgerIn is newLedger with its state in dir.
func newLedgerIn(t *testing.T, dir, yaml string) (*ledger.Ledger, *ledgertest.Kernel, *state.Store, *netnstest.Output) {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(state.Paths{Dir: dir}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var buf netnstest.Output
	k := &ledgertest.Kernel{}
	lc := ledger.Config{Store: st, Kernel: k, Log: alert.New(slog.New(slog.NewTextHandler(&buf, nil)), nil), Settings: cfg}
	follow.NewSet(func() *config.Config { return cfg }, lc.Log).Wire(&lc)
	l := ledger.New(lc)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return l, k, st, &buf
}

// An administrator's block is followed like any other: element,
// hosts.deny line, record with its origin, commands; unblock lifts each.
func TestManualBlockIsFollowedLikeAnyBlock(t *testing.T) {
	dir := t.TempDir()
	deny := filepath.Join(dir, "hosts.deny")
	mark := filepath.Join(dir, "ran")
	if err := os.WriteFile(deny, []byte("# existing\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, k, st, log := newLedger(t, "hosts_deny: {path: "+deny+"}\ncommands: [{argv: [/bin/sh, -c, 'echo $TARGET$ >> "+mark+"']}]\n")
	a := netip.MustParseAddr("fd00:201::2")
	d := decide.Decision{Action: decide.Block, Addr: a, Origin: state.OriginManual, Timeout: time.Hour, Times: 1}
	if _, err := l.Apply(context.Background(), ledger.Act{Decision: d}); err != nil {
		t.Fatal(err)
	}
	if got := k.Added(); len(got) != 1 || got[0].Addr != a || got[0].Timeout != time.Hour {
		t.Errorf("kernel got %v", got)
	}
	b, ok := st.Get(a)
	if !ok || b.Origin != state.OriginManual || b.HostsDeny == "" {
		t.Fatalf("record %+v (held %v), want origin manual with its hosts.deny line", b, ok)
	}
	data, _ := os.ReadFile(deny)
	if !strings.Contains(string(data), "[fd00:201::2]") {
		t.Errorf("hosts.deny lacks the block:\n%s", data)
	}
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ran, _ := os.ReadFile(mark); strings.TrimSpace(string(ran)) == a.String() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the command did not run for the manual block")
		}
	}
	if !strings.Contains(log.String(), "has been blocked via nftables set inet portsentry blocked6 by an administrator (timeout 1h0m0s)") {
		t.Errorf("log:\n%s", log)
	}
	if n, err := l.Apply(context.Background(), ledger.Unblock{Addrs: []netip.Addr{a}, Cause: ledger.Unblocked}); err != nil || n != 1 {
		t.Fatal(err)
	}
	if _, ok := st.Get(a); ok {
		t.Error("record kept after unblock")
	}
	if data, _ := os.ReadFile(deny); string(data) != "# existing\n" {
		t.Errorf("hosts.deny after unblock:\n%s", data)
	}
	if got := k.Deleted(); len(got) != 1 || got[0] != a {
		t.Errorf("kernel deletes %v", got)
	}
	if l.Stats.Blocks[state.OriginManual].Load() != 1 || l.Stats.Unblocked.Load() != 1 {
		t.Errorf("stats: %d manual blocks, %d unblocked", l.Stats.Blocks[state.OriginManual].Load(), l.Stats.Unblocked.Load())
	}
}

// A decision whose element cannot be added is not recorded: the ledger
// holds only what the kernel enforces.
func TestFailedElementIsNotRecorded(t *testing.T) {
	l, k, st, log := newLedger(t, "")
	k.Fail = os.ErrPermission
	a := netip.MustParseAddr("10.201.0.9")
	if !l.Post(ledger.Act{Decision: decide.Decision{Action: decide.Block, Addr: a, Origin: state.OriginDetect, Timeout: time.Hour, Times: 1}, Evidence: ledger.Evidence{}, At: time.Now()}) {
		t.Fatal("submit refused")
	}
	for deadline := time.Now().Add(2 * time.Second); l.Stats.BlockFailures.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no failure counted")
		}
	}
	if _, ok := st.Get(a); ok || l.Holds(a) || l.Len() != 0 {
		t.Errorf("a block that never reached the kernel is held (record %v, holds %v, len %d)", ok, l.Holds(a), l.Len())
	}
	if !strings.Contains(log.String(), "adminalert: ERROR: could not block host 10.201.0.9") {
		t.Errorf("log:\n%s", log)
	}
}

// Restore and Reconcile put back what the ledger holds and the kernel
// lacks, with the remaining time.
func TestReconcile(t *testing.T) {
	l, k, st, _ := newLedger(t, "")
	now := time.Now()
	in, out := netip.MustParseAddr("10.201.0.4"), netip.MustParseAddr("10.201.0.5")
	for _, a := range []netip.Addr{in, out} {
		if err := st.Add(state.Block{Addr: a, Timeout: time.Hour, Expires: now.Add(30 * time.Minute), Times: 1}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := l.Reconcile(context.Background(), map[netip.Addr]time.Duration{in: 30 * time.Minute})
	if err != nil || n != 1 {
		t.Fatalf("reconcile: %d, %v; want 1", n, err)
	}
	if got := k.Added(); len(got) != 1 || got[0].Addr != out || got[0].Timeout > 30*time.Minute || got[0].Timeout < 29*time.Minute {
		t.Errorf("kernel got %v, want %s with about 30m", got, out)
	}
}

// waitFor polls cond for up to 2 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
	}
}

// The kernel's first strike put the element in already: the ledger records
// and follows it without adding it again, unless a repeat offender's
// longer time must go in.
func TestFirstStrikeIsFollowedNotAddedAgain(t *testing.T) {
	l, k, st, log := newLedger(t, "")
	a, b := netip.MustParseAddr("10.201.0.7"), netip.MustParseAddr("10.201.0.8")
	ev := ledger.Evidence{Probe: packet.Probe{Src: a, Proto: packet.TCP, Kind: packet.KindSYN, DstPort: 79}}
	l.Post(ledger.Act{Decision: decide.Decision{Action: decide.Block, Addr: a, Origin: state.OriginKernel, Timeout: time.Hour, Times: 1, Weak: true}, Evidence: ev, At: time.Now()})
	l.Post(ledger.Act{Decision: decide.Decision{Action: decide.Block, Addr: b, Origin: state.OriginKernel, Timeout: 4 * time.Hour, Times: 2}, Evidence: ev, At: time.Now()})
	waitFor(t, "the strikes were not recorded", func() bool { return st.Has(a) && st.Has(b) })
	rec, _ := st.Get(a)
	if rec.Origin != state.OriginKernel || rec.Kind != "TCP SYN scan" {
		t.Errorf("record %+v, want origin kernel, TCP SYN scan", rec)
	}
	if got := k.Added(); len(got) != 1 || got[0].Addr != b || got[0].Timeout != 4*time.Hour {
		t.Errorf("kernel got %v, want only %s lengthened to 4h", got, b)
	}
	waitFor(t, "no blocked line by the kernel", func() bool {
		return strings.Contains(log.String(), "Host 10.201.0.7 has been blocked via nftables set inet portsentry blocked by the kernel (timeout 1h0m0s)")
	})
}

// A strike the decision refused is lifted, with its line; one the ledger
// holds is left alone.
func TestDisownLiftsOnlyWhatTheLedgerDoesNotHold(t *testing.T) {
	l, k, st, log := newLedger(t, "")
	held, gw := netip.MustParseAddr("10.201.0.7"), netip.MustParseAddr("10.201.0.254")
	if err := st.Add(state.Block{Addr: held, Timeout: time.Hour, Expires: time.Now().Add(time.Hour), Times: 1}); err != nil {
		t.Fatal(err)
	}
	for a, why := range map[netip.Addr]string{held: "it is protected (test)", gw: "it is protected (default gateway)"} {
		l.Post(ledger.Act{Decision: decide.Decision{Action: decide.Refuse, Reason: decide.Protected, Addr: a, Origin: state.OriginKernel, Lift: why}})
	}
	waitFor(t, "the gateway's strike was not lifted", func() bool { return l.Stats.Disowned.Load() == 1 })
	if got := k.Deleted(); len(got) != 1 || got[0] != gw {
		t.Errorf("kernel deleted %v, want only %s", got, gw)
	}
	if !strings.Contains(log.String(), "Host 10.201.0.254 has been unblocked: the kernel's first strike blocked it, but it is protected (default gateway)") {
		t.Errorf("log:\n%s", log)
	}
}

// Elements the kernel holds and the ledger does not are adopted with their
// remaining time; a refused one is lifted.
func TestAdopt(t *testing.T) {
	l, k, st, _ := newLedger(t, "")
	a, gw := netip.MustParseAddr("10.201.0.7"), netip.MustParseAddr("10.201.0.254")
	adopted := ledger.Evidence{Adopted: true}
	n, err := l.Apply(context.Background(),
		ledger.Act{Decision: decide.Decision{Action: decide.Block, Addr: a, Origin: state.OriginKernel, Timeout: 42 * time.Minute, Times: 1, Weak: true}, Evidence: adopted},
		ledger.Act{Decision: decide.Decision{Action: decide.Refuse, Reason: decide.Protected, Why: "default gateway", Addr: gw, Origin: state.OriginKernel,
			Lift: "it is protected (default gateway)"}, Evidence: adopted},
	)
	if err != nil || n != 1 {
		t.Fatalf("adopt: %d, %v; want 1", n, err)
	}
	rec, ok := st.Get(a)
	if left := time.Until(rec.Expires); !ok || rec.Origin != state.OriginKernel || rec.Kind != "adopted" || left > 42*time.Minute || left < 41*time.Minute {
		t.Errorf("record %+v (left %s), want adopted with about 42m", rec, left)
	}
	if len(k.Added()) != 0 {
		t.Errorf("adoption added elements: %v", k.Added())
	}
	if got := k.Deleted(); len(got) != 1 || got[0] != gw {
		t.Errorf("kernel deleted %v, want %s", got, gw)
	}
}

// An administrator's unblock of an IPv6 /64 deletes its element from
// blocked6_64 (it has no record) and says so, with the addresses given.
func TestUnblockPrefix(t *testing.T) {
	l, k, _, log := newLedger(t, "")
	p := netip.MustParsePrefix("fd00:201::/64")
	a := netip.MustParseAddr("fd00:201::7")
	n, err := l.Apply(context.Background(), ledger.Unblock{Addrs: []netip.Addr{a}, Prefixes: []netip.Prefix{p}, Cause: ledger.Unblocked})
	if err != nil || n != 1 {
		t.Fatalf("unblock: %d, %v (want 1: the prefix; the address was not blocked)", n, err)
	}
	if got := k.DeletedPrefixes(); len(got) != 1 || got[0] != p {
		t.Errorf("kernel prefix deletes %v", got)
	}
	if got := k.Deleted(); len(got) != 1 || got[0] != a {
		t.Errorf("kernel deletes %v", got)
	}
	if !strings.Contains(log.String(), "attackalert: Prefix fd00:201::/64 has been unblocked by an administrator") {
		t.Errorf("log:\n%s", log)
	}
}
