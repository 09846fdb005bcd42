package ledger_test

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger/ledgertest"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// Load restores the journal's blocks while it reads them: the kernel ends
// with every block in force and the time its last line gives it; a block
// a later line lifts is never sent, and one whose last line ran out is
// taken back.
func TestLoadRestoresWhatTheJournalLeavesInForce(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	st, err := state.Open(state.Paths{Dir: dir}, now)
	if err != nil {
		t.Fatal(err)
	}
	block := func(a string, left time.Duration) {
		st.Add(state.Block{Addr: netip.MustParseAddr(a), Expires: now.Add(left), Timeout: time.Hour, Times: 1})
	}
	block("10.0.0.1", time.Hour)
	block("10.0.0.2", time.Hour)
	block("10.0.0.3", time.Hour)
	block("10.0.0.5", time.Hour)
	for i := range 25000 {
		st.Add(state.Block{Addr: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), Expires: now.Add(time.Hour), Timeout: time.Hour, Times: 1})
	}
	st.Remove(netip.MustParseAddr("10.0.0.2"))
	block("10.0.0.3", 20*time.Minute)
	block("10.0.0.5", -time.Minute)
	st.Close()

	st, err = state.Prepare(state.Paths{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg, _ := config.Parse("t.yaml", nil)
	k := &ledgertest.Kernel{}
	l := ledger.New(ledger.Config{Store: st, Kernel: k, Log: alert.New(slog.New(slog.NewTextHandler(&netnstest.Output{}, nil)), nil), Settings: cfg})
	res, err := l.Load(context.Background(), now)
	if err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	if res.Restored != 25002 || st.Len() != 25002 || l.Stats.Restored.Load() != 25002 {
		t.Errorf("restored %d (counted %d), %d in force; want 25002", res.Restored, l.Stats.Restored.Load(), st.Len())
	}
	last := map[netip.Addr]nft.Block{}
	for _, b := range k.Added() {
		last[b.Addr] = b
	}
	for a, want := range map[string]time.Duration{"10.0.0.1": time.Hour, "10.0.0.3": 20 * time.Minute, "10.1.97.167": time.Hour} {
		if got := last[netip.MustParseAddr(a)]; got.Timeout != want {
			t.Errorf("%s: last added with %s, want %s", a, got.Timeout, want)
		}
	}
	if b, ok := last[netip.MustParseAddr("10.0.0.2")]; ok {
		t.Errorf("10.0.0.2, lifted later in the journal, was added: %+v", b)
	}
	if d := k.Deleted(); len(d) != 1 || d[0] != netip.MustParseAddr("10.0.0.5") {
		t.Errorf("deleted %v, want 10.0.0.5 (its last line ran out)", d)
	}
}
