package decide

import (
	"testing"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// A record's reach is its decision's (the same rule), and what goes whole
// to a consumer off this host is what the fleet takes in full: never a
// forgeable block, even where the fleet shares it weak, and never the
// fleet's own.
func TestRecordReachAndBeyond(t *testing.T) {
	shared := config.Default()
	shared.Fleet.ShareForgeable = true
	for _, tc := range []struct {
		cfg      *config.Config
		origin   state.Origin
		evidence string
		reach    Reach
	}{
		{config.Default(), state.OriginDetect, "forgeable", Local},
		{config.Default(), state.OriginDetect, "", Local},
		{config.Default(), state.OriginKernel, "forgeable", Local},
		{shared, state.OriginDetect, "forgeable", FleetWeak},
		{config.Default(), state.OriginDetect, "corroborated", Fleet},
		{config.Default(), state.OriginDetect, "handshake", Fleet},
		{config.Default(), state.OriginManual, "administrator", Fleet},
		{config.Default(), state.OriginFleet, "administrator", Local},
	} {
		b := state.Block{Origin: tc.origin, Evidence: tc.evidence}
		r := RecordReach(tc.cfg, b)
		if r != tc.reach {
			t.Errorf("%s on %q (share_forgeable %t): reach %d, want %d", tc.origin, tc.evidence, tc.cfg.Fleet.ShareForgeable, r, tc.reach)
		}
		if want := tc.reach == Fleet; r.Beyond() != want {
			t.Errorf("%s on %q: Beyond %t", tc.origin, tc.evidence, r.Beyond())
		}
		// The decision's reach for the same request is the same.
		if d := reachOf(tc.cfg, tc.origin, evidenceOf(Request{Origin: tc.origin, Evidence: EvidenceOf(tc.evidence)})); d != r {
			t.Errorf("%s on %q: decision's reach %d, record's %d", tc.origin, tc.evidence, d, r)
		}
	}
}

// A decision of its own goes to another system only on evidence one
// host's packets cannot make; every such block may also leave this host.
func TestBinding(t *testing.T) {
	for ev, want := range map[Evidence]bool{Forgeable: false, Corroborated: true, Unforgeable: true, Administrator: true} {
		if ev.Binding() != want {
			t.Errorf("%s: Binding %t", ev, ev.Binding())
		}
		if want && !reachOf(config.Default(), state.OriginDetect, ev).Beyond() {
			t.Errorf("%s: binding, but may not leave this host", ev)
		}
	}
}
