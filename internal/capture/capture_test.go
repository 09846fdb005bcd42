package capture

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// ENOBUFS is counted and receiving goes on; a run of other errors ends the
// socket (Run then reopens it); a good message in between resets the run.
func TestReceiveErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var st Stats
	e := &receiveErrors{ctx: ctx, cancel: cancel, st: &st}
	for i := 0; i < 3*errFatal; i++ {
		if e.handle(fmt.Errorf("recvmsg: %w", unix.ENOBUFS)) != 0 {
			t.Fatal("ENOBUFS stopped receiving")
		}
	}
	if st.Overruns.Load() != 3*errFatal {
		t.Fatalf("overruns %d", st.Overruns.Load())
	}
	boom := errors.New("boom")
	for i := 1; i < errFatal; i++ {
		if e.handle(boom) != 0 {
			t.Fatalf("stopped after %d errors, want %d", i, errFatal)
		}
	}
	e.run = 0 // a message arrived
	for i := 1; i < errFatal; i++ {
		e.handle(boom)
	}
	if ctx.Err() != nil {
		t.Fatal("the run was not reset by a good message")
	}
	if e.handle(boom) != 1 || !errors.Is(e.fatal, boom) || ctx.Err() == nil {
		t.Fatal("errFatal errors in a row did not end the socket")
	}
	if e.handle(boom) != 1 {
		t.Fatal("after cancel every error must stop")
	}
}

// The prefixes the ruleset writes map to their rules; anything else
// (another rule logging to the group, no prefix) is unknown.
func TestRuleOf(t *testing.T) {
	for prefix, want := range map[string]Rule{
		PrefixTCP: RuleTCP, PrefixUDP: RuleUDP, "": RuleUnknown, "portsentry": RuleUnknown, "portsentry tcp ": RuleUnknown,
	} {
		if got := RuleOf(prefix); got != want {
			t.Errorf("RuleOf(%q) = %v, want %v", prefix, got, want)
		}
	}
	if PrefixTCP == PrefixUDP {
		t.Fatal("the probe rules share a prefix")
	}
}

// A peer's probe is read as a peer's, of its protocol, neither struck nor
// dropped by the kernel; no other rule is a peer's.
func TestRulePeer(t *testing.T) {
	for _, c := range []struct {
		prefix          string
		peer, udp, hits bool
	}{
		{PrefixTCPPeer, true, false, false},
		{PrefixUDPPeer, true, true, false},
		{PrefixTCP, false, false, false},
		{PrefixUDP, false, true, false},
		{PrefixTCPStrike, false, false, true},
		{PrefixUDPAgain, false, true, true},
	} {
		r := RuleOf(c.prefix)
		if r.Peer() != c.peer || r.UDP() != c.udp || (r.Struck() || r.Again()) != c.hits {
			t.Errorf("%q: rule %s: peer %v udp %v struck/again %v", c.prefix, r, r.Peer(), r.UDP(), r.Struck() || r.Again())
		}
		if r.String() != c.prefix[len("portsentry "):] {
			t.Errorf("%q: String %q", c.prefix, r)
		}
	}
}
