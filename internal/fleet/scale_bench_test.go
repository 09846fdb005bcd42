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
// process (no kernel), against a real 3-node cluster of nats-server
// processes on loopback with deploy/nats's files and permissions (its
// accounts.conf with one nkey user per host, made from h1's entry). It
// prints one row per
// N: one block to all others at 5 blocks/s (p50/p99), a 1000-block
// burst, the fleet's cold start, idle JetStream API requests a second
// per host, reconnects in the run without faults, and a restart of one
// server in the middle of a stream of blocks (time until every host has
// them all, records the watches delivered per host meanwhile). CPU per
// delivery: this process (all the clients) and the three servers.
//
//	go test -run '^$' -bench FleetScale -benchtime 1x ./internal/fleet
//	FLEET_SCALE_N=10,100,300,1000 go test ...
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
	bin := buildNATSServer(b)
	fmt.Println("| N | one block, 5/s: p50 / p99 | the same with 100 sightings/s: p99 | 1000-block burst: all hosts have all | cold start | idle API req/s per host | reconnects (no faults) | server restart: all have all / records per host (max) | CPU per delivery, single: client / servers | burst: client / servers |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for _, n := range ns {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				r := runFleetScale(b, bin, n)
				fmt.Println(r.row())
			}
		})
	}
}

// scaleResult is one row of BenchmarkFleetScale.
type scaleResult struct {
	n                          int
	p50, p99, burst, cold      time.Duration
	idleAPI                    float64
	reconnects                 uint64
	restart                    time.Duration
	restartRecords             uint64
	p99Sighted                 time.Duration // with 100 sightings a second
	singleCli, singleSrv       time.Duration // CPU per delivery
	burstCli, burstSrv         time.Duration
	singleMissing, burstMissed int
}

func (r scaleResult) row() string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	us := func(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d.Nanoseconds())/1000) }
	return fmt.Sprintf("| %d | %s / %s | %s | %s | %s | %.3f | %d | %s / %d | %s / %s | %s / %s |",
		r.n, ms(r.p50), ms(r.p99), ms(r.p99Sighted), ms(r.burst), ms(r.cold), r.idleAPI, r.reconnects,
		ms(r.restart), r.restartRecords, us(r.singleCli), us(r.singleSrv), us(r.burstCli), us(r.burstSrv))
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
	srv   []*scaleServer
	keys  string // the hosts' seeds: <name>.nk
	hosts []*Client
	sinks []*scaleSink
	api   atomic.Int64 // JetStream API requests seen
	mu    sync.Mutex
	kinds map[string]int // API requests by subject, the stream's name cut off
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

func (f *scaleFleet) serverCPU() time.Duration {
	var t time.Duration
	for _, s := range f.srv {
		t += s.cpu()
	}
	return t
}

// readyWithin bounds the fleet's cold start.
var readyWithin = 3 * time.Minute

// startScaleFleet starts the cluster, makes the buckets as the
// administrator, counts the API requests, and starts n hosts at once;
// it returns once all are ready, and how long that took.
func startScaleFleet(b *testing.B, bin string, n int) (*scaleFleet, time.Duration) {
	f := &scaleFleet{}
	f.srv, f.keys = startScaleCluster(b, bin, n)
	var urls []string
	for _, s := range f.srv {
		urls = append(urls, s.url)
	}
	admin := waitAdmin(b, urls)
	f.kinds = map[string]int{}
	if _, err := admin.Subscribe("$JS.API.>", func(m *nats.Msg) {
		f.api.Add(1)
		k := m.Subject
		if i := strings.Index(k, ".KV_"); i > 0 {
			k = k[:i]
		}
		f.mu.Lock()
		f.kinds[k]++
		f.mu.Unlock()
	}); err != nil {
		b.Fatal(err)
	}
	makeScaleBuckets(b, admin)
	f.api.Store(0)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b.Cleanup(func() { cancel(); wg.Wait() })
	start := time.Now()
	for i := range n {
		name := fmt.Sprintf("s%d", i+1)
		sink := &scaleSink{arrived: map[uint32]time.Time{}}
		cfg := testCfg(name)
		cfg.Servers = []string{urls[i%3], urls[(i+1)%3], urls[(i+2)%3]}
		cfg.NKey = filepath.Join(f.keys, name+".nk")
		c, err := New(cfg, Options{Sink: sink, Logger: slog.New(&f.warnings), Replicas: 3})
		if err != nil {
			b.Fatal(err)
		}
		f.hosts, f.sinks = append(f.hosts, c), append(f.sinks, sink)
		wg.Go(func() { _ = c.Run(ctx) })
	}
	for _, c := range f.hosts {
		select {
		case <-c.Ready():
		case <-time.After(readyWithin):
			b.Fatalf("%s not ready after %s: %+v", c.Name(), readyWithin, c.Stats())
		}
	}
	return f, time.Since(start)
}

// makeScaleBuckets makes the buckets as the administrator, once the
// cluster has a leader.
func makeScaleBuckets(b testing.TB, admin *nats.Conn) {
	js, _ := jetstream.New(admin)
	for _, bucket := range Buckets {
		l := BucketLimits{Hosts: DefaultFleetSize, Replicas: 3, MaxTimeout: 7 * 24 * time.Hour, Window: 10 * time.Minute}
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := js.CreateKeyValue(ctx, BucketConfig(bucket, l))
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
// idx, and returns, per host, when it had the last of them.
func (f *scaleFleet) waitAll(b testing.TB, idx []uint32, within time.Duration) (done []time.Time, missing int) {
	deadline := time.Now().Add(within)
	for {
		done, missing = done[:0], 0
		for _, s := range f.sinks[1:] {
			s.mu.Lock()
			var last time.Time
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
			s.mu.Unlock()
			done = append(done, last)
		}
		if missing == 0 || time.Now().After(deadline) {
			return done, missing
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// single publishes count blocks from the first host at rate a second and
// returns every other host's latency of each.
func (f *scaleFleet) single(b testing.TB, phase uint32, count int, rate int) (lat []time.Duration, missing int) {
	var idx []uint32
	sent := map[uint32]time.Time{}
	for i := range count {
		x := phase<<16 | uint32(i)
		idx = append(idx, x)
		sent[x] = time.Now()
		f.hosts[0].Publish(Block{Addr: scaleAddr(x), Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
		time.Sleep(time.Second / time.Duration(rate))
	}
	_, missing = f.waitAll(b, idx, 60*time.Second)
	for _, s := range f.sinks[1:] {
		s.mu.Lock()
		for _, x := range idx {
			if t, ok := s.arrived[x]; ok {
				lat = append(lat, t.Sub(sent[x]))
			}
		}
		s.mu.Unlock()
	}
	slices.Sort(lat)
	return lat, missing
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
func (f *scaleFleet) burst(b testing.TB, phase uint32, count int) (time.Duration, int) {
	start := time.Now()
	var idx []uint32
	for i := range count {
		x := phase<<16 | uint32(i)
		idx = append(idx, x)
		f.hosts[0].Publish(Block{Addr: scaleAddr(x), Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
	}
	done, missing := f.waitAll(b, idx, 3*time.Minute)
	return latest(done).Sub(start), missing
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
func runFleetScale(b *testing.B, bin string, n int) scaleResult {
	r := scaleResult{n: n}
	f, cold := startScaleFleet(b, bin, n)
	r.cold = cold
	time.Sleep(5 * time.Second) // settle
	deliveries := func(blocks int) time.Duration { return time.Duration(blocks * (n - 1)) }

	cli, srv := selfCPU(), f.serverCPU()
	lat, missing := f.single(b, 1, 20, 5)
	r.p50, r.p99, r.singleMissing = pct(lat, 0.5), pct(lat, 0.99), missing
	r.singleCli, r.singleSrv = (selfCPU()-cli)/deliveries(20), (f.serverCPU()-srv)/deliveries(20)

	stop := f.sightings(100)
	lat, missing = f.single(b, 4, 20, 5)
	stop()
	r.p99Sighted = pct(lat, 0.99)
	r.singleMissing += missing

	cli, srv = selfCPU(), f.serverCPU()
	r.burst, r.burstMissed = f.burst(b, 2, 1000)
	r.burstCli, r.burstSrv = (selfCPU()-cli)/deliveries(1000), (f.serverCPU()-srv)/deliveries(1000)

	time.Sleep(3 * time.Second)
	api := f.api.Load()
	f.mu.Lock()
	clear(f.kinds)
	f.mu.Unlock()
	const idle = 30 * time.Second
	time.Sleep(idle)
	r.idleAPI = float64(f.api.Load()-api) / idle.Seconds() / float64(n)
	f.mu.Lock()
	fmt.Printf("N=%d: idle API requests by kind: %v\n", n, f.kinds)
	f.mu.Unlock()
	r.reconnects = f.reconnects()
	fmt.Printf("N=%d: warnings before the restart: %v\n", n, f.warnings.take())
	if r.singleMissing > 0 || r.burstMissed > 0 {
		fmt.Printf("N=%d: missing %d single, %d burst deliveries\n", n, r.singleMissing, r.burstMissed)
	}
	r.restart, r.restartRecords = f.restartOne(b, 3)
	fmt.Printf("N=%d: warnings from the restart on: %v\n", n, f.warnings.take())
	return r
}

// restartOne stops the second server, publishes 100 blocks at 20 a
// second from the first host (connected elsewhere), starts the server
// again halfway, and returns how long from the restart until every host
// had every block, and the most records a host's watches delivered
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
		f.hosts[0].Publish(Block{Addr: scaleAddr(x), Expires: time.Now().Add(time.Hour), Origin: OriginDetect})
		time.Sleep(50 * time.Millisecond)
	}
	done, missing := f.waitAll(b, idx, 2*time.Minute)
	if missing > 0 {
		fmt.Printf("restart: %d deliveries missing after 2 minutes\n", missing)
	}
	var most uint64
	for i, r := range f.records() {
		most = max(most, r-before[i])
	}
	return latest(done).Sub(restarted), most
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
