package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// The leaf topology of deploy/nats/leaf, its files as they are (only the
// loopback addresses replaced by the LAN's): the hub cluster (hub1-hub3,
// JetStream domain hub) and one leaf server per site (leaf_a, domain
// site_a; leaf_b, site_b), each in a namespace of its own on one LAN,
// and the sites' hosts, which log in to their site's leaf only. A
// partition cuts the leaves' links to the hub (their leafnode port).

const leafPort = 7422

// hubAddr is hub server n's (1-3), leafAddr site s's leaf ('a', 'b').
func hubAddr(n int) string     { return fmt.Sprintf("10.201.0.%d", 10+n) }
func leafAddr(s byte) string   { return fmt.Sprintf("10.201.0.%d", 21+s-'a') }
func siteDomain(s byte) string { return "site_" + string(s) }

// natsProc is one nats-server run with a file of deploy/nats/leaf, copied
// with its addresses replaced into a directory of its own (the includes
// are relative, and so is store_dir).
type natsProc struct {
	t    testing.TB
	name string
	ns   *netnstest.NS
	addr string
	dir  string
	pid  int
	kill func()
	out  *netnstest.Output
	done chan struct{}
}

// leafFiles copies deploy/nats/leaf into dir, the loopback addresses of
// its files replaced by the LAN's: each server listens on its own
// address, with the same ports (4222, 6222, 7422) in every namespace.
func leafFiles(t testing.TB, dir string) {
	t.Helper()
	src, err := filepath.Abs("../../deploy/nats/leaf")
	if err != nil {
		t.Fatal(err)
	}
	var pairs []string
	for n := 1; n <= 3; n++ {
		pairs = append(pairs,
			fmt.Sprintf("127.0.0.1:%d", 4221+n), fmt.Sprintf("%s:4222", hubAddr(n)),
			fmt.Sprintf("127.0.0.1:%d", 6221+n), fmt.Sprintf("%s:6222", hubAddr(n)),
			fmt.Sprintf("127.0.0.1:%d", 7421+n), fmt.Sprintf("%s:%d", hubAddr(n), leafPort))
	}
	pairs = append(pairs, "127.0.0.1:4230", leafAddr('a')+":4222", "127.0.0.1:4231", leafAddr('b')+":4222")
	r := strings.NewReplacer(pairs...)
	files, err := filepath.Glob(filepath.Join(src, "*.conf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no files in %s: %v", src, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), []byte(r.Replace(string(b))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (p *natsProc) start(conf string) {
	p.t.Helper()
	p.out = &netnstest.Output{}
	cmd := p.ns.Command(context.Background(), natsServerBinary(p.t), "-c", conf)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.pid, p.kill = cmd.Process.Pid, func() { _ = cmd.Process.Kill() }
	p.done = make(chan struct{})
	go func() { _ = cmd.Wait(); close(p.done) }()
	p.t.Cleanup(p.stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := p.ns.Dial(context.Background(), "tcp", p.addr+":4222")
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s does not listen on %s:4222:\n%s", p.name, p.addr, p.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *natsProc) stop() {
	if p.kill == nil {
		return
	}
	p.kill()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.t.Errorf("%s did not exit after SIGKILL", p.name)
	}
	p.kill = nil
}

// cpu is the server's CPU time so far: the sum of its threads' time on a
// CPU (schedstat, in ns; the process's utime and stime count 10 ms ticks).
func (p *natsProc) cpu() time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", p.pid))
	var sum int64
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		if fs := strings.Fields(string(b)); len(fs) > 0 {
			n, _ := strconv.ParseInt(fs[0], 10, 64)
			sum += n
		}
	}
	return time.Duration(sum)
}

type leafFleet struct {
	lan    *netnstest.LAN
	dir    string
	hubs   []*natsProc
	leaves map[byte]*natsProc
	hosts  map[string]*fleetHost
}

// leafHostList is fleet.hosts of every host: h1, h2 (site A), h3, h4 (B).
const leafHostList = "10.201.0.1, 10.201.0.2, 10.201.0.3, 10.201.0.4"

// newLeafFleet starts the hub cluster and the two leaf servers.
func newLeafFleet(t testing.TB) *leafFleet {
	t.Helper()
	netnstest.Require(t)
	natsServerBinary(t)
	f := &leafFleet{lan: netnstest.NewLAN(t), dir: t.TempDir(), leaves: map[byte]*natsProc{}, hosts: map[string]*fleetHost{}}
	leafFiles(t, f.dir)
	var wg sync.WaitGroup
	for n := 1; n <= 3; n++ {
		ns, _ := f.lan.Join(fmt.Sprintf("psLhub%d", n), hubAddr(n))
		p := &natsProc{t: t, name: fmt.Sprintf("hub%d", n), ns: ns, addr: hubAddr(n), dir: t.TempDir()}
		f.hubs = append(f.hubs, p)
		wg.Go(func() { p.start(filepath.Join(f.dir, p.name+".conf")) })
	}
	wg.Wait()
	for _, s := range []byte{'a', 'b'} {
		ns, _ := f.lan.Join("psLleaf"+string(s), leafAddr(s))
		p := &natsProc{t: t, name: "leaf_" + string(s), ns: ns, addr: leafAddr(s), dir: t.TempDir()}
		p.start(filepath.Join(f.dir, "site-"+string(s)+".conf"))
		f.leaves[s] = p
	}
	return f
}

// host starts host n's daemon (h1, h2 at site A; h3, h4 at B), logged in
// to its site's leaf; it returns once the daemon mirrored the fleet.
func (f *leafFleet) host(t testing.TB, n int) *fleetHost {
	t.Helper()
	site := byte('a')
	if n > 2 {
		site = 'b'
	}
	h := &fleetHost{name: fmt.Sprintf("h%d", n), addr: fmt.Sprintf("10.201.0.%d", n)}
	h.ns, _ = f.lan.Join("psL"+h.name, h.addr)
	yaml := fmt.Sprintf("fleet:\n  servers: [nats://%s:4222]\n  name: %s\n  nkey: %s\n  hosts: [%s]\n  domain: hub\n  local_domain: %s\n",
		leafAddr(site), h.name, exampleSeed(t, h.name), leafHostList, siteDomain(site))
	h.d = startDaemon(t, h.ns, "block: {max_per_second: 100000}\n"+yaml)
	// A new hub elects its leaders before the first host creates the
	// buckets: allow for it.
	h.d.waitLog("fleet: mirrored the fleet", 90*time.Second)
	f.hosts[h.name] = h
	return h
}

func (f *leafFleet) dump(t testing.TB) {
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range f.hosts {
			if !yield(k) {
				return
			}
		}
	}) {
		t.Logf("== %s daemon:\n%s", name, f.hosts[name].d.out)
	}
	for _, p := range append(f.hubs, f.leaves['a'], f.leaves['b']) {
		t.Logf("== %s:\n%s", p.name, p.out)
	}
}

// cutLeaf drops the leafnode traffic of ns (a leaf's) both ways, in a
// table of its own: the site keeps its LAN, loses the hub.
func cutLeaf(t testing.TB, ns *netnstest.NS) (heal func()) {
	t.Helper()
	rules := fmt.Sprintf(`table inet leafcut {
	chain in { type filter hook input priority -300; policy accept; tcp dport %[1]d drop; tcp sport %[1]d drop; }
	chain out { type filter hook output priority -300; policy accept; tcp dport %[1]d drop; tcp sport %[1]d drop; }
}
`, leafPort)
	file := filepath.Join(t.TempDir(), "cut.nft")
	if err := os.WriteFile(file, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	ns.MustRun("nft", "-f", file)
	return func() { ns.MustRun("nft", "delete", "table", "inet", "leafcut") }
}

// blockOn blocks addr on h through its control socket (an administrator's
// block on that host, which the fleet carries).
func blockOn(t testing.TB, h *fleetHost, addr string) {
	t.Helper()
	if out, err := h.d.cli("block", addr, "--timeout", "2h"); err != nil {
		t.Fatalf("%s block %s: %v %s", h.name, addr, err, out)
	}
}

// Two sites, each a leaf server with its own copy of the buckets: a block
// made on site A's host reaches site B's host through the hub. Cut off
// from the hub, each site keeps its copy: a host that starts at site B
// during the partition gets every block made before it from its leaf
// alone, and hosts keep blocking locally; their new blocks wait in their
// outbox. After the heal every host has every block, with no host
// reconnecting (their watches on their leaf never stopped) and so no
// replay: the leaf's mirror resumes from its last sequence.
func TestFleetLeafSites(t *testing.T) {
	f := newLeafFleet(t)
	h1, h3 := f.host(t, 1), f.host(t, 3)
	// Site to site, one block at a time.
	var lat []time.Duration
	_, cpu0 := f.idleCPU()
	for i := range 10 {
		addr := fmt.Sprintf("10.201.1.%d", i+1)
		start := time.Now()
		blockOn(t, h1, addr)
		took := waitElements(t, []*fleetHost{h3}, addr, start, 20*time.Second)
		if took[0] == 0 {
			f.dump(t)
			t.Fatalf("h1's block of %s never reached h3 (site B) within 20 s", addr)
		}
		lat = append(lat, took[0])
	}
	f.logCPU(t, "10 single blocks from h1 (site A) on h3 (site B)", cpu0, 10)
	slices.Sort(lat)
	t.Logf("h1 (site A) block to h3's element (site B), 10 blocks: min %s, median %s, max %s (includes the CLI and nft polling every 10 ms)",
		lat[0].Round(time.Millisecond), lat[5].Round(time.Millisecond), lat[9].Round(time.Millisecond))
	f.burstCPU(t, h1, 230, h3)
	h2 := f.host(t, 2) // site A: its leaf delivers to it, the hub no more
	f.burstCPU(t, h1, 232, h2, h3)

	// The partition: both sites lose the hub.
	healA, healB := cutLeaf(t, f.leaves['a'].ns), cutLeaf(t, f.leaves['b'].ns)
	cutAt := time.Now()
	const fromA, fromB = "10.201.2.1", "10.201.2.3"
	blockOn(t, h1, fromA)
	blockOn(t, h3, fromB)
	waitBlocked(t, h1.ns, "blocked", fromA, 5*time.Second)
	waitBlocked(t, h3.ns, "blocked", fromB, 5*time.Second)
	// A host that starts at site B now reads what the site's copy holds.
	start := time.Now()
	h4 := f.host(t, 4)
	if took := waitElements(t, []*fleetHost{h4}, "10.201.1.10", start, 10*time.Second); took[0] == 0 {
		f.dump(t)
		t.Fatalf("h4, started at site B during the partition, did not get the blocks made before it from leaf_b")
	}
	t.Logf("h4 started at site B during the partition: the fleet's earlier blocks from leaf_b's copy %s after its start", time.Since(start).Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	// Writes go to the hub: not even h2, at h1's site, has h1's block.
	assertNotBlocked(t, h3.ns, fromA)
	assertNotBlocked(t, h2.ns, fromA)
	assertNotBlocked(t, h1.ns, fromB)
	t.Logf("the partition held %s", time.Since(cutAt).Round(time.Second))

	healA()
	healB()
	healed := time.Now()
	toB := waitElements(t, []*fleetHost{h3, h4}, fromA, healed, 60*time.Second)
	toA := waitElements(t, []*fleetHost{h1, h4}, fromB, healed, 60*time.Second)
	toH2 := waitElements(t, []*fleetHost{h2, h2}, fromA, healed, 60*time.Second)
	if slices.Contains(append(append(toB, toA...), toH2...), 0) {
		f.dump(t)
		t.Fatalf("after the heal (60 s): h1's block on h3 %s, h4 %s, h2 %s; h3's on h1 %s, h4 %s (0: never)", toB[0], toB[1], toH2[0], toA[0], toA[1])
	}
	t.Logf("heal to convergence: h1's block on h3 %s, h4 %s, h2 %s; h3's block on h1 %s, h4 %s", toB[0], toB[1], toH2[0], toA[0], toA[1])
	for _, h := range []*fleetHost{h1, h2, h3} {
		if strings.Contains(h.d.out.String(), "fleet: reconnected") {
			t.Errorf("%s reconnected: its watch replayed the fleet\n%s", h.name, h.d.out)
		}
	}
}

// cpu is each server's CPU time so far, by name.
func (f *leafFleet) cpu() map[string]time.Duration {
	m := map[string]time.Duration{}
	for _, p := range append(slices.Clone(f.hubs), f.leaves['a'], f.leaves['b']) {
		m[p.name] = p.cpu()
	}
	return m
}

// idleCPU measures the servers' CPU per second of doing nothing (Raft
// heartbeats, pings), over a second, and starts the count of a
// measurement (cpuSince).
func (f *leafFleet) idleCPU() (idle map[string]time.Duration, start cpuSince) {
	before := f.cpu()
	time.Sleep(time.Second)
	now := f.cpu()
	idle = map[string]time.Duration{}
	for k, v := range now {
		idle[k] = v - before[k]
	}
	return idle, cpuSince{now, time.Now(), idle}
}

// cpuSince is the start of a measurement of the servers' CPU, and their
// idle CPU per second, which the measurement takes off.
type cpuSince struct {
	cpu  map[string]time.Duration
	at   time.Time
	idle map[string]time.Duration
}

// logCPU logs the servers' CPU since before, over their idle CPU, per
// block of n.
func (f *leafFleet) logCPU(t testing.TB, what string, before cpuSince, n int) {
	t.Helper()
	now, secs := f.cpu(), time.Since(before.at).Seconds()
	var hub time.Duration
	var line []string
	for _, name := range []string{"hub1", "hub2", "hub3", "leaf_a", "leaf_b"} {
		d := now[name] - before.cpu[name] - time.Duration(secs*float64(before.idle[name]))
		if strings.HasPrefix(name, "hub") {
			hub += d
		}
		line = append(line, fmt.Sprintf("%s %.0f", name, float64(d.Microseconds())/float64(n)))
	}
	t.Logf("%s; server CPU per block over idle, us: %s; the hub's three: %.0f", what, strings.Join(line, ", "), float64(hub.Microseconds())/float64(n))
}

// burstCPU has h1 publish a burst of blocks (addrFile's second octet
// second) and reports the servers' CPU per block once every receiver has
// them all: the hub delivers each block once per site, whatever the
// number of hosts there.
func (f *leafFleet) burstCPU(t testing.TB, h1 *fleetHost, second int, receivers ...*fleetHost) {
	t.Helper()
	const n = 2000
	_, before := f.idleCPU()
	files, base := make([]*os.File, len(receivers)), make([]int, len(receivers))
	for i, h := range receivers {
		files[i] = h.ns.Open()
		base[i] = countElements(t, files[i], nft.SetBlocked)
	}
	start := time.Now()
	if out, err := h1.d.cli("block", "--file", addrFile(t, n, second), "--timeout", "2h"); err != nil {
		t.Fatalf("block --file: %v %s", err, out)
	}
	for i, h := range receivers {
		if waitCount(t, files[i], base[i]+n, start, 60*time.Second) == 0 {
			f.dump(t)
			t.Fatalf("%s has %d of h1's %d blocks after 60 s", h.name, countElements(t, files[i], nft.SetBlocked)-base[i], n)
		}
	}
	f.logCPU(t, fmt.Sprintf("a burst of %d blocks from h1 (site A) on %d other hosts in %s", n, len(receivers), time.Since(start).Round(time.Millisecond)), before, n)
}

// A compromised h1 at site A, with its own credentials of
// deploy/nats/leaf, logged in to its leaf: it may write its own records in
// the hub's domain, and nothing else: no other host's records (its site's
// or another's), none under admin, no stream deleted, purged or changed in
// either domain, no consumer of the hub's buckets (it reads its leaf's
// copies), no other host's inbox.
func TestFleetLeafPermissions(t *testing.T) {
	f := newLeafFleet(t)
	ns, _ := f.lan.Join("psLh1", "10.201.0.1")
	errs := make(chan error, 64)
	nc, err := nats.Connect(fmt.Sprintf("nats://%s:4222", leafAddr('a')), exampleAuth(t, "h1"),
		nats.SetCustomDialer(nsDialer{ns}), nats.CustomInboxPrefix("_INBOX_h1"), nats.Timeout(20*time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// violation waits for the server's refusal of subj, which names it as
	// the leaf mapped it (its own domain's API to $JS.API).
	violation := func(subj string, within time.Duration) error {
		mapped := strings.Replace(subj, "$JS."+siteDomain('a')+".API.", "$JS.API.", 1)
		deadline := time.After(within)
		for {
			select {
			case err := <-errs:
				if strings.Contains(err.Error(), `"`+mapped+`"`) {
					return err
				}
			case <-deadline:
				return nil
			}
		}
	}
	const pre = "$JS.hub.API."
	if err := nc.Publish(pre+"$KV.portsentry_blocks.h1.203-0-113-7", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := violation(pre+"$KV.portsentry_blocks.h1.203-0-113-7", time.Second); err != nil {
		t.Errorf("h1 may not write its own record: %v", err)
	}
	for _, subj := range []string{
		pre + "$KV.portsentry_blocks.h2.203-0-113-7", // its site's other host
		pre + "$KV.portsentry_blocks.h3.203-0-113-7", // another site's
		pre + "$KV.portsentry_blocks.admin.203-0-113-7",
		pre + "$KV.portsentry_lifts.admin.203-0-113-7",
		pre + "$KV.portsentry_sightings.203-0-113-7.h2",
		"$KV.portsentry_blocks.h1.203-0-113-7", // the plain subject: not at a leaf
		pre + "STREAM.DELETE.KV_portsentry_blocks",
		pre + "STREAM.PURGE.KV_portsentry_blocks",
		pre + "STREAM.UPDATE.KV_portsentry_blocks",
		pre + "CONSUMER.CREATE.KV_portsentry_blocks.x.$KV.portsentry_blocks.>",
		"$JS." + siteDomain('a') + ".API.STREAM.DELETE.KV_portsentry_blocks",
		"$JS.API.STREAM.PURGE.KV_portsentry_blocks",
	} {
		if err := nc.Publish(subj, []byte("{}")); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		if violation(subj, 5*time.Second) == nil {
			t.Errorf("h1 published to %s: no permissions violation", subj)
		}
	}
	if _, err := nc.SubscribeSync("_INBOX_h2.>"); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if violation("_INBOX_h2.>", 5*time.Second) == nil {
		t.Errorf("h1 subscribed to h2's inbox: no permissions violation")
	}
}
