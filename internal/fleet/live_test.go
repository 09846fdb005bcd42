package fleet

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// consumersOf counts the consumers of bucket's stream.
func consumersOf(t *testing.T, js jetstream.JetStream, bucket string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range s.ListConsumers(ctx).Info() {
		n++
	}
	return n
}

// waitLive waits until no host has a consumer of the lifts and blocks
// buckets left: they follow the live records. (The hosts bucket's watch is
// of each host's own key only: it keeps its consumer.)
func waitLive(t *testing.T, ns *server.Server) {
	t.Helper()
	js := adminJS(t, ns)
	for _, b := range []string{BucketLifts, BucketBlocks} {
		deadline := time.Now().Add(10 * time.Second)
		for consumersOf(t, js, b) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d consumers of %s left: the hosts did not go live", consumersOf(t, js, b), b)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestLiveRecords: once a host has replayed the buckets it follows them
// through the servers' republished records, with no consumer of its own
// left on the servers; a block, an expiry marker and a lift reach it that
// way, in order, with no gap.
func TestLiveRecords(t *testing.T) {
	ns := startServer(t, nil)
	h1, h2 := startHost(t, ns, "h1"), startHost(t, ns, "h2")
	h1.waitReady(t)
	h2.waitReady(t)
	js := adminJS(t, ns)
	waitLive(t, ns)
	if st := h2.c.Stats(); st.Live != 2 {
		t.Fatalf("h2 follows %d buckets live, want 2", st.Live)
	}
	// A block that expires: its TTL marker is a record of the stream too.
	short := addr("203.0.113.1")
	h1.c.Publish(Block{Addr: short, Expires: time.Now().Add(1500 * time.Millisecond), Origin: OriginDetect})
	h2.sink.waitBlocks(t, short, 1)
	time.Sleep(4 * time.Second) // the marker
	a := addr("203.0.113.2")
	h1.c.Publish(Block{Addr: a, Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	h2.sink.waitBlocks(t, a, 1)
	h1.c.Unblock(a)
	h2.sink.waitFor(t, "h1's lift", func(_ []Block, lifts []Lift) bool { return len(lifts) > 0 })
	// Every record of the blocks stream, the marker too, was handled live.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "KV_"+BucketBlocks)
	if err != nil {
		t.Fatal(err)
	}
	last := s.CachedInfo().State.LastSeq
	h2.c.mu.Lock()
	handled := h2.c.view.last[BucketBlocks]
	h2.c.mu.Unlock()
	if last < 4 || handled != last {
		t.Errorf("the blocks stream's last record is %d, h2 handled up to %d (want the put, its expiry marker, the next put and more)", last, handled)
	}
	st := h2.c.Stats()
	if st.LiveGaps != 0 || st.Reconnects != 0 {
		t.Errorf("h2: %d gaps, %d reconnects: a record of the stream was not republished", st.LiveGaps, st.Reconnects)
	}
	if n := consumersOf(t, js, BucketBlocks); n != 0 {
		t.Errorf("%d consumers of the blocks bucket after the records", n)
	}
}

// TestLiveGapCatchesUp: a host that misses a republished record (here: a
// sequence that skips, as a dropped message would) catches up through a
// consumer, and goes live again.
func TestLiveGapCatchesUp(t *testing.T) {
	ns := startServer(t, nil)
	h1, h2 := startHost(t, ns, "h1"), startHost(t, ns, "h2")
	h1.waitReady(t)
	h2.waitReady(t)
	// The server here has no permissions: this client may publish on the
	// live subject (deploy/nats forbids it to hosts).
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	m := nats.NewMsg(LivePrefix(BucketBlocks) + "h9.x")
	m.Header.Set(jetstream.StreamHeader, "KV_"+BucketBlocks)
	m.Header.Set(jetstream.SubjectHeader, Subject(BucketBlocks, "h9.x"))
	m.Header.Set(jetstream.SequenceHeader, "1000000")
	m.Header.Set(jetstream.TimeStampHeaer, time.Now().UTC().Format(time.RFC3339Nano))
	a := addr("203.0.113.3")
	h1.c.Publish(Block{Addr: a, Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	h2.sink.waitBlocks(t, a, 1)
	if err := nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	h2.waitStats(t, "a gap", func(s Stats) bool { return s.LiveGaps >= 1 })
	b := addr("203.0.113.4")
	h1.c.Publish(Block{Addr: b, Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	h2.sink.waitBlocks(t, b, 1)
	if got := h2.sink.blocksOf(addr("203.0.113.3")); len(got) != 1 {
		t.Errorf("after the gap h2 holds %d blocks of %s", len(got), a)
	}
}

// TestLiveHeadersCannotLie: a host writes its own record with headers
// that name another host's key and a sequence; the record reaches the
// others as its own, at its own sequence (the servers' headers come last).
func TestLiveHeadersCannotLie(t *testing.T) {
	ns := startServer(t, nil)
	h2 := startHost(t, ns, "h2")
	h2.waitReady(t)
	js := adminJS(t, ns)
	a := addr("203.0.113.5")
	m := nats.NewMsg(Subject(BucketBlocks, HostAddrKey("h1", a)))
	m.Header.Set(jetstream.SubjectHeader, Subject(BucketBlocks, HostAddrKey("h3", a)))
	m.Header.Set(jetstream.SequenceHeader, "1")
	m.Header.Set(jetstream.StreamHeader, "KV_"+BucketBlocks)
	m.Data = marshal(newBlockRecord(a, time.Now().Add(time.Hour), Block{Addr: a, Origin: OriginDetect}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	got := h2.sink.waitBlocks(t, a, 1)
	if got[0].Host != "h1" {
		t.Errorf("h2 took the record as %s's, want h1's (the key it was written under)", got[0].Host)
	}
	if st := h2.c.Stats(); st.LiveGaps != 0 {
		t.Errorf("%d gaps: the forged sequence was read", st.LiveGaps)
	}
}

// TestLiveAfterSetup: buckets an older version made (no republish) leave
// the hosts on their consumers; once the administrator's setup updates
// them, a host that starts follows the live records, and gets the blocks
// written before.
func TestLiveAfterSetup(t *testing.T) {
	ns := startServer(t, nil)
	js := adminJS(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, b := range Buckets {
		kc := BucketConfig(b, BucketLimits{Hosts: 4, Replicas: 1, MaxTimeout: time.Hour, Window: time.Minute})
		kc.RePublish = nil
		if _, err := js.CreateKeyValue(ctx, kc); err != nil {
			t.Fatal(err)
		}
	}
	h1 := startHost(t, ns, "h1")
	h1.waitReady(t)
	if st := h1.c.Stats(); st.Live != 0 {
		t.Fatalf("h1 follows %d buckets live without their republish", st.Live)
	}
	a := addr("203.0.113.6")
	h1.c.Publish(Block{Addr: a, Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	h1.waitStats(t, "its block stored", func(s Stats) bool { return s.Published >= 2 && s.OutboxDepth == 0 })

	adm, err := DialAdmin(testCfg(AdminName), nats.InProcessServer(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if _, err := adm.Setup(ctx, 4, 1); err != nil {
		t.Fatal(err)
	}
	h2 := startHost(t, ns, "h2")
	h2.waitReady(t)
	if st := h2.c.Stats(); st.Live != 2 {
		t.Fatalf("h2 follows %d buckets live after the setup, want 2", st.Live)
	}
	h2.sink.waitBlocks(t, a, 1)
	b := addr("203.0.113.7")
	h1.c.Publish(Block{Addr: b, Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	h2.sink.waitBlocks(t, b, 1)
}

// TestForwardLiveSequence: the live records follow the last one handled:
// those the watch delivered are skipped, the next is forwarded, and the
// first that is not the next (here the first after going live: a host
// cut off with its server while the others wrote) is a gap.
func TestForwardLiveSequence(t *testing.T) {
	msg := func(seq int) *nats.Msg {
		m := nats.NewMsg(LivePrefix(BucketBlocks) + "h1.x")
		m.Header.Set(jetstream.StreamHeader, "KV_"+BucketBlocks)
		m.Header.Set(jetstream.SubjectHeader, Subject(BucketBlocks, "h1.x"))
		m.Header.Set(jetstream.SequenceHeader, fmt.Sprint(seq))
		m.Header.Set(jetstream.TimeStampHeaer, time.Now().UTC().Format(time.RFC3339Nano))
		return m
	}
	for _, tc := range []struct {
		name string
		seqs []int
		want []uint64 // forwarded, then 0 for a gap
	}{
		{"in order", []int{9, 10, 11, 12}, []uint64{11, 12}},
		{"first past handled skips one", []int{12, 13}, []uint64{0}},
		{"a gap later", []int{11, 13}, []uint64{11, 0}},
		{"again after a leader change", []int{11, 11, 12}, []uint64{11, 12}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w := &watcher{ctx: ctx, cancel: cancel, updates: make(chan update, 16)}
			x := &watch{bucketWatch: bucketWatch{bucket: BucketBlocks}, live: &liveFeed{ch: make(chan *nats.Msg, 16)}, handled: 10}
			for _, s := range tc.seqs {
				x.live.ch <- msg(s)
			}
			go w.forwardLive(x)
			var got []uint64
			for range tc.want {
				select {
				case u := <-w.updates:
					if u.gap {
						got = append(got, 0)
					} else {
						got = append(got, u.e.Revision())
					}
				case <-time.After(2 * time.Second):
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// fakeWatcher is a consumer's watch as goLive sees it.
type fakeWatcher struct{ stopped bool }

func (f *fakeWatcher) Updates() <-chan jetstream.KeyValueEntry { return nil }
func (f *fakeWatcher) Stop() error                             { f.stopped = true; return nil }

// A bucket whose replay ended short of the stream's last sequence when
// its live subscription was made (the consumer sits on a server still
// catching up: the servers place it on any peer of the stream) keeps its
// consumer, which delivers the rest once its server has it: the
// subscription holds nothing of what lies between. A bucket replayed up
// to it goes live after the last revision handled.
func TestGoLiveOnlyOnceReplayed(t *testing.T) {
	c, err := New(testCfg("h2"), Options{Sink: newSink(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	c.view.last[BucketBlocks], c.view.last[BucketLifts] = 300, 41
	c.live = map[string]bool{BucketBlocks: true, BucketLifts: true}
	short := &watch{bucketWatch: bucketWatch{bucket: BucketBlocks}, kw: &fakeWatcher{}, live: &liveFeed{}, base: 320}
	replayed := &watch{bucketWatch: bucketWatch{bucket: BucketLifts}, kw: &fakeWatcher{}, live: &liveFeed{}, base: 40}
	c.goLive(&watcher{watches: []*watch{short, replayed}})
	if short.live != nil || short.kw.(*fakeWatcher).stopped {
		t.Errorf("the blocks bucket, replayed to 300 of 320, went live (its consumer stopped: %v)", short.kw.(*fakeWatcher).stopped)
	}
	if n := c.Stats().Live; n != 1 {
		t.Errorf("Stats says %d buckets followed live, want 1", n)
	}
	if replayed.live == nil || !replayed.kw.(*fakeWatcher).stopped || replayed.handled != 41 {
		t.Errorf("the lifts bucket, replayed past its base, did not go live after 41: live %v, consumer stopped %v, handled %d",
			replayed.live != nil, replayed.kw.(*fakeWatcher).stopped, replayed.handled)
	}
}
