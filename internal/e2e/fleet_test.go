package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// The fleet's kernel tier: on one LAN (namespaces joined by a bridge) the
// 3-node NATS cluster of deploy/nats (its files as they are; only the
// addresses are given on the command line), each server in a namespace of
// its own as the administrator runs them, three hosts running the daemon
// with a fleet section, and a scanner. A partition can so cut off a host
// (its daemon), a server, or both.

// Addresses on the fleet's LAN.
const (
	fleetScanner  = "10.201.0.99"
	fleetHostList = "10.201.0.1, 10.201.0.2, 10.201.0.3" // h1-h3, fleet.hosts
	natsClient    = 4222
	natsRoute     = 6222
)

var (
	natsOnce sync.Once
	natsBin  string
	natsErr  error
)

// natsServerBinary builds the nats-server pinned as a tool in go.mod, once
// per run (never an embedded server: the kernel tier runs the real one).
func natsServerBinary(t testing.TB) string {
	t.Helper()
	natsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "portsentry-nft-nats")
		if err != nil {
			natsErr = err
			return
		}
		natsBin = filepath.Join(dir, "nats-server")
		cmd := exec.Command("go", "build", "-o", natsBin, "github.com/nats-io/nats-server/v2")
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			natsErr = fmt.Errorf("go build nats-server: %v\n%s", err, out)
		}
	})
	if natsErr != nil {
		t.Fatal(natsErr)
	}
	return natsBin
}

// serverAddr is the LAN address of server n (1-3).
func serverAddr(n int) string { return fmt.Sprintf("10.201.0.%d", 10+n) }

// natsServer is one server of the cluster, in a namespace of its own.
type natsServer struct {
	t    testing.TB
	ns   *netnstest.NS
	n    int // 1, 2, 3: deploy/nats/nN.conf
	addr string
	dir  string // its working directory (store_dir is relative)
	cmd  *exec.Cmd
	out  *netnstest.Output
	done chan struct{}
}

func (s *natsServer) start() {
	s.t.Helper()
	conf, err := filepath.Abs(fmt.Sprintf("../../deploy/nats/n%d.conf", s.n))
	if err != nil {
		s.t.Fatal(err)
	}
	var routes []string
	for i := 1; i <= 3; i++ {
		routes = append(routes, fmt.Sprintf("nats://%s:%d", serverAddr(i), natsRoute))
	}
	s.out = &netnstest.Output{}
	s.cmd = s.ns.Command(context.Background(), natsServerBinary(s.t), "-c", conf,
		"-a", s.addr, "-p", fmt.Sprint(natsClient),
		"--cluster", fmt.Sprintf("nats://%s:%d", s.addr, natsRoute), "--routes", strings.Join(routes, ","))
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.done = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := s.ns.Dial(context.Background(), "tcp", fmt.Sprintf("%s:%d", s.addr, natsClient))
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("n%d does not listen on %s:%d:\n%s", s.n, s.addr, natsClient, s.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop kills the server and waits for it.
func (s *natsServer) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.t.Errorf("n%d did not exit after SIGKILL", s.n)
	}
	s.cmd = nil
}

// fleetHost is one host of the fleet: its namespace and daemon, and the
// server it lists first.
type fleetHost struct {
	name, addr string
	ns         *netnstest.NS
	d          *daemon
	srv        *natsServer
}

type fleetLAN struct {
	lan     *netnstest.LAN
	hosts   []*fleetHost
	scanner *netnstest.NS
}

// newFleetLAN makes the LAN, the cluster and the three daemons: daemonYAML
// is added to each daemon's configuration, fleetYAML to its fleet section
// (indented keys such as "  correlate: {hosts: 3}\n"), which lists the
// three hosts in fleet.hosts as the administrator would. It returns once
// every daemon mirrored the fleet (its buckets exist and were read).
func newFleetLAN(t testing.TB, daemonYAML, fleetYAML string) *fleetLAN {
	t.Helper()
	netnstest.Require(t, "nmap", "hping3")
	natsServerBinary(t)
	f := &fleetLAN{lan: netnstest.NewLAN(t)}
	for i := 1; i <= 3; i++ {
		h := &fleetHost{name: fmt.Sprintf("h%d", i), addr: fmt.Sprintf("10.201.0.%d", i)}
		h.ns, _ = f.lan.Join("psF"+h.name, h.addr)
		f.hosts = append(f.hosts, h)
	}
	f.scanner, _ = f.lan.Join("psFscan", fleetScanner)
	// The servers start together: each waits for its routes.
	var wg sync.WaitGroup
	for i, h := range f.hosts {
		ns, _ := f.lan.Join(fmt.Sprintf("psFn%d", i+1), serverAddr(i+1))
		h.srv = &natsServer{t: t, ns: ns, n: i + 1, addr: serverAddr(i + 1), dir: t.TempDir()}
		t.Cleanup(h.srv.stop)
		wg.Go(h.srv.start)
	}
	wg.Wait()
	for i, h := range f.hosts {
		// Each host lists the servers starting with "its" own (the
		// library then shuffles them).
		var urls []string
		for j := range 3 {
			urls = append(urls, fmt.Sprintf("nats://%s:%d", f.hosts[(i+j)%3].srv.addr, natsClient))
		}
		yaml := daemonYAML + fmt.Sprintf("fleet:\n  servers: [%s]\n  name: %s\n  nkey: %s\n  hosts: [%s]\n",
			strings.Join(urls, ", "), h.name, exampleSeed(t, h.name), fleetHostList) + fleetYAML
		h.d = startDaemon(t, h.ns, yaml)
	}
	// A new cluster elects its leaders before the first host creates the
	// buckets (see internal/fleet TestDeployCluster): allow for it.
	for _, h := range f.hosts {
		h.d.waitLog("fleet: mirrored the fleet", 90*time.Second)
	}
	return f
}

// dump logs the servers' output, for a failed test.
func (f *fleetLAN) dump(t testing.TB) {
	for _, h := range f.hosts {
		t.Logf("== %s daemon:\n%s", h.name, h.d.out)
		if st, err := h.d.cli("status"); err == nil {
			t.Logf("== %s status:\n%s", h.name, st)
		}
		if h.srv.out != nil {
			t.Logf("== n%d:\n%s", h.srv.n, h.srv.out)
		}
	}
}

// counter reads one counter of the daemon's status.
func counter(t testing.TB, d *daemon, name string) uint64 {
	t.Helper()
	st := daemonStatus(t, d)
	v, ok := st.Counters[name]
	if !ok {
		t.Fatalf("status has no counter %s: %v", name, st.Counters)
	}
	return v
}

// waitElements polls each host's set for addr and returns when each one
// has it (measured from start); a zero duration: not within `within`.
func waitElements(t testing.TB, hosts []*fleetHost, addr string, start time.Time, within time.Duration) []time.Duration {
	t.Helper()
	took := make([]time.Duration, len(hosts))
	for left := len(hosts); left > 0 && time.Since(start) < within; {
		for i, h := range hosts {
			if took[i] == 0 && netnstest.ElementLine(listSet(t, h.ns, "blocked"), addr) != "" {
				took[i] = time.Since(start)
				left--
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return took
}

// No amplification: one SYN forged from a victim's address at host 1's
// tripwire blocks the victim on host 1 only (PortSentry's contract), never
// on hosts 2 and 3 (before, on all three within 0.3 s, for an hour). An nmap
// scan of host 1 is blocked there and stays there too: probes are
// forgeable. An administrator's block on host 1 is on every host, with
// origin fleet and host 1 named in their list.
func TestFleetForgedProbeStaysOnOneHost(t *testing.T) {
	f := newFleetLAN(t, "", "  correlate: {hosts: 0}\n")
	h1, others := f.hosts[0], f.hosts[1:]
	const victim, admin = "10.201.0.97", "10.201.0.96"
	hping(t, f.scanner, "-S", "-c", "1", "-p", "1", "-a", victim, h1.addr)
	waitBlocked(t, h1.ns, "blocked", victim, 5*time.Second)
	nmap(t, f.scanner, "-sS", "-p", "1,11,15,79", h1.addr)
	waitBlocked(t, h1.ns, "blocked", fleetScanner, 5*time.Second)
	start := time.Now()
	if out, err := h1.d.cli("block", admin); err != nil {
		t.Fatalf("block: %v %s", err, out)
	}
	took := waitElements(t, f.hosts, admin, start, 20*time.Second)
	for i, d := range took {
		if d == 0 {
			f.dump(t)
			t.Fatalf("%s never blocked the administrator's %s: %v", f.hosts[i].name, admin, took)
		}
	}
	t.Logf("administrator's block on h1 to element: h1 %s, h2 %s, h3 %s", took[0], took[1], took[2])
	time.Sleep(time.Second) // the forged blocks would have arrived long before
	for _, h := range others {
		assertNotBlocked(t, h.ns, victim)
		assertNotBlocked(t, h.ns, fleetScanner)
		out, err := h.d.cli("list")
		if err != nil {
			t.Fatalf("%s list: %v %s", h.name, err, out)
		}
		if line := listLine(out, admin); !strings.Contains(line, "fleet") || !strings.Contains(line, "from h1") {
			t.Errorf("%s list shows %s without origin fleet from h1:\n%s", h.name, admin, out)
		}
		if n := counter(t, h.d, "fleet_mirrored"); n < 1 {
			t.Errorf("%s fleet_mirrored %d", h.name, n)
		}
	}
	if n := counter(t, h1.d, "fleet_published"); n < 1 {
		t.Errorf("h1 fleet_published %d", n)
	}
}

// listLine is the line of list's output that names addr.
func listLine(out, addr string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, addr) {
			return l
		}
	}
	return ""
}

// A scanner that touches K hosts (correlate.hosts 2, the default first
// strike blocking it on each) is on every host: the third host blocks it
// from the two hosts' sightings, which it counts itself.
func TestFleetScanOfKHostsBlocksEveryHost(t *testing.T) {
	f := newFleetLAN(t, "", "  correlate: {hosts: 2}\n")
	h1, h2, h3 := f.hosts[0], f.hosts[1], f.hosts[2]
	nmap(t, f.scanner, "-sS", "-p", "1,11,15,79", h1.addr)
	time.Sleep(500 * time.Millisecond)
	assertNotBlocked(t, h3.ns, fleetScanner)
	start := time.Now()
	nmap(t, f.scanner, "-sS", "-p", "1,11,15,79", h2.addr)
	took := waitElements(t, []*fleetHost{h3}, fleetScanner, start, 10*time.Second)
	if took[0] == 0 {
		f.dump(t)
		t.Fatalf("h3 never blocked %s, which scanned h1 and h2", fleetScanner)
	}
	t.Logf("second host's scan to h3's element: %s", took[0])
	h3.d.waitLog(fmt.Sprintf("attackalert: Host %s probed 2 hosts of the fleet", fleetScanner), 5*time.Second)
}

// With correlate.hosts 3 and scan_trigger 3, one tripwire probe on each
// host blocks nobody locally, and the third host's sighting blocks the
// source on all three, each counting the sightings itself, with the
// correlated alert line on each.
func TestFleetCorrelatedProbesBlockEveryHost(t *testing.T) {
	f := newFleetLAN(t, "detect: {scan_trigger: 3}\n", "  correlate: {hosts: 3}\n")
	for i, h := range f.hosts {
		hping(t, f.scanner, "-S", "-c", "1", "-p", "1", h.addr)
		if i < 2 {
			time.Sleep(300 * time.Millisecond)
			for _, o := range f.hosts {
				assertNotBlocked(t, o.ns, fleetScanner)
			}
		}
	}
	start := time.Now()
	took := waitElements(t, f.hosts, fleetScanner, start, 10*time.Second)
	for i, d := range took {
		if d == 0 {
			f.dump(t)
			t.Fatalf("%s never blocked %s after one probe on each host: %v", f.hosts[i].name, fleetScanner, took)
		}
	}
	t.Logf("third probe to element: h1 %s, h2 %s, h3 %s", took[0], took[1], took[2])
	for _, h := range f.hosts {
		h.d.waitLog(fmt.Sprintf("attackalert: Host %s probed 3 hosts of the fleet (h1, h2, h3) within 10m0s; blocked on every host", fleetScanner), 5*time.Second)
	}
	// Each host blocked it on its own count (no counters named), once.
	for _, h := range f.hosts {
		if n := counter(t, h.d, "fleet_correlated"); n != 1 {
			t.Errorf("%s: fleet_correlated %d, want 1", h.name, n)
		}
	}
}

// cut drops the NATS traffic (client and route ports) between ns (a
// host's or a server's) and the LAN, in a table of its own; the scanner
// still reaches a host.
func cut(t testing.TB, ns *netnstest.NS) (heal func()) {
	t.Helper()
	rules := fmt.Sprintf(`table inet fleetcut {
	chain in { type filter hook input priority -300; policy accept; iifname "lan0" tcp dport { %[1]d, %[2]d } drop; iifname "lan0" tcp sport { %[1]d, %[2]d } drop; }
	chain out { type filter hook output priority -300; policy accept; oifname "lan0" tcp dport { %[1]d, %[2]d } drop; oifname "lan0" tcp sport { %[1]d, %[2]d } drop; }
}
`, natsClient, natsRoute)
	file := filepath.Join(t.TempDir(), "cut.nft")
	if err := os.WriteFile(file, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	ns.MustRun("nft", "-f", file)
	return func() { ns.MustRun("nft", "delete", "table", "inet", "fleetcut") }
}

// Host 3 and server n3 cut off from the rest (as where each host runs a
// server of the cluster): host 3 still blocks a scan of itself; after the
// cut heals its administrator's block reaches hosts 1 and 2, and host 1's
// made during the cut reaches host 3.
func TestFleetPartitionHeals(t *testing.T) {
	f := newFleetLAN(t, "", "")
	h1, h2, h3 := f.hosts[0], f.hosts[1], f.hosts[2]
	healHost, healServer := cut(t, h3.ns), cut(t, h3.srv.ns)
	heal := func() { healHost(); healServer() }
	// Host 3's scan, blocked locally within the usual time; its
	// administrator blocks the scanner fleet-wide (a scan's probes are
	// forgeable: they stay on the host).
	start := time.Now()
	nmap(t, f.scanner, "-sS", "-p", "1,11,15,79", h3.addr)
	el := waitBlocked(t, h3.ns, "blocked", fleetScanner, 5*time.Second)
	t.Logf("h3 blocked the scanner while cut off (%s after the scan's start): %s", time.Since(start).Round(time.Millisecond), el)
	if out, err := h3.d.cli("block", fleetScanner, "--timeout", "2h"); err != nil {
		t.Fatalf("block: %v %s", err, out)
	}
	// Host 1's administrator blocks another address meanwhile.
	const other = "10.201.0.98"
	// The majority (n1, n2) may have to elect new stream leaders first:
	// seconds, but with packets dropped (no reset) nats-server 2.15.2 has
	// also gone without a leader for the whole of a 30 s cut. So this is
	// measured, not required; the heal below must bring it everywhere.
	if out, err := h1.d.cli("block", other); err != nil {
		t.Fatalf("block: %v %s", err, out)
	}
	waitBlocked(t, h1.ns, "blocked", other, 5*time.Second)
	sent := time.Now()
	if took := waitElements(t, []*fleetHost{h2}, other, sent, 15*time.Second); took[0] == 0 {
		t.Logf("h1's block of %s did not reach h2 within 15 s during the cut (the majority had no stream leader)", other)
	} else {
		t.Logf("h1's block reached h2 during the cut in %s", took[0])
	}
	// The cut holds: nothing crosses it.
	time.Sleep(3 * time.Second)
	assertNotBlocked(t, h1.ns, fleetScanner)
	assertNotBlocked(t, h2.ns, fleetScanner)
	assertNotBlocked(t, h3.ns, other)

	heal()
	healed := time.Now()
	toH1H2 := waitElements(t, []*fleetHost{h1, h2}, fleetScanner, healed, 60*time.Second)
	toH2H3 := waitElements(t, []*fleetHost{h2, h3}, other, healed, 60*time.Second)
	if toH1H2[0] == 0 || toH1H2[1] == 0 || toH2H3[1] == 0 {
		f.dump(t)
		t.Fatalf("after the heal (60 s): h3's block on h1 %s, h2 %s; h1's block on h3 %s (0: never)", toH1H2[0], toH1H2[1], toH2H3[1])
	}
	t.Logf("heal to convergence: h3's block on h1 %s, on h2 %s; h1's block on h2 %s, on h3 %s", toH1H2[0], toH1H2[1], toH2H3[0], toH2H3[1])
	for i, h := range f.hosts {
		t.Logf("h%d: live gaps %d, reconnects %d, published %d", i+1, counter(t, h.d, "fleet_live_gaps"), counter(t, h.d, "fleet_reconnects"), counter(t, h.d, "fleet_published"))
	}
}

// The server host 1 talks to is cut off from everything (a partition that
// drops packets: no reset reaches anyone) while host 1 publishes a burst:
// host 1 leaves it for a server it can reach within seconds (the library
// alone would hold on for a minute or more), and its blocks reach host 2.
func TestFleetHostLeavesACutOffServer(t *testing.T) {
	f := newFleetLAN(t, "block: {max_per_second: 100000}\n", "")
	h1, h2 := f.hosts[0], f.hosts[1]
	m := regexp.MustCompile(`fleet: connected fleet=h1 server=nats://(10\.201\.0\.1[123]):`).FindStringSubmatch(h1.d.out.String())
	if m == nil {
		t.Fatalf("no connected line of h1:\n%s", h1.d.out)
	}
	var srv *natsServer
	for _, h := range f.hosts {
		if h.srv.addr == m[1] {
			srv = h.srv
		}
	}
	heal := cut(t, srv.ns)
	cutAt := time.Now()
	list := addrFile(t, 2000, 240)
	if out, err := h1.d.cli("block", "--file", list); err != nil {
		t.Fatalf("block --file: %v %s", err, out)
	}
	h1.d.waitLog("fleet: reconnected fleet=h1", 20*time.Second)
	t.Logf("h1 left n%d %s after the cut", srv.n, time.Since(cutAt).Round(time.Millisecond))
	if strings.Contains(h1.d.out.String(), "fleet: reconnected fleet=h1 server=nats://"+srv.addr) {
		t.Fatalf("h1 reconnected to the server that is cut off:\n%s", h1.d.out)
	}
	// Hosts 1 and 2 with the other two servers: the blocks reach host 2
	// once those two have stream leaders (usually during the cut), at the
	// latest after the heal.
	files := h2.ns.Open()
	during := waitCount(t, files, 2000, cutAt, 30*time.Second)
	heal()
	if during == 0 {
		t.Logf("the blocks did not reach h2 within 30 s of the cut (the two servers elected no stream leader meanwhile)")
		if waitCount(t, files, 2000, time.Now(), 60*time.Second) == 0 {
			f.dump(t)
			t.Fatalf("h2 has %d of h1's 2000 blocks 60 s after the heal", countElements(t, files, nft.SetBlocked))
		}
	} else {
		t.Logf("h2 had h1's 2000 blocks %s after the cut", during)
	}
}

// waitCount waits until the set blocked in f has at least n elements; the
// time since start, 0 if not within `within` of start.
func waitCount(t testing.TB, f *os.File, n int, start time.Time, within time.Duration) time.Duration {
	for time.Since(start) < within {
		if countElements(t, f, nft.SetBlocked) >= n {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0
}

// The whole cluster stopped: a scan of host 1 is blocked within the usual
// time, status shows fleet_connected 0, and an administrator's block waits
// in the outbox.
func TestFleetClusterDownBlocksLocally(t *testing.T) {
	f := newFleetLAN(t, "", "")
	h1 := f.hosts[0]
	if n := counter(t, h1.d, "fleet_connected"); n != 1 {
		t.Fatalf("fleet_connected %d before the cluster stops", n)
	}
	for _, h := range f.hosts {
		h.srv.stop()
	}
	deadline := time.Now().Add(10 * time.Second)
	for counter(t, h1.d, "fleet_connected") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("fleet_connected still 1 10 s after the cluster stopped")
		}
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	scan := make(chan string, 1)
	go func() { scan <- nmap(t, f.scanner, "-sS", "-p", "1,11,15,79", h1.addr) }()
	took := waitElements(t, f.hosts[:1], fleetScanner, start, 5*time.Second)
	<-scan
	if took[0] == 0 {
		t.Fatalf("h1 did not block %s within 5 s of the scan's start with the cluster down:\n%s", fleetScanner, h1.d.out)
	}
	t.Logf("blocked with the cluster down, %s after the scan's start", took[0])
	h1.d.waitLog(fmt.Sprintf("attackalert: Host %s has been blocked", fleetScanner), 5*time.Second)
	if n := counter(t, h1.d, "fleet_connected"); n != 0 {
		t.Errorf("fleet_connected %d with the cluster down", n)
	}
	if out, err := h1.d.cli("block", "10.201.0.95"); err != nil {
		t.Fatalf("block with the cluster down: %v %s", err, out)
	}
	if n := counter(t, h1.d, "fleet_outbox"); n < 1 {
		t.Errorf("fleet_outbox %d: the administrator's block should wait in the outbox", n)
	}
}

// S3: a forged single-probe flood at host 1 (set_size 1024) fills host 1's
// sets only; a real scan of host 2 afterwards is blocked there at once.
// Before, hosts 2 and 3 took host 1's 1,869 forged blocks as their own,
// their sets filled, and the scan of host 2 was never blocked (1024 of
// 1024 ports answered).
func TestFleetForgedFloodFillsNoOtherHost(t *testing.T) {
	f := newFleetLAN(t, "block: {set_size: 1024}\n", "  correlate: {hosts: 0}\n")
	h1, h2 := f.hosts[0], f.hosts[1]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	flood := f.scanner.Command(ctx, "timeout", "8", "hping3", "--rand-source", "-S", "--flood", "-p", "1", h1.addr)
	if err := flood.Run(); err != nil && ctx.Err() == nil && !strings.Contains(err.Error(), "exit status") {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	n1, n2 := countBlocked(h1.d), countBlocked(h2.d)
	t.Logf("after the flood: %d blocks on h1, %d on h2", n1, n2)
	if n1 < 500 || n2 != 0 {
		t.Errorf("%d blocks on h1 (want the flood's, at least 500), %d on h2 (want none)", n1, n2)
	}
	answers := countAnswers(t, h2.ns, fleetScanner)
	start := time.Now()
	scan := make(chan string, 1)
	go func() { scan <- nmap(t, f.scanner, "-sS", "-T4", "-p", "1-1024", h2.addr) }()
	took := waitElements(t, []*fleetHost{h2}, fleetScanner, start, 5*time.Second)
	time.Sleep(time.Second)
	answered := answers()
	t.Logf("the scan of h2: blocked after %s, %d of 1024 ports answered", took[0], answered)
	if took[0] == 0 || answered > 20 {
		f.dump(t)
		t.Errorf("the scan of h2 after h1's flood: blocked after %s (0: not within 5 s), %d ports answered; want blocked, at most 20", took[0], answered)
	}
	<-scan
}
