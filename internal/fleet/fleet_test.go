package fleet

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// TestPublishReachesOthers: a block published by h1 reaches h2 and h3 with the
// time it has left, and is not delivered back to h1.
func TestPublishReachesOthers(t *testing.T) {
	ns := startServer(t, nil)
	h1, h2, h3 := startHost(t, ns, "h1"), startHost(t, ns, "h2"), startHost(t, ns, "h3")
	for _, h := range []*host{h1, h2, h3} {
		h.waitReady(t)
	}
	a := addr("203.0.113.7")
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	h1.c.Publish(Block{Addr: a, Expires: exp, Origin: OriginDetect, ScanType: "TCP SYN scan", Ports: []uint16{1, 11}, Reason: "scan"})
	for _, h := range []*host{h2, h3} {
		b := h.sink.waitBlocks(t, a, 1)[0]
		if b.Host != "h1" || !b.Expires.Equal(exp) || b.Origin != OriginDetect || b.ScanType != "TCP SYN scan" ||
			!slices.Equal(b.Ports, []uint16{1, 11}) || b.Reason != "scan" || b.Evidence != EvidenceForgeable || b.Admin || b.Corroborated {
			t.Errorf("%s got %+v, want h1's block until %v", h.c.Name(), b, exp)
		}
		if l := h.c.Blocks(); len(l) != 1 || l[0].Addr != a || l[0].Host != "h1" {
			t.Errorf("%s Blocks() = %v", h.c.Name(), l)
		}
		st := h.c.Stats()
		if st.Mirrored != 1 || st.Blocks != 1 || !st.Connected || st.MirrorLag <= 0 || st.MirrorLag > 5*time.Second {
			t.Errorf("%s stats %+v", h.c.Name(), st)
		}
	}
	// IPv6 too, and the publisher's counters.
	a6 := addr("2001:db8::7")
	h1.c.Publish(Block{Addr: a6, Expires: exp, Origin: OriginManual, Evidence: EvidenceHandshake})
	if b := h2.sink.waitBlocks(t, a6, 1)[0]; b.Evidence != EvidenceHandshake || b.Admin {
		t.Errorf("h2 got %+v, want h1's handshake evidence", b)
	}
	h1.waitStats(t, "2 published", func(s Stats) bool { return s.Published >= 3 && s.OutboxDepth == 0 }) // + its host record
	time.Sleep(300 * time.Millisecond)
	if bs, _ := h1.sink.snapshot(); len(bs) != 0 {
		t.Errorf("h1's own blocks came back to it: %v", bs)
	}
	if l := h1.c.Blocks(); len(l) != 0 {
		t.Errorf("h1 lists its own blocks as the fleet's: %v", l)
	}
}

// TestReady: the whole fleet state is in the Sink when Ready closes.
func TestReady(t *testing.T) {
	ns := startServer(t, nil)
	h1 := startHost(t, ns, "h1")
	h1.waitReady(t)
	exp := time.Now().Add(time.Hour)
	var want []string
	for i := range 50 {
		a := addr("198.51.100.1").Next()
		for range i {
			a = a.Next()
		}
		want = append(want, a.String())
		h1.c.Publish(Block{Addr: a, Expires: exp, Origin: OriginDetect})
	}
	h1.waitStats(t, "published", func(s Stats) bool { return s.OutboxDepth == 0 && s.Published >= 51 })
	h2 := startHost(t, ns, "h2")
	h2.waitReady(t)
	bs, _ := h2.sink.snapshot()
	var got []string
	for _, b := range bs {
		got = append(got, b.Addr.String())
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("at Ready h2 had %d blocks, want %d: %v", len(got), len(want), got)
	}
}

// TestExpiry: a block's record expires on the servers; the view forgets
// it without telling the Sink (the kernel's element times out itself).
func TestExpiry(t *testing.T) {
	ns := startServer(t, nil)
	h1, h2 := startHost(t, ns, "h1"), startHost(t, ns, "h2")
	h1.waitReady(t)
	h2.waitReady(t)
	a := addr("192.0.2.99")
	h1.c.Publish(Block{Addr: a, Expires: time.Now().Add(2 * time.Second), Origin: OriginDetect})
	h2.sink.waitBlocks(t, a, 1)
	h2.waitStats(t, "expiry", func(s Stats) bool { return s.Blocks == 0 })
	if len(h2.c.Blocks()) != 0 {
		t.Errorf("Blocks() = %v after expiry", h2.c.Blocks())
	}
	// The record is gone from the bucket too.
	js := adminJS(t, ns)
	kv, err := js.KeyValue(context.Background(), BucketBlocks)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := kv.Get(context.Background(), HostAddrKey("h1", a))
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the record did not expire")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, ls := h2.sink.snapshot(); len(ls) != 0 {
		t.Errorf("expiry unblocked: %v", ls)
	}
}

// TestRebanExtends: publishing again with a later expiry, by the same or
// another host, extends the block; a shorter one changes nothing.
func TestRebanExtends(t *testing.T) {
	ns := startServer(t, nil)
	h1, h2, h3 := startHost(t, ns, "h1"), startHost(t, ns, "h2"), startHost(t, ns, "h3")
	for _, h := range []*host{h1, h2, h3} {
		h.waitReady(t)
	}
	a := addr("203.0.113.50")
	now := time.Now()
	h1.c.Publish(Block{Addr: a, Expires: now.Add(time.Hour), Origin: OriginDetect})
	h2.sink.waitBlocks(t, a, 1)
	h1.c.Publish(Block{Addr: a, Expires: now.Add(4 * time.Hour), Origin: OriginDetect})
	bs := h2.sink.waitBlocks(t, a, 2)
	if !nearly(bs[1].Expires, now.Add(4*time.Hour), time.Millisecond) {
		t.Errorf("re-ban by h1: %v", bs[1])
	}
	h3.c.Publish(Block{Addr: a, Expires: now.Add(16 * time.Hour), Origin: OriginDetect})
	bs = h2.sink.waitBlocks(t, a, 3)
	if bs[2].Host != "h3" || !nearly(bs[2].Expires, now.Add(16*time.Hour), time.Millisecond) {
		t.Errorf("re-ban by h3: %v", bs[2])
	}
	// Shorter: recorded (listed) but not passed on again.
	h1.c.Publish(Block{Addr: a, Expires: now.Add(2 * time.Hour), Origin: OriginDetect})
	h1.waitStats(t, "published", func(s Stats) bool { return s.OutboxDepth == 0 && s.Published >= 4 })
	time.Sleep(300 * time.Millisecond)
	if bs := h2.sink.blocksOf(a); len(bs) != 3 {
		t.Errorf("a shorter block was passed on: %v", bs)
	}
	if l := h2.c.Blocks(); len(l) != 2 {
		t.Errorf("Blocks() = %v, want h1's and h3's", l)
	}
}

// TestMaxTimeout: the publisher caps a block at its fleet.max_timeout, in
// the record and in its TTL; a receiver whose fleet.max_timeout is shorter
// refuses a record that claims to last longer than that from its creation
// (it does not shorten it), and takes one that does not.
func TestMaxTimeout(t *testing.T) {
	ns := startServer(t, nil)
	h1 := startHost(t, ns, "h1")
	h2 := startHost(t, ns, "h2", func(f *config.Fleet, _ *Options) { f.MaxTimeout = config.Duration(time.Hour) })
	h1.waitReady(t)
	h2.waitReady(t)
	long, short := addr("198.51.100.200"), addr("198.51.100.201")
	h1.c.Publish(Block{Addr: long, Expires: time.Now().Add(30 * 24 * time.Hour), Origin: OriginManual})
	h1.c.Publish(Block{Addr: short, Expires: time.Now().Add(30 * time.Minute), Origin: OriginManual})
	h2.sink.waitBlocks(t, short, 1)
	h1.waitStats(t, "published", func(s Stats) bool { return s.OutboxDepth == 0 })

	s, err := adminJS(t, ns).Stream(t.Context(), "KV_"+BucketBlocks)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(t.Context(), Subject(BucketBlocks, HostAddrKey("h1", long)))
	if err != nil {
		t.Fatal(err)
	}
	var r blockRecord
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatal(err)
	}
	week := 7 * 24 * time.Hour
	if !nearly(r.Expires, m.Time.Add(week), 5*time.Second) {
		t.Errorf("h1 published a block until %v, %s after its creation; want fleet.max_timeout, 7d", r.Expires, r.Expires.Sub(m.Time))
	}
	if ttl, err := time.ParseDuration(m.Header.Get(jetstream.MsgTTLHeader)); err != nil || ttl > week+time.Second {
		t.Errorf("h1 published with Nats-TTL %q (%v), want at most 7d", m.Header.Get(jetstream.MsgTTLHeader), err)
	}
	time.Sleep(300 * time.Millisecond)
	if bs := h2.sink.blocksOf(long); len(bs) != 0 {
		t.Errorf("h2 (fleet.max_timeout 1h) enforced a 7d block: %v", bs)
	}
	if st := h2.c.Stats(); st.Refused != 1 {
		t.Errorf("h2 refused %d records, want 1", st.Refused)
	}
}

// adminJS is a JetStream context of an unrestricted connection to ns.
func adminJS(t testing.TB, ns interface{ ClientURL() string }, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	if s, ok := ns.(nats.InProcessConnProvider); ok {
		opts = append(opts, nats.InProcessServer(s))
	}
	nc, err := nats.Connect(ns.ClientURL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
