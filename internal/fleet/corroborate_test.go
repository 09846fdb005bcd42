package fleet

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// TestForgedCorrelationRefused: h2, compromised, writes with its own
// credentials a correlated block that names h1, h2 and h3, and its own
// sighting (the only one it can write). No counters are named, so h1
// counts the sightings itself and enforces no host's correlated record:
// h2's is refused. Once h3 and h1 saw the address too, h1 blocks it on
// its own count, naming the three.
func TestForgedCorrelationRefused(t *testing.T) {
	ns := startDeployServer(t)
	h1 := startHost(t, ns, "h1", deployHost("h1"))
	h1.waitReady(t)
	h2 := hostJS(t, ns, "h2")
	a, other := addr("203.0.113.90"), addr("203.0.113.91")
	writeAs(t, h2, Subject(BucketSightings, SightingKey(a, "h2")), sightingRecord{At: time.Now().UTC()}, jetstream.WithMsgTTL(10*time.Minute))
	writeAs(t, h2, Subject(BucketBlocks, HostAddrKey("h2", a)), blockRecord{Addr: a.String(), Expires: time.Now().Add(time.Hour),
		Origin: OriginCorrelate, Seen: []string{"h1", "h2", "h3"}, Reason: "seen by 3 hosts"}, jetstream.WithMsgTTL(time.Hour))
	h1.waitStats(t, "the refusal", func(s Stats) bool { return s.Refused == 1 })
	// An ordinary block written after it arrives after it.
	writeAs(t, h2, Subject(BucketBlocks, HostAddrKey("h2", other)), blockRecord{Addr: other.String(), Expires: time.Now().Add(time.Hour),
		Origin: OriginDetect}, jetstream.WithMsgTTL(time.Hour))
	h1.sink.waitBlocks(t, other, 1)
	writeAs(t, hostJS(t, ns, "h3"), Subject(BucketSightings, SightingKey(a, "h3")), sightingRecord{At: time.Now().UTC()},
		jetstream.WithMsgTTL(10*time.Minute))
	h1.waitStats(t, "two sightings counted", func(s Stats) bool { return s.Sightings == 2 })
	if bs := h1.sink.blocksOf(a); len(bs) != 0 {
		t.Fatalf("h1 enforced a correlation of two hosts (h2's claim): %v", bs)
	}
	h1.c.Sighting(a)
	b := h1.sink.waitBlocks(t, a, 1)[0]
	if !b.Corroborated || b.Host != "h1" || fmt.Sprint(b.Seen) != "[h1 h2 h3]" {
		t.Errorf("h1 got %+v, want its own count: h1, h2, h3", b)
	}
}

// counted makes a host one of a fleet whose counters are named.
func counted(counters ...string) func(*config.Fleet, *Options) {
	return func(f *config.Fleet, _ *Options) { f.Correlate.Counters = counters }
}

// TestCountersQuorum: with counters c1, c2, c3 named, three hosts'
// sightings make each counter publish a correlated block, and the host
// that counts nothing (r1) enforces it from the counters' records. A
// compromised counter alone (c1's forged record of another address) is
// no quorum, and a correlated record of a host that is not a counter is
// refused. A second counter's record makes the quorum, which lasts as
// long as the two do.
func TestCountersQuorum(t *testing.T) {
	ns := startServer(t, nil)
	cs := counted("c1", "c2", "c3")
	var hs []*host
	for _, n := range []string{"c1", "c2", "c3", "r1"} {
		hs = append(hs, startHost(t, ns, n, cs))
	}
	for _, h := range hs {
		h.waitReady(t)
	}
	scanner := addr("203.0.113.60")
	for _, h := range hs[1:] {
		h.c.Sighting(scanner)
	}
	for _, h := range hs {
		if b := h.sink.waitBlocks(t, scanner, 1)[0]; b.Origin != OriginCorrelate || !b.Corroborated {
			t.Errorf("%s got %+v", h.c.Name(), b)
		}
	}
	if st := hs[3].c.Stats(); st.Sightings != 0 || st.Correlated != 0 {
		t.Errorf("r1, no counter, counted: %+v", st)
	}

	js := adminJS(t, ns)
	victim := addr("203.0.113.61")
	forge := func(host string, exp time.Time) {
		writeAs(t, js, Subject(BucketBlocks, HostAddrKey(host, victim)), blockRecord{Addr: victim.String(), Expires: exp,
			Origin: OriginCorrelate, Seen: []string{"h7", "h8", "h9"}, Reason: "forged"}, jetstream.WithMsgTTL(time.Hour))
	}
	before := hs[3].c.Stats().Refused
	forge("c1", time.Now().Add(time.Hour))
	forge("r9", time.Now().Add(time.Hour))
	hs[3].waitStats(t, "the refusal of r9's record", func(s Stats) bool { return s.Refused == before+1 })
	marker := addr("203.0.113.62")
	writeAs(t, js, Subject(BucketBlocks, HostAddrKey("r9", marker)), blockRecord{Addr: marker.String(), Expires: time.Now().Add(time.Hour),
		Origin: OriginDetect}, jetstream.WithMsgTTL(time.Hour))
	hs[3].sink.waitBlocks(t, marker, 1)
	if bs := hs[3].sink.blocksOf(victim); len(bs) != 0 {
		t.Fatalf("r1 enforced one counter's record: %v", bs)
	}
	soon := time.Now().Add(20 * time.Minute)
	forge("c2", soon)
	b := hs[3].sink.waitBlocks(t, victim, 1)[0]
	if !b.Corroborated || !nearly(b.Expires, soon, time.Second) || !strings.Contains(b.Reason, "c1, c2, 2 of the 3 counters") {
		t.Errorf("r1 got %+v, want the quorum of c1 and c2 until c2's record ends", b)
	}
}

// apiCounter counts the JetStream API requests of the account, but the
// stall check's (stream info of blocks and lifts, on a timer of its own).
func apiCounter(t testing.TB, ns *server.Server) func() map[string]int {
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	var mu sync.Mutex
	seen := map[string]int{}
	if _, err := nc.Subscribe("$JS.API.>", func(m *nats.Msg) {
		if strings.HasPrefix(m.Subject, "$JS.API.STREAM.INFO.KV_portsentry_blocks") ||
			strings.HasPrefix(m.Subject, "$JS.API.STREAM.INFO.KV_portsentry_lifts") {
			return
		}
		mu.Lock()
		seen[m.Subject]++
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := seen
		seen = map[string]int{}
		return out
	}
}

// TestCorrelationMakesNoRequests: 20 addresses each seen by three hosts
// are blocked on all four hosts with no JetStream API request at all, for
// the sightings nor for the correlated blocks: each sighting is one write
// to the bucket, counted from the watches. Before, each sighting cost its
// writer a stream info request, and each correlated record one per
// receiving host.
func TestCorrelationMakesNoRequests(t *testing.T) {
	for _, tc := range []struct {
		name     string
		counters []string
	}{{"every host counts", nil}, {"named counters", []string{"h1", "h2", "h3"}}} {
		t.Run(tc.name, func(t *testing.T) {
			ns := startServer(t, nil)
			var hs []*host
			for _, n := range []string{"h1", "h2", "h3", "h4"} {
				hs = append(hs, startHost(t, ns, n, counted(tc.counters...)))
			}
			for _, h := range hs {
				h.waitReady(t)
				h.waitStats(t, "its host record sent", func(s Stats) bool { return s.OutboxDepth == 0 })
			}
			waitLive(t, ns) // the consumers' deletions as the hosts go live are not the sightings'
			requests := apiCounter(t, ns)
			var as []netip.Addr
			for i := range 20 {
				a := netip.AddrFrom4([4]byte{203, 0, 113, byte(100 + i)})
				as = append(as, a)
				for _, h := range hs[1:] {
					h.c.Sighting(a)
				}
			}
			for _, h := range hs {
				for _, a := range as {
					h.sink.waitBlocks(t, a, 1)
				}
			}
			if r := requests(); len(r) != 0 {
				t.Errorf("API requests for 60 sightings and 20 correlated blocks: %v", r)
			}
		})
	}
}

// TestSightingFloodBounded: x, compromised, floods the sightings bucket
// with 3000 forged sightings under its own name. The counting host holds
// at most its bounds (x's share, of the small bounds set here), x loses
// its own oldest, and the real scanner that three honest hosts saw is
// still blocked; x's flood blocks nothing (it is one host).
func TestSightingFloodBounded(t *testing.T) {
	pairs, share := tallyPairs, tallyShare
	tallyPairs, tallyShare = 2000, 500
	t.Cleanup(func() { tallyPairs, tallyShare = pairs, share })
	ns := startServer(t, nil)
	hs := []*host{startHost(t, ns, "h1"), startHost(t, ns, "h2"), startHost(t, ns, "h3")}
	for _, h := range hs {
		h.waitReady(t)
	}
	js := adminJS(t, ns)
	var fs []jetstream.PubAckFuture
	for i := range 3000 {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		f, err := js.PublishAsync(Subject(BucketSightings, SightingKey(a, "x")), marshal(sightingRecord{At: time.Now().UTC()}))
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("the flood was not acknowledged")
	}
	for _, f := range fs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatalf("a forged sighting was refused: %v", err)
		}
	}
	st := hs[0].waitStats(t, "the flood counted", func(s Stats) bool { return s.SightingsDropped >= 2500 })
	if st.Sightings > 500 {
		t.Errorf("h1 holds %d sightings of x, past its share of 500", st.Sightings)
	}
	scanner := addr("203.0.113.70")
	for _, h := range hs {
		h.c.Sighting(scanner)
	}
	for _, h := range hs {
		h.sink.waitBlocks(t, scanner, 1)
		if bs, _ := h.sink.snapshot(); len(bs) != 1 {
			t.Errorf("%s blocked %d addresses, want the scanner only", h.c.Name(), len(bs))
		}
	}
}

// TestTallyBounds: a host past its share loses its own oldest pairs, a
// full tally the largest host's oldest, and one key written again and
// again does not grow the host's queue without bound.
func TestTallyBounds(t *testing.T) {
	tl := newTally()
	tl.pairs, tl.share = 100, 40
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}) }
	for i := range 60 {
		tl.add(ip(i), "x", int64(1000+i))
	}
	if hq := tl.hosts["x"]; hq.live != 40 || tl.n != 40 || tl.dropped != 20 || len(tl.addrs[ip(0)]) != 0 || len(tl.addrs[ip(59)]) != 1 {
		t.Fatalf("x: %d live, %d pairs, %d dropped", hq.live, tl.n, tl.dropped)
	}
	for i := range 35 {
		tl.add(ip(i), "h1", 2000)
	}
	for i := range 25 {
		tl.add(ip(i), "h2", 2000)
	}
	three := 0
	for i := range 5 {
		if n := tl.add(ip(i), "h3", 2000); i == 1 {
			three = n
		}
	}
	// Full at 100: h3's five took the place of the oldest of x, the largest.
	if tl.n != 100 || tl.hosts["x"].live != 35 || tl.hosts["h1"].live != 35 || tl.dropped != 25 {
		t.Fatalf("%d pairs, x %d, h1 %d, %d dropped", tl.n, tl.hosts["x"].live, tl.hosts["h1"].live, tl.dropped)
	}
	if three != 3 || fmt.Sprint(tl.hostsOf(ip(1), 0)) != "[h1 h2 h3]" {
		t.Errorf("ip 1: %d hosts, %v", three, tl.hostsOf(ip(1), 0))
	}
	for i := range 10000 {
		tl.add(ip(1), "h3", int64(3000+i))
	}
	if q := len(tl.hosts["h3"].q); q > 100 {
		t.Errorf("h3's queue holds %d refs for one pair", q)
	}
	tl.expire(1999)
	if tl.hosts["x"] != nil || tl.n != 65 {
		t.Errorf("after x's pairs ended: %d pairs, x %v", tl.n, tl.hosts["x"])
	}
	tl.remove(ip(1), "h3")
	tl.expire(20000)
	if tl.n != 0 || len(tl.addrs) != 0 || len(tl.hosts) != 0 {
		t.Errorf("after all ended: %d pairs, %d addresses, %d hosts", tl.n, len(tl.addrs), len(tl.hosts))
	}
}

// BenchmarkSightingCost: b.N addresses, each seen once by 3 hosts of n
// (each blocked on every host), or by 1 (a scan's noise: nothing
// correlates); every host counts, or three named counters do. Reported:
// the process's CPU (the in-process server's and the n clients') and the
// JetStream API requests, per sighting; a baseline is the same benchmark
// run on the code before (a stream info request per sighting, and one
// per correlated block at each host).
func BenchmarkSightingCost(b *testing.B) {
	for _, bc := range []struct {
		n, seen  int
		counters []string
	}{{4, 3, nil}, {20, 3, nil}, {20, 3, []string{"h1", "h2", "h3"}}, {20, 1, nil}, {20, 1, []string{"h1", "h2", "h3"}}} {
		name := fmt.Sprintf("hosts=%d,seen=%d", bc.n, bc.seen)
		if bc.counters != nil {
			name += ",counters=3"
		}
		b.Run(name, func(b *testing.B) { sightingCost(b, bc.n, bc.seen, bc.counters) })
	}
}

func sightingCost(b *testing.B, n, seen int, counters []string) {
	ns := startServer(b, nil)
	var hs []*host
	for i := range n {
		hs = append(hs, startHost(b, ns, fmt.Sprintf("h%d", i+1), counted(counters...)))
	}
	for _, h := range hs {
		h.waitReady(b)
		h.waitStats(b, "its host record sent", func(s Stats) bool { return s.OutboxDepth == 0 })
	}
	requests := apiCounter(b, ns)
	cpu0 := processCPU(b)
	b.ResetTimer()
	for i := range b.N {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		for _, h := range hs[n-seen:] {
			h.c.Sighting(a)
		}
	}
	for _, h := range hs {
		switch {
		case seen >= 3:
			h.sink.waitFor(b, "every address blocked", func(bs []Block, _ []Lift) bool { return len(bs) >= b.N })
		case h.c.counts():
			h.waitStats(b, "every sighting counted", func(s Stats) bool { return s.Sightings >= b.N })
		}
	}
	b.StopTimer()
	total := 0
	for _, k := range requests() {
		total += k
	}
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(seen*b.N), "cpu-ns/sighting")
	b.ReportMetric(float64(total)/float64(seen*b.N), "api-req/sighting")
}

// processCPU is the process's CPU time so far (user and system), in ns.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestBallotsBounded: a counter's votes past its share are refused (its
// ended ones dropped first, once a second at most); another counter's
// still count, and a quorum lasts until its q-th latest vote ends.
func TestBallotsBounded(t *testing.T) {
	b := newBallots()
	b.share = 10
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}) }
	sec := int64(time.Second)
	for i := range 10 {
		if !b.put(ip(i), vote{host: "c1", exp: 5 * sec}, 0) {
			t.Fatalf("vote %d refused within the share", i)
		}
	}
	if b.put(ip(10), vote{host: "c1", exp: 5 * sec}, 0) || b.per["c1"] != 10 {
		t.Fatalf("c1 holds %d votes, past its share", b.per["c1"])
	}
	if !b.put(ip(0), vote{host: "c2", exp: 3 * sec}, 0) || !b.put(ip(0), vote{host: "c1", exp: 9 * sec}, 0) {
		t.Fatal("c2's vote, or c1's renewal, refused")
	}
	if hs, until := b.quorum(ip(0), 2, sec); fmt.Sprint(hs) != "[c1 c2]" || until != 3*sec {
		t.Errorf("quorum %v until %d", hs, until)
	}
	if hs, _ := b.quorum(ip(0), 2, 4*sec); hs != nil {
		t.Errorf("quorum %v after c2's vote ended", hs)
	}
	// At 6 s c1's other votes have ended: a new one drops them first.
	if !b.put(ip(11), vote{host: "c1", exp: 20 * sec}, 6*sec) || b.per["c1"] != 2 || len(b.votes) != 2 {
		t.Errorf("after the walk: c1 holds %d votes of %d addresses", b.per["c1"], len(b.votes))
	}
}

// TestOlderPermissionsCountNothing: h1's permissions are those of the
// deployment before hosts watched the sightings (no consumer of
// KV_portsentry_sightings). h1 still mirrors the fleet (h2's block
// arrives), counts nothing, and says why, once.
func TestOlderPermissionsCountNothing(t *testing.T) {
	opts, err := server.ProcessConfigFile(deployConf)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range opts.Nkeys {
		if u.Permissions == nil || u.Permissions.Publish == nil {
			continue
		}
		u.Permissions.Publish.Allow = slices.DeleteFunc(u.Permissions.Publish.Allow, func(s string) bool {
			return strings.Contains(s, "KV_portsentry_sightings") && !strings.Contains(s, "STREAM.")
		})
	}
	opts.Cluster, opts.Routes, opts.RoutesStr = server.ClusterOpts{}, nil, ""
	opts.DontListen, opts.StoreDir = true, t.TempDir()
	ns := startServer(t, opts)
	var logs netnstest.Output
	h1 := startHost(t, ns, "h1", func(f *config.Fleet, o *Options) {
		asDeployUser(f, "h1")
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	h2 := startHost(t, ns, "h2", deployHost("h2"))
	h1.waitReady(t)
	a := addr("203.0.113.80")
	h2.c.Publish(Block{Addr: a, Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	h1.sink.waitBlocks(t, a, 1)
	if !h1.c.noCount.Load() || strings.Count(logs.String(), "cannot watch the sightings") != 1 {
		t.Errorf("h1 counts sightings it cannot watch, or did not say so once:\n%s", logs.String())
	}
}

// TestLateHostCountsEarlierSightings: h3, started after h1 and h2 saw an
// address, counts their sightings from its watch's current values (read
// after Ready, with the updates), and its own third sighting blocks the
// address there.
func TestLateHostCountsEarlierSightings(t *testing.T) {
	ns := startServer(t, nil)
	h1, h2 := startHost(t, ns, "h1"), startHost(t, ns, "h2")
	h1.waitReady(t)
	h2.waitReady(t)
	a := addr("203.0.113.77")
	h1.c.Sighting(a)
	h2.c.Sighting(a)
	h1.waitStats(t, "both sightings counted", func(s Stats) bool { return s.Sightings == 2 })
	h3 := startHost(t, ns, "h3")
	h3.waitReady(t)
	h3.waitStats(t, "the earlier sightings counted", func(s Stats) bool { return s.Sightings == 2 })
	h3.c.Sighting(a)
	if b := h3.sink.waitBlocks(t, a, 1)[0]; fmt.Sprint(b.Seen) != "[h1 h2 h3]" {
		t.Errorf("h3 got %+v", b)
	}
}
