package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkFleetScale runs N simulated hosts, each a real Client in this
// process (no kernel), against real nats-server processes on loopback,
// in two topologies, each with deploy's files and permissions and one
// nkey user per host: the 3-node cluster of deploy/nats (its
// accounts.conf with a user per host made from h1's entry), and the leaf
// nodes of deploy/nats/leaf (scale_leaf_test.go: the hub's 3 servers and
// one leaf server per site, FLEET_SCALE_SITES, default 4; the hosts spread
// over the sites, writing to the hub's domain and watching their leaf's
// copies). It prints one row per topology and N: one block to all others
// at 5 blocks/s (p50/p99), the same while the hosts report 100 sightings
// a second, a 1000-block burst, the fleet's cold start, idle JetStream API
// requests a second per host and idle CPU a second per host (this
// process's, the servers'), reconnects in the run without faults, a
// restart of one server (of the hub) in the middle of a stream of blocks
// (time until every host has them all, records the watches delivered per
// host meanwhile), a new host joining while the fleet holds 10,000 blocks
// more (time until it holds every block, its API requests meanwhile), and
// the CPU per delivery of this process (all the clients) and of the
// servers (hub + leaves in the leaf topology). It fails when a block does
// not reach every host.
//
//	go test -run '^$' -bench FleetScale -benchtime 1x ./internal/fleet
//	FLEET_SCALE_N=10,100,300,1000 FLEET_SCALE_SITES=4 go test ...
//
// Every client and server shares this machine's cores: latencies are
// upper bounds, CPU per delivery is the figure to extrapolate.
func BenchmarkFleetScale(b *testing.B) {
	ns := []int{10, 100, 300}
	if s := os.Getenv("FLEET_SCALE_N"); s != "" {
		ns = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 2 {
				b.Fatalf("FLEET_SCALE_N: %q", s)
			}
			ns = append(ns, n)
		}
	}
	sites := 4
	if s := os.Getenv("FLEET_SCALE_SITES"); s != "" {
		var err error
		if sites, err = strconv.Atoi(s); err != nil || sites < 1 {
			b.Fatalf("FLEET_SCALE_SITES: %q", s)
		}
	}
	bin := buildNATSServer(b)
	fmt.Println("| topology | N | one block, 5/s: p50 / p99 | the same with 100 sightings/s: p99 | 1000-block burst: all hosts have all | cold start | idle API req/s per host | idle CPU per host: client / servers | reconnects (no faults) | server restart: all have all / records per host (max) | a host joins, 10k blocks held: it holds all / its API requests | CPU per delivery, single: client / servers | burst: client / servers |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, n := range ns {
		topos := []scaleTopo{{}, {sites: sites}}
		if n >= 300 {
			// The baseline of the live records, in the same run: the
			// cluster with buckets made without republish (as an older
			// version made them), where each host keeps a consumer a bucket.
			topos = append(topos, scaleTopo{consumers: true})
		}
		for _, topo := range topos {
			b.Run(fmt.Sprintf("%s_%d", topo.id(), n), func(b *testing.B) {
				for b.Loop() {
					start := time.Now()
					r := runFleetScale(b, bin, n, topo)
					fmt.Println(r.row())
					fmt.Printf("%s N=%d: the run took %s\n", topo, n, time.Since(start).Round(time.Second))
				}
			})
		}
	}
}

// scaleTopo is the servers' topology: the plain cluster (sites 0) or a
// hub and a leaf server per site.
// consumers: the cluster's buckets have no republish (each host keeps a
// JetStream consumer a bucket, as before the live records).
type scaleTopo struct {
	sites     int
	consumers bool
}

func (t scaleTopo) String() string {
	switch {
	case t.consumers:
		return "cluster, consumers"
	case t.sites == 0:
		return "cluster"
	}
	return fmt.Sprintf("hub + %d leaves", t.sites)
}

func (t scaleTopo) id() string {
	switch {
	case t.consumers:
		return "consumers"
	case t.sites == 0:
		return "cluster"
	}
	return fmt.Sprintf("leaf%d", t.sites)
}

// cpuUse is CPU time of this process (the clients), the hub's (or the
// cluster's) servers and the leaf servers.
type cpuUse struct{ cli, hub, leaves time.Duration }

func (c cpuUse) sub(d cpuUse) cpuUse {
	return cpuUse{c.cli - d.cli, c.hub - d.hub, c.leaves - d.leaves}
}

func (c cpuUse) div(n float64) cpuUse {
	f := func(d time.Duration) time.Duration { return time.Duration(float64(d) / n) }
	return cpuUse{f(c.cli), f(c.hub), f(c.leaves)}
}

// cell is "client / servers", the servers as "hub + leaves" in the leaf
// topology, in µs.
func (c cpuUse) cell(t scaleTopo) string {
	us := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Nanoseconds())/1000) }
	if t.sites == 0 {
		return us(c.cli) + " / " + us(c.hub) + " µs"
	}
	return us(c.cli) + " / " + us(c.hub) + " + " + us(c.leaves) + " µs"
}

// scaleResult is one row of BenchmarkFleetScale.
type scaleResult struct {
	topo                  scaleTopo
	n                     int
	p50, p99, burst, cold time.Duration
	idleAPI               float64
	idleCPU               cpuUse // per host and second
	reconnects            uint64
	restart               time.Duration
	restartRecords        uint64
	p99Sighted            time.Duration // with 100 sightings a second
	join                  time.Duration // a new host until it holds every block
	joinAPI               int64         // its API requests meanwhile
	single, burstCPU      cpuUse        // per delivery
}

func (r scaleResult) row() string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	return fmt.Sprintf("| %s | %d | %s / %s | %s | %s | %s | %.3f | %s/s | %d | %s / %d | %s / %d | %s | %s |",
		r.topo, r.n, ms(r.p50), ms(r.p99), ms(r.p99Sighted), ms(r.burst), ms(r.cold), r.idleAPI, r.idleCPU.cell(r.topo),
		r.reconnects, ms(r.restart), r.restartRecords, ms(r.join), r.joinAPI, r.single.cell(r.topo), r.burstCPU.cell(r.topo))
}

// scaleServer is one server of the benchmark's cluster; it can be
// killed and started again on its store and ports.
type scaleServer struct {
	args []string
	dir  string
	bin  string
	cmd  *exec.Cmd
	url  string
}

func (s *scaleServer) start(b testing.TB) {
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	s.cmd = cmd
}

func (s *scaleServer) stop() {
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// cpu is the server's CPU time so far.
func (s *scaleServer) cpu() time.Duration {
	if s.cmd == nil {
		return 0
	}
	return procCPU(s.cmd.Process.Pid)
}

// procCPU reads a process's user and system time from /proc.
func procCPU(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * (time.Second / 100)
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// scaleConf writes deploy/nats's server files into a directory, with an
// accounts.conf that has the administrator and n host users s1..sn, each
// with h1's permissions under its own name and a new nkey, whose seed it
// writes to <name>.nk in the same directory.
func scaleConf(b testing.TB, n int) string {
	dir := b.TempDir()
	for _, f := range []string{"n1.conf", "n2.conf", "n3.conf", "cluster.conf"} {
		raw, err := os.ReadFile(filepath.Join("../../deploy/nats", f))
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), raw, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	raw, err := os.ReadFile("../../deploy/nats/accounts.conf")
	if err != nil {
		b.Fatal(err)
	}
	s := string(raw)
	i, j := strings.Index(s, "      {\n        # h1:"), strings.Index(s, "      {\n        # h2:")
	k := strings.LastIndex(s, "    ]\n  }\n}")
	if i < 0 || j < i || k < j {
		b.Fatal("deploy/nats/accounts.conf: no h1, h2 entries to copy")
	}
	nkey := regexp.MustCompile(`nkey: U[A-Z0-9]+`)
	var users strings.Builder
	for h := range n {
		name := fmt.Sprintf("s%d", h+1)
		pub := writeSeed(b, filepath.Join(dir, name+".nk"))
		users.WriteString(nkey.ReplaceAllString(strings.ReplaceAll(s[i:j], "h1", name), "nkey: "+pub))
	}
	out := s[:i] + users.String() + s[k:]
	if err := os.WriteFile(filepath.Join(dir, "accounts.conf"), []byte(out), 0o600); err != nil {
		b.Fatal(err)
	}
	return dir
}

// startScaleCluster runs the three servers with the files of scaleConf.
// It returns the servers and the directory of the files (and the hosts'
// seeds).
func startScaleCluster(b testing.TB, bin string, n int) ([]*scaleServer, string) {
	conf := scaleConf(b, n)
	ports := freePorts(b, 6)
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[3+i]))
	}
	var srv []*scaleServer
	for i := range 3 {
		s := &scaleServer{bin: bin, dir: b.TempDir(), url: fmt.Sprintf("nats://127.0.0.1:%d", ports[i]),
			args: []string{"-c", filepath.Join(conf, fmt.Sprintf("n%d.conf", i+1)), "-a", "127.0.0.1", "-p", fmt.Sprint(ports[i]),
				"--cluster", routes[i], "--routes", strings.Join(routes, ",")}}
		s.start(b)
		b.Cleanup(s.stop)
		srv = append(srv, s)
	}
	return srv, conf
}

// scaleSink is a simulated host's daemon: when each block arrived, by the
// benchmark's address index.
type scaleSink struct {
	mu      sync.Mutex
	arrived map[uint32]time.Time
	count   atomic.Int64
}

func (s *scaleSink) FleetBlock(b Block) {
	now := time.Now()
	a := b.Addr.As4()
	s.mu.Lock()
	s.arrived[uint32(a[1])<<16|uint32(a[2])<<8|uint32(a[3])] = now
	s.mu.Unlock()
	s.count.Add(1)
}

func (s *scaleSink) FleetUnblock(Lift) {}

// scaleAddr is the address of index i (phase in the top byte).
func scaleAddr(i uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// scaleFleet is the simulated fleet.
type scaleFleet struct {
	topo   scaleTopo
	srv    []*scaleServer // the cluster's, or the hub's
	leaves []*scaleServer // one a site
	keys   string         // the hosts' seeds: <name>.nk
	ctx    context.Context
	wg     sync.WaitGroup
	hosts  []*Client
	sinks  []*scaleSink
	sent   []uint32     // every block's index the hosts published
	api    atomic.Int64 // JetStream API requests seen
	mu     sync.Mutex
	kinds  map[string]int // API requests by subject, the stream's name cut off
	joiner string         // the inbox prefix of the host that joins
	joined atomic.Int64   // its API requests
	// counters: fleet.correlate.counters of every host (none: each counts)
	counters []string
	// warnings: the hosts' warnings, by message and error
	warnings warnCounter
}

// warnCounter is a slog.Handler that counts warnings by message and
// error (its first 60 bytes).
type warnCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (w *warnCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnCounter) WithAttrs([]slog.Attr) slog.Handler           { return w }
func (w *warnCounter) WithGroup(string) slog.Handler                { return w }
func (w *warnCounter) Handle(_ context.Context, r slog.Record) error {
	k := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			e := a.Value.String()
			k += ": " + e[:min(len(e), 60)]
		}
		return true
	})
	w.mu.Lock()
	if w.n == nil {
		w.n = map[string]int{}
	}
	w.n[k]++
	w.mu.Unlock()
	return nil
}

// take returns the counts so far and starts again.
func (w *warnCounter) take() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.n
	w.n = nil
	return n
}

func sumCPU(srv []*scaleServer) time.Duration {
	var t time.Duration
	for _, s := range srv {
		t += s.cpu()
	}
	return t
}

func (f *scaleFleet) cpu() cpuUse { return cpuUse{selfCPU(), sumCPU(f.srv), sumCPU(f.leaves)} }

// readyWithin bounds the fleet's cold start.
var readyWithin = 3 * time.Minute

// startScaleFleet starts the servers with users for n hosts and one to
// join, makes the buckets as the administrator, counts the API requests
// (on the hub and each leaf), and starts n hosts at once; it returns once
// all are ready, and how long that took.
func startScaleFleet(b *testing.B, bin string, n int, topo scaleTopo) (*scaleFleet, time.Duration) {
	f := &scaleFleet{topo: topo, kinds: map[string]int{}}
	if n > 20 {
		// As docs/fleet.md advises past ~20 hosts: three hosts count the
		// sightings, not every host.
		f.counters = []string{"s1", "s2", "s3"}
	}
	if topo.sites == 0 {
		f.srv, f.keys = startScaleCluster(b, bin, n+1)
	} else {
		f.srv, f.leaves, f.keys = startScaleLeaves(b, bin, n+1, topo.sites)
	}
	admin := waitAdmin(b, urlsOf(f.srv))
	f.countAPI(b, admin)
	for _, l := range f.leaves {
		f.countAPI(b, waitAdmin(b, []string{l.url}))
	}
	makeScaleBuckets(b, admin, topo.consumers)
	f.api.Store(0)
	ctx, cancel := context.WithCancel(context.Background())
	f.ctx = ctx
	b.Cleanup(func() { cancel(); f.wg.Wait() })
	start := time.Now()
	for i := range n {
		c, sink := f.startHost(b, i)
		f.hosts, f.sinks = append(f.hosts, c), append(f.sinks, sink)
	}
	for _, c := range f.hosts {
		waitReady(b, c)
	}
	return f, time.Since(start)
}

func urlsOf(srv []*scaleServer) []string {
	var urls []string
	for _, s := range srv {
		urls = append(urls, s.url)
	}
	return urls
}

func waitReady(b testing.TB, c *Client) {
	select {
	case <-c.Ready():
	case <-time.After(readyWithin):
		b.Fatalf("%s not ready after %s: %+v", c.Name(), readyWithin, c.Stats())
	}
}

// countAPI counts, on the administrator's connection nc, the JetStream
// API requests of its server (the cluster, the hub, or a leaf), and the
// joining host's apart.
func (f *scaleFleet) countAPI(b testing.TB, nc *nats.Conn) {
	if _, err := nc.Subscribe("$JS.API.>", func(m *nats.Msg) {
		f.api.Add(1)
		k := m.Subject
		if i := strings.Index(k, ".KV_"); i > 0 {
			k = k[:i]
		}
		f.mu.Lock()
		f.kinds[k]++
		if f.joiner != "" && strings.HasPrefix(m.Reply, f.joiner) {
			f.joined.Add(1)
		}
		f.mu.Unlock()
	}); err != nil {
		b.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		b.Fatal(err)
	}
}

// startHost starts host i (s<i+1>): in the cluster it lists the three
// servers, starting with a different one per host; at a site its leaf
// only, with the hub's domain and its site's.
func (f *scaleFleet) startHost(b testing.TB, i int) (*Client, *scaleSink) {
	name := fmt.Sprintf("s%d", i+1)
	sink := &scaleSink{arrived: map[uint32]time.Time{}}
	cfg := testCfg(name)
	if f.topo.sites == 0 {
		urls := urlsOf(f.srv)
		cfg.Servers = []string{urls[i%3], urls[(i+1)%3], urls[(i+2)%3]}
	} else {
		k := siteOf(i, f.topo.sites)
		cfg.Servers = []string{f.leaves[k].url}
		cfg.Domain, cfg.LocalDomain = "hub", siteDomainN(k)
	}
	cfg.NKey = filepath.Join(f.keys, name+".nk")
	cfg.Correlate.Counters = f.counters
	c, err := New(cfg, Options{Sink: sink, Logger: slog.New(&f.warnings), Replicas: 3})
	if err != nil {
		b.Fatal(err)
	}
	f.wg.Go(func() { _ = c.Run(f.ctx) })
	return c, sink
}

// makeScaleBuckets makes the buckets as the administrator, once the
// cluster has a leader.
func makeScaleBuckets(b testing.TB, admin *nats.Conn, consumers bool) {
	js, _ := jetstream.New(admin)
	for _, bucket := range Buckets {
		l := BucketLimits{Hosts: DefaultFleetSize, Replicas: 3, MaxTimeout: 7 * 24 * time.Hour, Window: 10 * time.Minute}
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			kc := BucketConfig(bucket, l)
			if consumers {
				kc.RePublish = nil
			}
			_, err := js.CreateKeyValue(ctx, kc)
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("bucket %s: %v", bucket, err)
			}
		}
	}
}

// waitAdmin connects as the administrator once the cluster answers.
func waitAdmin(b testing.TB, urls []string) *nats.Conn {
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		nc, err := nats.Connect(strings.Join(urls, ","), deployAuth(b, "admin"))
		if err == nil {
			b.Cleanup(nc.Close)
			return nc
		}
		if time.Now().After(deadline) {
			b.Fatalf("admin: %v", err)
		}
	}
}

// waitAll waits until every host but the first has the blocks of indexes
// idx, and returns, per host, when it had the last of them. It fails the
// benchmark when a host misses one after within.
func (f *scaleFleet) waitAll(b testing.TB, what string, idx []uint32, within time.Duration) (done []time.Time) {
	return waitSinks(b, what, f.sinks[1:], idx, within)
}

// waitSinks waits until every sink has the blocks of indexes idx, and
// returns, per sink, when it had the last of them; it fails when a sink
// misses one after within.
func waitSinks(b testing.TB, what string, sinks []*scaleSink, idx []uint32, within time.Duration) (done []time.Time) {
	deadline := time.Now().Add(within)
	for {
		done = done[:0]
		missing, short := 0, 0
		for _, s := range sinks {
			last, m := s.last(idx)
			done = append(done, last)
			missing += m
			if m > 0 {
				short++
			}
		}
		if missing == 0 {
			return done
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d of %d hosts miss blocks after %s, %d deliveries in all", what, short, len(sinks), within, missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// last is when the sink had the last of the blocks idx, and how many it
// misses.
func (s *scaleSink) last(idx []uint32) (last time.Time, missing int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, i := range idx {
		t, ok := s.arrived[i]
		if !ok {
			missing++
			continue
		}
		if t.After(last) {
			last = t
		}
	}
	return last, missing
}

// publish has the first host publish the block of index x.
func (f *scaleFleet) publish(x uint32) {
	f.sent = append(f.sent, x)
	f.hosts[0].Publish(Block{Addr: scaleAddr(x), Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
}

// single publishes count blocks from the first host at rate a second and
// returns every other host's latency of each.
func (f *scaleFleet) single(b testing.TB, phase uint32, count int, rate int) (lat []time.Duration) {
	var idx []uint32
	sent := map[uint32]time.Time{}
	for i := range count {
		x := phase<<16 | uint32(i)
		idx = append(idx, x)
		sent[x] = time.Now()
		f.publish(x)
		time.Sleep(time.Second / time.Duration(rate))
	}
	f.waitAll(b, fmt.Sprintf("single blocks (phase %d)", phase), idx, 60*time.Second)
	for _, s := range f.sinks[1:] {
		s.mu.Lock()
		for _, x := range idx {
			lat = append(lat, s.arrived[x].Sub(sent[x]))
		}
		s.mu.Unlock()
	}
	slices.Sort(lat)
	return lat
}

// sightings has the hosts, in turn, report a tripwire probe of a new
// address each, rate a second (no address is seen twice: nothing
// correlates), until the returned stop is called.
func (f *scaleFleet) sightings(rate int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second / time.Duration(rate))
		defer t.Stop()
		for i := uint32(0); ; i++ {
			select {
			case <-done:
				return
			case <-t.C:
				f.hosts[int(i)%len(f.hosts)].Sighting(scaleAddr(5<<16 | i&0xffff))
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// burst publishes count blocks from the first host at once and returns
// how long until every other host had them all.
func (f *scaleFleet) burst(b testing.TB, phase uint32, count int, within time.Duration) time.Duration {
	start := time.Now()
	var idx []uint32
	for i := range count {
		x := phase<<16 | uint32(i)
		idx = append(idx, x)
		f.publish(x)
	}
	done := f.waitAll(b, fmt.Sprintf("a burst of %d blocks", count), idx, within)
	return latest(done).Sub(start)
}

// live sums the hosts' buckets followed live, and their gaps.
func (f *scaleFleet) live() (buckets int, gaps uint64) {
	for _, c := range f.hosts {
		st := c.Stats()
		buckets, gaps = buckets+st.Live, gaps+st.LiveGaps
	}
	return buckets, gaps
}

func (f *scaleFleet) reconnects() (n uint64) {
	for _, c := range f.hosts {
		n += c.Stats().Reconnects
	}
	return n
}

func (f *scaleFleet) records() []uint64 {
	var out []uint64
	for _, c := range f.hosts {
		out = append(out, c.st.records.Load())
	}
	return out
}

func pct(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	return lat[min(len(lat)-1, int(float64(len(lat))*p))]
}

// runFleetScale measures one row.
func runFleetScale(b *testing.B, bin string, n int, topo scaleTopo) scaleResult {
	r := scaleResult{n: n, topo: topo}
	f, cold := startScaleFleet(b, bin, n, topo)
	r.cold = cold
	time.Sleep(5 * time.Second) // settle
	deliveries := func(blocks int) float64 { return float64(blocks * (n - 1)) }

	mark, start := f.cpu(), time.Now()
	lat := f.single(b, 1, 20, 5)
	r.p50, r.p99 = pct(lat, 0.5), pct(lat, 0.99)
	r.single = f.cpu().sub(mark).div(deliveries(20))
	singleTook := time.Since(start)

	stop := f.sightings(100)
	lat = f.single(b, 4, 20, 5)
	stop()
	r.p99Sighted = pct(lat, 0.99)

	// The stretch goal's rate: at 20 blocks a second.
	lat = f.single(b, 7, 40, 20)
	fmt.Printf("%s N=%d: one block at 20/s: p50 %s, p99 %s\n", topo, n, pct(lat, 0.5).Round(100*time.Microsecond), pct(lat, 0.99).Round(100*time.Microsecond))

	mark = f.cpu()
	r.burst = f.burst(b, 2, 1000, 3*time.Minute)
	r.burstCPU = f.cpu().sub(mark).div(deliveries(1000))

	time.Sleep(3 * time.Second)
	r.idleAPI, r.idleCPU = f.idle(30 * time.Second)
	idleShare := r.idleCPU.div(deliveries(20) / float64(n) / singleTook.Seconds())
	fmt.Printf("%s N=%d: CPU per delivery, single, less the idle CPU of the %s: %s\n",
		topo, n, singleTook.Round(time.Millisecond), r.single.sub(idleShare).cell(topo))
	r.reconnects = f.reconnects()
	live, gaps := f.live()
	fmt.Printf("%s N=%d: buckets followed live: %d (at most 2 a host: lifts, blocks); live gaps (caught up through a consumer): %d\n", topo, n, live, gaps)
	fmt.Printf("%s N=%d: warnings before the restart: %v\n", topo, n, f.warnings.take())
	r.restart, r.restartRecords = f.restartOne(b, 3)
	fmt.Printf("%s N=%d: warnings from the restart on: %v\n", topo, n, f.warnings.take())
	r.join, r.joinAPI = f.join(b, 6, 10000)
	fmt.Printf("%s N=%d: warnings from the join on: %v\n", topo, n, f.warnings.take())
	return r
}

// idle returns the JetStream API requests a second per host over d
// without any block, and the CPU a second per host.
func (f *scaleFleet) idle(d time.Duration) (api float64, cpu cpuUse) {
	n := len(f.hosts)
	before, mark := f.api.Load(), f.cpu()
	f.mu.Lock()
	clear(f.kinds)
	f.mu.Unlock()
	time.Sleep(d)
	api = float64(f.api.Load()-before) / d.Seconds() / float64(n)
	cpu = f.cpu().sub(mark).div(d.Seconds() * float64(n))
	f.mu.Lock()
	fmt.Printf("%s N=%d: idle API requests by kind: %v\n", f.topo, n, f.kinds)
	f.mu.Unlock()
	return api, cpu
}

// restartOne stops the second server (of the hub), publishes 100 blocks
// at 20 a second from the first host (connected elsewhere), starts the
// server again halfway, and returns how long from the restart until every
// host had every block, and the most records a host's watches delivered
// meanwhile (a full replay of the blocks bucket is 1000 and more).
func (f *scaleFleet) restartOne(b testing.TB, phase uint32) (time.Duration, uint64) {
	before := f.records()
	var idx []uint32
	f.srv[1].stop()
	var restarted time.Time
	for i := range 100 {
		if i == 50 {
			f.srv[1].start(b)
			restarted = time.Now()
		}
		x := phase<<16 | uint32(i)
		idx = append(idx, x)
		f.publish(x)
		time.Sleep(50 * time.Millisecond)
	}
	done := f.waitAll(b, "blocks around a server's restart", idx, 2*time.Minute)
	var most uint64
	for i, r := range f.records() {
		most = max(most, r-before[i])
	}
	return latest(done).Sub(restarted), most
}

// join has the first host publish count blocks more, waits until every
// host has them, then starts a new host (at the next site) and returns
// how long until it held every block of the run, and the JetStream API
// requests it made meanwhile.
func (f *scaleFleet) join(b testing.TB, phase uint32, count int) (time.Duration, int64) {
	held := f.burst(b, phase, count, 5*time.Minute)
	fmt.Printf("%s N=%d: %d blocks more: every host had them after %s\n", f.topo, len(f.hosts), count, held.Round(time.Millisecond))
	name := fmt.Sprintf("s%d", len(f.hosts)+1)
	f.mu.Lock()
	f.joiner = "_INBOX_" + name + "."
	f.mu.Unlock()
	start := time.Now()
	c, sink := f.startHost(b, len(f.hosts))
	waitReady(b, c)
	ready := time.Since(start)
	done := waitSinks(b, name+" joining", []*scaleSink{sink}, f.sent, 3*time.Minute)
	took := latest(done).Sub(start)
	api := f.joined.Load()
	fmt.Printf("%s N=%d: %s joined: ready after %s, held all %d blocks after %s, %d API requests\n",
		f.topo, len(f.hosts), name, ready.Round(time.Millisecond), len(f.sent), took.Round(time.Millisecond), api)
	return took, api
}

func latest(ts []time.Time) time.Time {
	var l time.Time
	for _, t := range ts {
		if t.After(l) {
			l = t
		}
	}
	return l
}
