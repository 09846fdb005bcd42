package fleet

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startAdmin connects as the fleet's administrator to ns (in-process);
// opts add to the connection's options (deploy/nats's credentials).
func startAdmin(t *testing.T, ns nats.InProcessConnProvider, opts ...nats.Option) *Admin {
	t.Helper()
	cfg := testCfg(AdminName)
	a, err := DialAdmin(cfg, append([]nats.Option{nats.InProcessServer(ns)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// liftsOf returns the lifts of a the host's Sink received.
func (h *host) liftsOf(a netip.Addr) []Lift {
	_, ls := h.sink.snapshot()
	return slices.DeleteFunc(ls, func(l Lift) bool { return l.Addr != a })
}

// waitLift waits until the host's Sink received a lift of a, and returns it.
func (h *host) waitLift(t *testing.T, a netip.Addr) Lift {
	t.Helper()
	h.sink.waitFor(t, "the lift of "+a.String(), func([]Block, []Lift) bool { return len(h.liftsOf(a)) > 0 })
	return h.liftsOf(a)[0]
}

// hostsOf lists the hosts whose block of a the client holds.
func hostsOf(c *Client, a netip.Addr) []string {
	var out []string
	for _, b := range c.Blocks() {
		if b.Addr == a {
			out = append(out, b.Host)
		}
	}
	return out
}

// TestHostLiftReachesItsOwnOnly (T1): h2, compromised, writes with its own
// credentials lifts of three addresses under its own key: one that only
// h1 blocked, one that h2 and h3 both blocked, and one that only h2
// blocked. Only the last is lifted anywhere; h1's block stays on h1 and
// h3 (and h1 keeps its record), h3's block stays on h1. Before, any
// host's lift lifted every host's block.
func TestHostLiftReachesItsOwnOnly(t *testing.T) {
	ns := startDeployServer(t)
	h1, h3 := startHost(t, ns, "h1", deployHost("h1")), startHost(t, ns, "h3", deployHost("h3"))
	h1.waitReady(t)
	h3.waitReady(t)
	h2 := hostJS(t, ns, "h2")
	h1s, shared, h2s := addr("203.0.113.70"), addr("203.0.113.72"), addr("203.0.113.71")
	exp := time.Now().Add(time.Hour)
	h1.c.Publish(Block{Addr: h1s, Expires: exp, Origin: OriginDetect})
	h3.c.Publish(Block{Addr: shared, Expires: exp, Origin: OriginDetect})
	for _, a := range []netip.Addr{shared, h2s} {
		writeAs(t, h2, Subject(BucketBlocks, HostAddrKey("h2", a)), blockRecord{Addr: a.String(), Expires: exp, Origin: OriginDetect},
			jetstream.WithMsgTTL(time.Hour))
	}
	h3.sink.waitBlocks(t, h1s, 1)
	h3.sink.waitBlocks(t, h2s, 1)
	h1.sink.waitBlocks(t, h2s, 1)
	h1.sink.waitFor(t, "h2's and h3's blocks", func([]Block, []Lift) bool { return len(hostsOf(h1.c, shared)) == 2 })
	waitOwn(t, h1, h1s)

	// h2's own block last: once its lift is through, so are the others.
	for _, a := range []netip.Addr{h1s, shared, h2s} {
		writeAs(t, h2, Subject(BucketLifts, HostAddrKey("h2", a)), liftRecord{Addr: a.String(), By: "h2", At: time.Now().UTC()},
			jetstream.WithMsgTTL(time.Hour))
	}
	for _, h := range []*host{h1, h3} {
		if l := h.waitLift(t, h2s); l.By != "h2" || l.Admin {
			t.Errorf("%s: lift %+v, want h2's own", h.c.Name(), l)
		}
		for _, a := range []netip.Addr{h1s, shared} {
			if ls := h.liftsOf(a); len(ls) != 0 {
				t.Errorf("%s was told to lift %s on h2's lift: %v", h.c.Name(), a, ls)
			}
		}
	}
	if hs := hostsOf(h3.c, h1s); !slices.Equal(hs, []string{"h1"}) {
		t.Errorf("h3 holds %s from %v, want h1's block", h1s, hs)
	}
	if hs := hostsOf(h1.c, shared); !slices.Equal(hs, []string{"h3"}) {
		t.Errorf("h1 holds %s from %v, want h3's block alone", shared, hs)
	}
	kv, err := adminKV(t, ns, BucketBlocks)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if e, err := kv.Get(context.Background(), HostAddrKey("h1", h1s)); err != nil || e.Operation() != jetstream.KeyValuePut {
		t.Errorf("h1's record of %s after h2's lift: %v", h1s, err)
	}
}

// waitOwn waits until h's view knows its own record of a (it purges it
// after a lift that reaches it).
func waitOwn(t *testing.T, h *host, a netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.c.mu.Lock()
		_, ok := h.c.view.own[a]
		h.c.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never read its own record of %s", h.c.Name(), a)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAdminLiftReachesEveryHost: the administrator's unblock lifts h1's
// block on every host, h1 included (which purges its own record); a block
// after the lift is honoured, and a host that starts later gets only that.
func TestAdminLiftReachesEveryHost(t *testing.T) {
	ns := startServer(t, nil)
	h1, h2, h3 := startHost(t, ns, "h1"), startHost(t, ns, "h2"), startHost(t, ns, "h3")
	for _, h := range []*host{h1, h2, h3} {
		h.waitReady(t)
	}
	a := addr("203.0.113.80")
	h1.c.Publish(Block{Addr: a, Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	h2.sink.waitBlocks(t, a, 1)
	h3.sink.waitBlocks(t, a, 1)
	waitOwn(t, h1, a)
	if err := startAdmin(t, ns).Unblock(t.Context(), []netip.Addr{a}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*host{h1, h2, h3} {
		if l := h.waitLift(t, a); l.By != AdminName || !l.Admin || l.At.IsZero() {
			t.Errorf("%s lift %+v", h.c.Name(), l)
		}
		if len(h.c.Blocks()) != 0 {
			t.Errorf("%s still lists %v", h.c.Name(), h.c.Blocks())
		}
	}
	kv, err := adminJS(t, ns).KeyValue(context.Background(), BucketBlocks)
	if err != nil {
		t.Fatal(err)
	}
	waitPurged(t, kv, HostAddrKey("h1", a), "h1 did not purge its record after the lift")
	// A new detection after the lift blocks again everywhere.
	h1.c.Publish(Block{Addr: a, Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	h2.sink.waitBlocks(t, a, 2)
	h3.sink.waitBlocks(t, a, 2)
	h4 := startHost(t, ns, "h4")
	h4.waitReady(t)
	if bs := h4.sink.blocksOf(a); len(bs) != 1 {
		t.Errorf("h4 got %v", bs)
	}
}

// TestAdminBlock: the administrator's block reaches every host as the
// administrator's (Admin, Host admin, evidence admin); a host's record
// that claims the administrator's evidence is still that host's word.
func TestAdminBlock(t *testing.T) {
	ns := startDeployServer(t)
	h1 := startHost(t, ns, "h1", deployHost("h1"))
	h1.waitReady(t)
	adm := startAdmin(t, ns, deployAuth(t, "admin"))
	a, claimed := addr("198.51.100.90"), addr("198.51.100.91")
	if err := adm.Block(t.Context(), []netip.Addr{a}, 2*time.Hour, "seen in the abuse feed"); err != nil {
		t.Fatal(err)
	}
	if _, err := New(testCfg(AdminName), Options{Sink: newSink()}); err == nil {
		t.Error("a host's client took the administrator's name")
	}
	b := h1.sink.waitBlocks(t, a, 1)[0]
	if l := h1.c.Blocks(); len(l) != 1 || !l[0].Admin {
		t.Errorf("h1 lists %+v, want the administrator's block", l)
	}
	if !b.Admin || b.Host != AdminName || b.Evidence != EvidenceAdmin || b.Origin != OriginManual ||
		b.Reason != "seen in the abuse feed" || !nearly(b.Expires, time.Now().Add(2*time.Hour), 10*time.Second) {
		t.Errorf("h1 got %+v, want the administrator's block for 2h", b)
	}
	writeAs(t, hostJS(t, ns, "h2"), Subject(BucketBlocks, HostAddrKey("h2", claimed)),
		blockRecord{Addr: claimed.String(), Expires: time.Now().Add(time.Hour), Origin: OriginManual, Evidence: EvidenceAdmin})
	if b := h1.sink.waitBlocks(t, claimed, 1)[0]; b.Admin || b.Host != "h2" {
		t.Errorf("h1 took h2's claim for the administrator's: %+v", b)
	}
	if err := adm.Block(t.Context(), []netip.Addr{addr("127.0.0.1")}, time.Hour, ""); err == nil {
		t.Error("the administrator blocked a loopback address")
	}
}

// TestHostLiftOnReplay: a host that starts after h2 lifted its blocks
// hears of the lift only where no other record holds the address (its
// journal may have restored h2's block): the lifts it reads while
// replaying wait for the blocks' replay.
func TestHostLiftOnReplay(t *testing.T) {
	ns := startServer(t, nil)
	h1, h2 := startHost(t, ns, "h1"), startHost(t, ns, "h2")
	h1.waitReady(t)
	h2.waitReady(t)
	both, only := addr("192.0.2.150"), addr("192.0.2.151")
	exp := time.Now().Add(time.Hour)
	h1.c.Publish(Block{Addr: both, Expires: exp, Origin: OriginDetect})
	h2.c.Publish(Block{Addr: both, Expires: exp, Origin: OriginDetect})
	h2.c.Publish(Block{Addr: only, Expires: exp, Origin: OriginDetect})
	h1.sink.waitBlocks(t, only, 1)
	h2.c.Unblock(both)
	h2.c.Unblock(only)
	h1.waitLift(t, only)
	h3 := startHost(t, ns, "h3")
	h3.waitReady(t)
	if l := h3.waitLift(t, only); l.By != "h2" || l.Admin {
		t.Errorf("h3: lift %+v", l)
	}
	if ls := h3.liftsOf(both); len(ls) != 0 {
		t.Errorf("h3 lifted %s, which h1 still blocks: %v", both, ls)
	}
	if hs := hostsOf(h3.c, both); !slices.Equal(hs, []string{"h1"}) {
		t.Errorf("h3 holds %s from %v, want h1's", both, hs)
	}
}
