package fleetlink

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/fleet"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// refuser decides Block for every request but those it lists.
type refuser map[netip.Addr]decide.Reason

func (r refuser) DecideAll(rs []decide.Request) []decide.Decision {
	out := make([]decide.Decision, len(rs))
	for i, q := range rs {
		out[i] = decide.Decision{Action: decide.Block, Addr: q.Addr, Origin: q.Origin, Timeout: q.Timeout}
		if why, ok := r[q.Addr]; ok {
			out[i].Action, out[i].Reason = decide.Refuse, why
		}
	}
	return out
}

// applied records what the intake hands the ledger.
type applied struct {
	held map[netip.Addr]state.Block
	ops  []ledger.Op
}

func (a *applied) Get(x netip.Addr) (state.Block, bool) { b, ok := a.held[x]; return b, ok }
func (a *applied) Apply(_ context.Context, ops ...ledger.Op) (int, error) {
	a.ops = append(a.ops, ops...)
	return len(ops), nil
}

func newIntake(t *testing.T, dec Decider) (*intake, *applied, *netnstest.Output) {
	cfg, err := config.Parse("t.yaml", []byte(""))
	if err != nil {
		t.Fatal(err)
	}
	out := &netnstest.Output{}
	l := &Link{cfg: Config{Settings: func() *config.Config { return cfg }, Log: alert.New(slog.New(slog.NewTextHandler(out, nil)), nil)}}
	led := &applied{held: map[netip.Addr]state.Block{}}
	return &intake{l, dec, led}, led, out
}

// A batch holds one request per address, the latest expiry; refusals say
// why at most RefusalLines times, then once how many; "already held as
// long" says nothing.
func TestApplyBatch(t *testing.T) {
	now := time.Now()
	a, held := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("203.0.113.2")
	dec := refuser{held: decide.AlreadyBlocked}
	var batch []fleet.Block
	for i := range 15 {
		x := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		dec[x] = decide.Protected
		batch = append(batch, fleet.Block{Addr: x, Host: "h2", Expires: now.Add(time.Hour)})
	}
	batch = append(batch, fleet.Block{Addr: a, Host: "h2", Expires: now.Add(time.Hour)}, fleet.Block{Addr: a, Host: "h3", Expires: now.Add(2 * time.Hour)},
		fleet.Block{Addr: held, Host: "h2", Expires: now.Add(time.Hour)})
	in, led, out := newIntake(t, dec)
	in.apply(batch)
	if len(led.ops) != 1 {
		t.Fatalf("applied %v, want one block", led.ops)
	}
	act := led.ops[0].(ledger.Act)
	if act.Decision.Addr != a || act.Decision.Timeout < 119*time.Minute || act.Evidence.Kind != " (from h3)" {
		t.Errorf("applied %+v, want %s from h3 with 2h", act, a)
	}
	if n := strings.Count(out.String(), "not applied:"); n != RefusalLines {
		t.Errorf("%d refusal lines, want %d:\n%s", n, RefusalLines, out)
	}
	if !strings.Contains(out.String(), fmt.Sprintf("15 fleet blocks not applied in all (the first %d said why)", RefusalLines)) || strings.Contains(out.String(), held.String()) {
		t.Errorf("log:\n%s", out)
	}
}

// An administrator's fleet-wide lift reaches only a block that began
// before it.
func TestLiftReachesOlderBlocksOnly(t *testing.T) {
	in, led, _ := newIntake(t, refuser{})
	now := time.Now()
	old, fresh := netip.MustParseAddr("203.0.113.3"), netip.MustParseAddr("203.0.113.4")
	led.held[old] = state.Block{Addr: old, Timeout: time.Hour, Expires: now.Add(30 * time.Minute)}
	led.held[fresh] = state.Block{Addr: fresh, Timeout: time.Hour, Expires: now.Add(time.Hour + time.Minute)}
	in.lift(fleet.Lift{Addr: old, By: "admin", At: now, Admin: true})
	in.lift(fleet.Lift{Addr: fresh, By: "admin", At: now, Admin: true})
	if len(led.ops) != 1 || led.ops[0].(ledger.Unblock).Addrs[0] != old || led.ops[0].(ledger.Unblock).Cause != ledger.FleetUnblocked {
		t.Errorf("lifted %+v, want only %s", led.ops, old)
	}
}

// A host's lift (T1: any compromised host can write one under its own
// name) never lifts what this host decided itself; it lifts only the copy
// of that host's record.
func TestHostLiftSparesLocalBlocks(t *testing.T) {
	in, led, _ := newIntake(t, refuser{})
	now := time.Now()
	own, copied := netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("203.0.113.6")
	led.held[own] = state.Block{Addr: own, Timeout: time.Hour, Expires: now.Add(30 * time.Minute), Origin: state.OriginDetect}
	led.held[copied] = state.Block{Addr: copied, Timeout: time.Hour, Expires: now.Add(30 * time.Minute), Origin: state.OriginFleet, From: "h2"}
	in.lift(fleet.Lift{Addr: own, By: "h2", At: now})
	in.lift(fleet.Lift{Addr: copied, By: "h2", At: now})
	if len(led.ops) != 1 || led.ops[0].(ledger.Unblock).Addrs[0] != copied {
		t.Errorf("lifted %+v, want only the fleet's copy %s", led.ops, copied)
	}
}

// What this host can check of a record decides its evidence: the
// administrator's identity, a correlation it counted itself; a host's
// claim is only that host's word.
func TestEvidenceOfRecords(t *testing.T) {
	for _, c := range []struct {
		b    fleet.Block
		want decide.Evidence
	}{
		{fleet.Block{Admin: true, Evidence: fleet.EvidenceAdmin}, decide.Administrator},
		{fleet.Block{Evidence: fleet.EvidenceAdmin}, decide.Unforgeable},
		{fleet.Block{Evidence: fleet.EvidenceHandshake}, decide.Unforgeable},
		{fleet.Block{Origin: fleet.OriginCorrelate, Corroborated: true}, decide.Corroborated},
		{fleet.Block{Origin: fleet.OriginCorrelate}, decide.Forgeable},
		{fleet.Block{Evidence: fleet.EvidenceForgeable}, decide.Forgeable},
		{fleet.Block{}, decide.Forgeable},
	} {
		if got := evidenceOf(c.b); got != c.want {
			t.Errorf("%+v: %s, want %s", c.b, got, c.want)
		}
	}
}
