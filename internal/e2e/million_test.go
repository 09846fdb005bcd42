package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// BenchmarkMillion: a million blocks in one host. A journal of 1M blocks
// with every field of today's record (evidence, origin, the fleet host a
// tenth of them mirror, the scanning tool) is restored after a "reboot"
// (no table), then the daemon restarts with the 1M elements live in the
// kernel, then `list --json` streams them. Rows: time from start to
// monitoring for both, the daemon's RSS holding 1M, the list's time and
// the peak RSS of the CLI and of the daemon while listing.
func BenchmarkMillion(b *testing.B) {
	netnstest.Require(b)
	benchMillion(b, printRow)
}

// BenchmarkMillionRestore is BenchmarkMillion's restore rows alone (~8
// s): the start of 1M blocks with the table gone, then with the elements
// live.
func BenchmarkMillionRestore(b *testing.B) {
	netnstest.Require(b)
	for range b.N {
		d := restoreMillion(b, printRow)
		d.stopWithin(60 * time.Second)
		d.tap = io.Discard
		took := d.startWithin(60 * time.Second)
		printRow("restart with 1M live elements in the kernel", fmt.Sprintf("%s from start to monitoring (%s)", took.Round(time.Millisecond), restoreParts(d)), "<= 5 s")
		d.stop()
	}
}

func benchMillion(b *testing.B, add func(string, string, string)) {
	const n = 1000000
	ns, d := restoreMillionNS(b, add)
	rss := vmRSS(b, d.cmd.Process.Pid)
	time.Sleep(10 * time.Second)
	settled := vmRSS(b, d.cmd.Process.Pid)
	add("RSS holding 1M blocks (all fields)", fmt.Sprintf("%.0f MiB at monitoring, %.0f MiB 10 s later (%.0f B a block over an idle daemon's ~20 MiB)", rss/(1<<20), settled/(1<<20), (settled-20<<20)/n), "<= 300 MiB")

	stopTook := d.stopWithin(60 * time.Second)
	add("stop with 1M blocks", stopTook.Round(time.Millisecond).String(), "")
	d.tap = io.Discard
	took := d.startWithin(60 * time.Second)
	add("restart with 1M live elements in the kernel", fmt.Sprintf("%s from start to monitoring (%s), RSS %.0f MiB", took.Round(time.Millisecond), restoreParts(d), vmRSS(b, d.cmd.Process.Pid)/(1<<20)), "<= 5 s")
	sampleInSet(b, ns, n)

	before := vmRSS(b, d.cmd.Process.Pid)
	listTook, cliPeak, daemonPeak := listMillion(b, d, n)
	add("list --json of 1M blocks", fmt.Sprintf("%s; peak RSS: CLI %.0f MiB, daemon %.0f MiB (%.0f MiB before)", listTook.Round(time.Millisecond), cliPeak/(1<<20), daemonPeak/(1<<20), before/(1<<20)), "streams")
}

// restoreMillion starts a daemon on a journal of 1M blocks with no table
// (a reboot), checks a sample of them in the set and reports the time to
// monitoring; the daemon is left running.
func restoreMillion(b *testing.B, add func(string, string, string)) *daemon {
	_, d := restoreMillionNS(b, add)
	return d
}

func restoreMillionNS(b *testing.B, add func(string, string, string)) (*netnstest.NS, *daemon) {
	const n = 1000000
	ns := netnstest.New(b, "psM")
	f := writeConfig(b, "block: {set_size: 2000000}\n")
	stateDir := filepath.Join(filepath.Dir(f), "state")
	os.MkdirAll(stateDir, 0o700)
	writeMillionJournal(b, filepath.Join(stateDir, "blocks.journal"), n)
	// As after a reboot: the journal on disk, nothing else at work.
	syscall.Sync()
	waitQuiet(b)
	d := &daemon{t: b, ns: ns, config: f}
	b.Cleanup(d.stop)

	listeners := nftablesListeners(b)
	took := d.startWithin(60 * time.Second)
	sampleInSet(b, ns, n)
	add("restore 1M blocks at start (table gone, as after a reboot)", fmt.Sprintf("%s from start to monitoring (%s), a sample of 500 of the %d in the set%s", took.Round(time.Millisecond), restoreParts(d), n, listeners), "<= 2 s")
	return ns, d
}

// restoreParts is what the daemon's restore line says of its parts.
func restoreParts(d *daemon) string {
	m := regexp.MustCompile(`journal read in [^,]+, into the kernel in [^)]+`).FindString(d.out.String())
	if m == "" {
		return "parts not logged"
	}
	return m
}

// writeMillionJournal writes n live blocks in internal/state's journal
// format, every field set: a tenth are fleet blocks of 100 hosts.
func writeMillionJournal(b testing.TB, path string, n int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	exp := time.Now().Add(2 * time.Hour).UnixMilli()
	first := time.Now().Add(-time.Minute).UnixMilli()
	for i := range n {
		origin, from, ev := "detect", "", "corroborated"
		if i%10 == 9 {
			origin, from, ev = "fleet", "host-"+strconv.Itoa(i%100), "handshake"
		}
		fmt.Fprintf(w, "add\t10.%d.%d.%d\t%d\t7200000\t1\t22\t22,80,443\t%d\t%d\t\"TCP SYN scan\"\t\"TCP\"\t\"\"\t\"\"\t%s\t\t%s\t%s\tnmap-syn\n",
			120+i>>16, byte(i>>8), byte(i), exp, first, first+1000, origin, ev, from)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
}

// startWithin is start with a longer bound, returning the time to
// monitoring.
func (d *daemon) startWithin(within time.Duration) time.Duration {
	d.t.Helper()
	d.out = &netnstest.Output{}
	d.cmd = d.ns.Command(context.Background(), daemonBinary(d.t), "run", "--config", d.config)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	start := time.Now()
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	done, cmd := make(chan error, 1), d.cmd
	d.done = done
	go func() { done <- cmd.Wait() }()
	diag := make(chan struct{})
	if os.Getenv("MILLION_DIAG") != "" && d.tap != nil {
		go func() {
			select {
			case <-time.After(8 * time.Second):
				cmd.Process.Signal(syscall.SIGQUIT)
			case <-diag:
			}
		}()
	}
	d.waitLog("PortSentry is initialized and monitoring.", within)
	close(diag)
	return time.Since(start)
}

// stopWithin is stop with a longer bound, returning the time it took.
func (d *daemon) stopWithin(within time.Duration) time.Duration {
	start := time.Now()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			d.t.Fatalf("daemon exited with %v after SIGTERM; output:\n%s", err, d.out)
		}
	case <-time.After(within):
		d.cmd.Process.Signal(syscall.SIGQUIT)
		<-d.done
		d.t.Fatalf("daemon did not stop within %s of SIGTERM; output:\n%s", within, d.out)
	}
	d.cmd = nil
	return time.Since(start)
}

// listMillion runs list --json, counting its lines, and samples the
// daemon's RSS meanwhile.
func listMillion(b *testing.B, d *daemon, n int) (time.Duration, float64, float64) {
	cmd := exec.Command(daemonBinary(b), "list", "--socket", d.socket(), "--json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	pid := d.cmd.Process.Pid
	stop := make(chan struct{})
	peak := make(chan float64)
	go func() {
		var m float64
		for {
			m = max(m, vmRSS(b, pid))
			select {
			case <-stop:
				peak <- m
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	got := 0
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"addr"`) || strings.Contains(sc.Text(), `"Addr"`) {
			got += strings.Count(sc.Text(), `"addr"`) + strings.Count(sc.Text(), `"Addr"`)
		}
	}
	werr := cmd.Wait()
	close(stop)
	dpeak := <-peak
	if werr != nil {
		b.Fatalf("list --json: %v (%s)", werr, stderr.String())
	}
	took := time.Since(start)
	if got < n {
		b.Fatalf("list --json gave %d addresses of %d", got, n)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return took, float64(ru.Maxrss) * 1024, dpeak
}

// sampleInSet checks 500 addresses of the n blocks, spread over them,
// each with its own netlink GETSETELEM: a dump of 1M elements (nft list,
// nft get element, nft.Blocked) takes the kernel ~50 s.
func sampleInSet(b testing.TB, ns *netnstest.NS, n int) {
	q := newElementQuery(b, ns)
	defer q.c.Close()
	for i := 0; i < n; i += n / 500 {
		a := millionAddr(i)
		if err := q.get(a); err != nil {
			b.Fatalf("%s is not in set %s: %v", a, nft.SetBlocked, err)
		}
	}
}

// millionAddr is the address of writeMillionJournal's i-th block.
func millionAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(120 + i>>16), byte(i >> 8), byte(i)})
}

// elementQuery asks the kernel for one element of blocked at a time
// (GETSETELEM), without a dump.
type elementQuery struct {
	t testing.TB
	c *netlink.Conn
}

func newElementQuery(t testing.TB, ns *netnstest.NS) *elementQuery {
	f := ns.Open()
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(f.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	return &elementQuery{t: t, c: c}
}

// get is nil when a is in blocked, else the kernel's answer (ENOENT).
func (q *elementQuery) get(a netip.Addr) error {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, nft.TableName)
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, nft.SetBlocked)
	ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(l *netlink.AttributeEncoder) error {
		l.Nested(unix.NFTA_LIST_ELEM, func(e *netlink.AttributeEncoder) error {
			e.Nested(unix.NFTA_SET_ELEM_KEY, func(k *netlink.AttributeEncoder) error {
				k.Bytes(unix.NFTA_DATA_VALUE, a.AsSlice())
				return nil
			})
			return nil
		})
		return nil
	})
	attrs, err := ae.Encode()
	if err != nil {
		q.t.Fatal(err)
	}
	_, err = q.c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM), Flags: netlink.Request},
		Data:   append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	return err
}

// vmRSS is a process's resident set, in bytes.
func vmRSS(b testing.TB, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.Fields(v)[0], 64)
			return kb * 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// nftablesListeners names the sockets of the machine's namespaces that
// listen to nftables events (netlink protocol 12, group 7: bit 0x40 of
// /proc/net/netlink's mask), as a note for a row: while one is open every
// nftables commit in every namespace builds a notification per element
// (docs/performance.md, "A listener of nftables events").
func nftablesListeners(tb testing.TB) string {
	names, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		tb.Fatalf("ip netns list: %v", err)
	}
	places := map[string][]string{"the root namespace": {"cat", "/proc/net/netlink"}}
	for _, l := range strings.Split(string(names), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			places[f[0]] = []string{"ip", "netns", "exec", f[0], "cat", "/proc/net/netlink"}
		}
	}
	var found []string
	for where, args := range places {
		out, err := exec.Command(args[0], args[1:]...).Output()
		if err != nil {
			continue // a namespace deleted meanwhile
		}
		for _, sock := range strings.Split(string(out), "\n") {
			g := strings.Fields(sock)
			if len(g) < 4 || g[1] != "12" {
				continue
			}
			if mask, err := strconv.ParseUint(g[3], 16, 32); err == nil && mask&0x40 != 0 {
				found = append(found, "pid "+g[2]+" in "+where)
			}
		}
	}
	if len(found) == 0 {
		return ""
	}
	return "; an nftables event listener was open, so every commit notified each element: " + strings.Join(found, ", ")
}

// waitQuiet waits, at most 20 s, until the CPUs are at least 85% idle over
// half a second: what earlier steps left to the kernel (a namespace with a
// large set torn down, writeback) is not the next step's cost.
func waitQuiet(tb testing.TB) {
	read := func() (idle, total uint64) {
		for i, v := range cpuTicks(tb) {
			total += v
			if i == 3 || i == 4 { // idle, iowait
				idle += v
			}
		}
		return idle, total
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		i0, t0 := read()
		time.Sleep(500 * time.Millisecond)
		if i1, t1 := read(); t1 > t0 && float64(i1-i0) >= 0.85*float64(t1-t0) {
			return
		}
	}
}
