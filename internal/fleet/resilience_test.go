package fleet

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// TestOutboxReplay: with the server down, Publish keeps queueing; after the
// server comes back (same store, same port) the outbox is sent, less what
// expired meanwhile, and the view of another host catches up.
func TestOutboxReplay(t *testing.T) {
	store := t.TempDir()
	ns := startServer(t, &server.Options{Host: "127.0.0.1", Port: -1, StoreDir: store})
	tcp := ns.Addr().(*net.TCPAddr)
	url := "nats://" + tcp.String()
	viaURL := func(f *config.Fleet, o *Options) {
		f.Servers = []string{url}
		o.NATSOptions = []nats.Option{nats.ReconnectWait(100 * time.Millisecond), nats.ReconnectJitter(0, 0)}
	}
	h1 := startHost(t, nil, "h1", viaURL)
	h2 := startHost(t, nil, "h2", viaURL)
	h1.waitReady(t)
	h2.waitReady(t)
	before := addr("203.0.113.1")
	h1.c.Publish(Block{Addr: before, Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	h2.sink.waitBlocks(t, before, 1)

	ns.Shutdown()
	ns.WaitForShutdown()
	h1.waitStats(t, "disconnected", func(s Stats) bool { return !s.Connected })
	exp := time.Now().Add(time.Hour)
	var want []netip.Addr
	for i := range 100 {
		a := netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)})
		want = append(want, a)
		h1.c.Publish(Block{Addr: a, Expires: exp, Origin: OriginDetect})
	}
	short := addr("192.0.2.1")
	h1.c.Publish(Block{Addr: short, Expires: time.Now().Add(1500 * time.Millisecond), Origin: OriginDetect})
	if st := h1.c.Stats(); st.OutboxDepth != 101 {
		t.Fatalf("outbox depth %d while down, want 101", st.OutboxDepth)
	}
	time.Sleep(1600 * time.Millisecond) // the short block expires unsent

	ns2 := startServer(t, &server.Options{Host: "127.0.0.1", Port: tcp.Port, StoreDir: store})
	_ = ns2
	st := h1.waitStats(t, "the outbox sent", func(s Stats) bool { return s.Connected && s.OutboxDepth == 0 && s.Published >= 102 })
	if st.OutboxExpired != 1 || st.Reconnects < 1 {
		t.Errorf("stats after the restart: %+v", st)
	}
	h2.sink.waitFor(t, "the 100 blocks", func(bs []Block, _ []Lift) bool { return len(bs) >= 101 })
	bs, _ := h2.sink.snapshot()
	var got []netip.Addr
	for _, b := range bs[1:] {
		got = append(got, b.Addr)
	}
	slices.SortFunc(got, netip.Addr.Compare)
	if !slices.Equal(got, want) {
		t.Errorf("h2 got %d blocks after the restart, want the 100: %v", len(got), got)
	}
	if len(h2.sink.blocksOf(short)) != 0 {
		t.Error("a block that expired in the outbox was published")
	}
}

// TestCorrelation: three hosts that each saw one probe from an address
// block it everywhere, origin correlate; two hosts do not.
func TestCorrelation(t *testing.T) {
	ns := startServer(t, nil)
	hs := []*host{startHost(t, ns, "h1"), startHost(t, ns, "h2"), startHost(t, ns, "h3"), startHost(t, ns, "h4")}
	for _, h := range hs {
		h.waitReady(t)
	}
	two := addr("203.0.113.2")
	hs[0].c.Sighting(two)
	hs[1].c.Sighting(two)
	three := addr("2001:db8::3")
	for _, h := range hs[:3] {
		h.c.Sighting(three)
	}
	for _, h := range hs {
		b := h.sink.waitBlocks(t, three, 1)[0]
		if b.Origin != OriginCorrelate || !b.Corroborated || b.Evidence != EvidenceForgeable || !slices.Equal(b.Seen, []string{"h1", "h2", "h3"}) ||
			!nearly(b.Expires, time.Now().Add(time.Hour), 10*time.Second) || !strings.Contains(b.Reason, "h1, h2, h3") {
			t.Errorf("%s got %+v", h.c.Name(), b)
		}
	}
	time.Sleep(500 * time.Millisecond)
	for _, h := range hs {
		if bs := h.sink.blocksOf(two); len(bs) != 0 {
			t.Errorf("%s blocked an address two hosts saw: %v", h.c.Name(), bs)
		}
	}
	var n uint64
	for _, h := range hs {
		n += h.c.Stats().Correlated
	}
	if n < 1 {
		t.Errorf("correlated %d times", n)
	}
	// A further sighting of the blocked address does nothing.
	before := hs[3].c.Stats().OutboxDepth
	hs[3].c.Sighting(three)
	if d := hs[3].c.Stats().OutboxDepth; d > before {
		t.Errorf("a sighting of a blocked address was queued (depth %d, %d before)", d, before)
	}
}

// TestCorrelationOff: correlate.hosts 0 publishes no sighting.
func TestCorrelationOff(t *testing.T) {
	ns := startServer(t, nil)
	h := startHost(t, ns, "h1", func(f *config.Fleet, _ *Options) { f.Correlate.Hosts = 0 })
	h.waitReady(t)
	// The outbox may still hold the host's own record: no more after.
	before := h.c.Stats().OutboxDepth
	h.c.Sighting(addr("203.0.113.9"))
	if d := h.c.Stats().OutboxDepth; d > before {
		t.Errorf("outbox depth %d after the sighting, %d before", d, before)
	}
}

// TestRefusals: no host enforces a fleet block of an address its guard
// rails protect (a fleet host's among them: the guard has fleet.hosts),
// or of a non-global address; each is counted, and records that disagree
// with their key are not read.
func TestRefusals(t *testing.T) {
	ns := startServer(t, nil)
	protected := addr("198.51.100.53")
	fleetAddr := addr("2001:db8::33")
	h2 := startHost(t, ns, "h2", func(_ *config.Fleet, o *Options) {
		o.Protected = func(a netip.Addr) (string, bool) {
			switch a {
			case protected:
				return "nameserver", true
			case fleetAddr:
				return "fleet host", true
			}
			return "", false
		}
	})
	h3 := startHost(t, ns, "h3", func(_ *config.Fleet, o *Options) {
		o.Protected = func(a netip.Addr) (string, bool) {
			return "local address", a == fleetAddr || a == addr("192.0.2.33")
		}
	})
	h2.waitReady(t)
	h3.waitReady(t)
	// h3 does not publish blocks of its own addresses. (Its host record
	// may still wait in the outbox: it is queued on each connection.)
	before := h3.c.Stats().OutboxDepth
	h3.c.Publish(Block{Addr: addr("192.0.2.33"), Expires: time.Now().Add(time.Hour)})
	if d := h3.c.Stats().OutboxDepth; d > before {
		t.Errorf("h3 queued a block of its own address (outbox %d, %d before)", d, before)
	}

	// Records written as h1 by a raw connection, as a rogue or buggy host would.
	js := adminJS(t, ns)
	exp := time.Now().Add(time.Hour)
	bad := []netip.Addr{protected, fleetAddr, addr("127.0.0.1"), addr("::1"), addr("fe80::1"), addr("169.254.1.1"),
		addr("224.0.0.251"), addr("ff02::1"), addr("0.0.0.0"), addr("::"), addr("255.255.255.255")}
	for _, a := range bad {
		rec, _ := json.Marshal(blockRecord{Addr: a.String(), Expires: exp, Origin: OriginDetect})
		if _, err := js.Publish(t.Context(), Subject(BucketBlocks, HostAddrKey("h1", a)), rec); err != nil {
			t.Fatal(err)
		}
	}
	// A record whose address is not its key's, and one that is not JSON.
	rec, _ := json.Marshal(blockRecord{Addr: "203.0.113.66", Expires: exp})
	if _, err := js.Publish(t.Context(), Subject(BucketBlocks, HostAddrKey("h1", addr("203.0.113.65"))), rec); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), Subject(BucketBlocks, HostAddrKey("h1", addr("203.0.113.67"))), []byte("{")); err != nil {
		t.Fatal(err)
	}
	good := addr("203.0.113.99")
	rec, _ = json.Marshal(blockRecord{Addr: good.String(), Expires: exp, Origin: OriginDetect})
	if _, err := js.Publish(t.Context(), Subject(BucketBlocks, HostAddrKey("h1", good)), rec); err != nil {
		t.Fatal(err)
	}
	h2.sink.waitBlocks(t, good, 1)
	if bs, _ := h2.sink.snapshot(); len(bs) != 1 {
		t.Errorf("h2 enforced %v", bs)
	}
	st := h2.c.Stats()
	if st.Refused != uint64(len(bad)) || st.BadRecords != 2 {
		t.Errorf("refused %d (want %d), bad records %d (want 2)", st.Refused, len(bad), st.BadRecords)
	}
	// h3 refuses the others, its own address (a fleet host's) among them.
	// (h3 does not protect the nameserver: its guard rails are its own.)
	h3.sink.waitBlocks(t, good, 1)
	if bs, _ := h3.sink.snapshot(); len(bs) != 2 || len(h3.sink.blocksOf(protected)) != 1 {
		t.Errorf("h3 enforced %v, want h2's nameserver and the good one", bs)
	}
	if st := h3.c.Stats(); st.Refused != uint64(len(bad)-1) {
		t.Errorf("h3 refused %d", st.Refused)
	}
}

// TestServersDown: with no server reachable, Run keeps trying, Ready stays
// open (the daemon waits for it with a bound), Publish never waits, and
// the bounded outbox counts what it drops.
func TestServersDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + l.Addr().String()
	l.Close() // nothing listens there now
	h := startHost(t, nil, "h1", func(f *config.Fleet, o *Options) {
		f.Servers = []string{url}
		o.OutboxSize = 10
	})
	start := time.Now()
	for i := range 20 {
		h.c.Publish(Block{Addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)}), Expires: time.Now().Add(time.Hour)})
	}
	h.c.Sighting(addr("203.0.113.1")) // queued: sightings have a lane of their own
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("21 writes took %v while the servers are down", d)
	}
	select {
	case <-h.c.Ready():
		t.Error("Ready closed without servers")
	case <-time.After(500 * time.Millisecond):
	}
	st := h.c.Stats()
	if st.Connected || st.OutboxDepth != 11 || st.OutboxDropped != 10 {
		t.Errorf("stats %+v, want 10 blocks and the sighting queued, 10 blocks dropped", st)
	}
}

// A watcher is stalled when it delivered nothing between two checks while
// the first found records of this generation it had not delivered; one
// still working through a burst, or one with only older records missing
// (a purged marker's gap), is not.
func TestStallCheck(t *testing.T) {
	type check struct {
		last, delivered [2]uint64
		stalled         bool
	}
	for _, tc := range []struct {
		name   string
		checks []check
	}{
		{"caught up", []check{{[2]uint64{5, 9}, [2]uint64{5, 9}, false}, {[2]uint64{6, 12}, [2]uint64{6, 12}, false}, {[2]uint64{6, 12}, [2]uint64{6, 12}, false}}},
		{"stuck behind new records", []check{{[2]uint64{5, 9}, [2]uint64{5, 9}, false}, {[2]uint64{5, 20}, [2]uint64{5, 9}, false}, {[2]uint64{5, 20}, [2]uint64{5, 9}, true}}},
		{"behind a burst but delivering", []check{{[2]uint64{5, 9}, [2]uint64{5, 9}, false}, {[2]uint64{5, 10009}, [2]uint64{5, 10}, false}, {[2]uint64{5, 10009}, [2]uint64{5, 4000}, false}, {[2]uint64{5, 10009}, [2]uint64{5, 8000}, false}, {[2]uint64{5, 10009}, [2]uint64{5, 10009}, false}}},
		{"lifts stuck", []check{{[2]uint64{5, 9}, [2]uint64{5, 9}, false}, {[2]uint64{7, 9}, [2]uint64{5, 9}, false}, {[2]uint64{7, 9}, [2]uint64{5, 9}, true}}},
		{"only a gap before this generation", []check{{[2]uint64{5, 9}, [2]uint64{5, 8}, false}, {[2]uint64{5, 9}, [2]uint64{5, 8}, false}, {[2]uint64{5, 9}, [2]uint64{5, 8}, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &stallChecker{}
			for i, c := range tc.checks {
				s.running = true
				if got := s.stalled(c.last, c.delivered); got != c.stalled {
					t.Fatalf("check %d (last %v, delivered %v): stalled %v, want %v", i, c.last, c.delivered, got, c.stalled)
				}
				if s.running {
					t.Fatalf("check %d left the checker running", i)
				}
			}
		})
	}
}

// A flood of sightings (a spoofed random-source scan of one host) neither
// delays a block nor goes to the cluster faster than sightingRate: the
// block queued after 3000 sightings reaches the other host while most of
// them still wait.
func TestSightingFloodDoesNotDelayBlocks(t *testing.T) {
	ns := startServer(t, nil)
	h1, h2 := startHost(t, ns, "h1"), startHost(t, ns, "h2")
	h1.waitReady(t)
	h2.waitReady(t)
	for i := range 3000 {
		h1.c.Sighting(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}))
	}
	a := addr("203.0.113.50")
	h1.c.Publish(Block{Addr: a, Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	h2.sink.waitBlocks(t, a, 1)
	if d := h1.c.Stats().OutboxDepth; d < 2000 {
		t.Fatalf("outbox depth %d when the block arrived: the sightings went first, or faster than %d/s", d, sightingRate)
	}
}

// While the servers refuse writes (a full bucket: each try fails at once),
// the publisher keeps to its backoff however many new writes arrive: a
// block a packet (or a flood's sightings) must not turn retries into a
// loop against the cluster.
func TestPublisherKeepsItsBackoff(t *testing.T) {
	ns := startServer(t, nil)
	_, err := adminJS(t, ns).CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: BucketBlocks, History: 1,
		MaxBytes: 2048, LimitMarkerTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	h := startHost(t, ns, "h1")
	h.waitReady(t)
	n := 0
	publish := func() {
		n++
		h.c.Publish(Block{Addr: netip.AddrFrom4([4]byte{198, 51, byte(n >> 8), byte(n)}), Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	}
	for range 20 {
		publish()
	}
	before := h.waitStats(t, "a refused write", func(s Stats) bool { return s.PublishErrors > 0 }).PublishErrors
	for range 100 {
		publish()
		h.c.Sighting(netip.AddrFrom4([4]byte{198, 18, byte(n >> 8), byte(n)}))
		time.Sleep(10 * time.Millisecond)
	}
	// Backoff from 200 ms: at most 4 tries in the second, each of at most
	// the 120 writes waiting (sightings go after them, and fail too).
	if d := h.c.Stats().PublishErrors - before; d > 4*240 {
		t.Fatalf("%d writes failed in a second of retries: the publisher did not keep to its backoff", d)
	}
}
