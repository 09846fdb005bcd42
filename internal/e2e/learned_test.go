package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// BenchmarkPortsLearned runs the "ports a scanner learns" part of the
// report alone, with the first strike's probe-to-element latency and the
// daemon's lag behind the kernel (about three minutes):
//
//	go test -run=NONE -bench=PortsLearned -benchtime=1x -timeout=20m ./internal/e2e
func BenchmarkPortsLearned(b *testing.B) {
	netnstest.Require(b, "nmap", "tcpdump")
	benchPortsLearned(b, printRow)
	benchStrikeLatency(b, printRow)
}

// The port configurations of the "ports learned" runs: the daemon's
// default list (PortSentry's "aware" list) and advanced mode as
// PortSentry ships it (every port below 1024 but 113 and 139), each with
// the classic PortSentry 1.2 mode that watches the same ports.
var learnedModes = []struct{ name, yaml, classic string }{
	{"default list", "", "-stcp"},
	{"advanced mode (below 1024, without 113 and 139)", "tcp: {ports: [], advanced: {below: 1024, exclude: [113, 139]}}\n", "-atcp"},
}

// benchPortsLearned: how many ports a scanner learns (gets a SYN-ACK or
// RST for) before it is blocked, against the physical limit: the ports it
// probed before its first probe of a tripwire, which nothing can hide.
// Both are counted from a capture of the scanner's own interface (its
// sending order and the replies), for nmap and masscan, each port
// configuration, and three blockers: the kernel's first strike, the
// daemon blocking from user space, classic PortSentry 1.2.
func benchPortsLearned(b *testing.B, add func(string, string, string)) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		add("ports learned", "not measured: tcpdump not installed", "")
		return
	}
	bin := classicBinary(b)
	for _, scanner := range []string{"nmap", "masscan"} {
		if _, err := exec.LookPath(scanner); err != nil {
			add("ports learned: "+scanner, "not measured: "+scanner+" not installed", "")
			continue
		}
		for _, mode := range learnedModes {
			cfg, err := config.Parse("bench", []byte(mode.yaml))
			if err != nil {
				b.Fatal(err)
			}
			for _, blocker := range []string{"first strike", "user space", "classic PortSentry 1.2 " + mode.classic} {
				what := fmt.Sprintf("ports learned: %s, %s, %s", learnedScanDesc[scanner], mode.name, blocker)
				if strings.HasPrefix(blocker, "classic") && bin == "" {
					add(what, "not measured: could not fetch Debian's portsentry package", "")
					continue
				}
				r := learnedOnce(b, scanner, mode.yaml, mode.classic, blocker, bin, cfg.TCP.Monitored)
				res := fmt.Sprintf("answered %d, limit %d, above the limit %d (of %d ports probed; blocked: %v", r.answered, r.limit, r.answered-r.limit, r.probed, r.blocked)
				if scanner == "nmap" {
					res += fmt.Sprintf("; nmap's own count %d", r.nmapAnswered)
				}
				if r.answered > r.limit {
					res += fmt.Sprintf("; the last answered probe left %s after the first tripwire probe", us(r.late))
				}
				if r.limit == r.probed {
					res += "; no tripwire probed"
				}
				add(what, res+")", "0 above the limit")
			}
		}
	}
}

var learnedScanDesc = map[string]string{
	"nmap":    "`nmap -sS -T4 --min-rate 3000 -p 1-1024`",
	"masscan": "`masscan -p1-1024 --rate 10000`",
}

type learned struct {
	answered, limit, probed, nmapAnswered int
	blocked                               bool
	late                                  time.Duration
}

// learnedOnce runs one scan in a fresh pair of namespaces, captured on the
// scanner's interface.
func learnedOnce(b *testing.B, scanner, yaml, classicFlag, blocker, bin string, monitored []uint16) learned {
	p := netnstest.NewPair(b)
	switch {
	case blocker == "first strike":
		startDaemon(b, p.A, yaml)
	case blocker == "user space":
		startDaemon(b, p.A, yaml+"block: {first_strike: false}\n")
	default:
		startClassic(b, p, bin, classicFlag)
	}
	capFile := filepath.Join(b.TempDir(), "scan.pcap")
	stop := startCapture(b, p.B, capFile, "tcp and host "+netnstest.AddrA)
	var r learned
	switch scanner {
	case "nmap":
		out := attack(b, p.B, "nmap", "-Pn", "-n", "-sS", "-T4", "--max-retries", "0", "--min-rate", "3000", "--host-timeout", "100s", "-p", "1-1024", netnstest.AddrA)
		r.nmapAnswered = answeredPorts(out)
	case "masscan":
		mac := strings.TrimSpace(p.A.MustRun("cat", "/sys/class/net/veth-a/address"))
		// --wait 2: replies have 2 s to come in after the last probe
		// (masscan's default is 10 s).
		p.B.Run("timeout", "30", "masscan", "-p1-1024", "--rate", "10000", "--interface", "veth-b", "--router-mac", mac,
			"--adapter-ip", netnstest.AddrB, "--wait", "2", netnstest.AddrA)
	}
	time.Sleep(300 * time.Millisecond)
	stop()
	pkts := readPcap(b, capFile)
	r.answered, r.limit, r.probed, r.late = countLearned(pkts, netip.MustParseAddr(netnstest.AddrB), netip.MustParseAddr(netnstest.AddrA), monitored)
	if r.probed == 0 {
		b.Fatalf("%s, %s: the capture holds no probe", scanner, blocker)
	}
	if strings.HasPrefix(blocker, "classic") {
		r.blocked = classicBlocked(b, p, netnstest.AddrB)
	} else {
		r.blocked = netnstest.ElementLine(listSet(b, p.A, "blocked"), netnstest.AddrB) != ""
	}
	return r
}

// countLearned reads a capture of the scanner's interface: probed is the
// number of distinct ports it sent a SYN to, limit the number of distinct
// ports it sent a SYN to before its first SYN to a monitored port (all of
// them when it sent none), answered the number of distinct ports that sent
// back a SYN-ACK or a RST, and late how long after its first tripwire
// probe it sent the last probe that was answered (0: none was).
func countLearned(pkts []capPacket, scanner, target netip.Addr, monitored []uint16) (answered, limit, probed int, late time.Duration) {
	sent := map[uint16]time.Time{}
	replied := map[uint16]bool{}
	limit = -1
	var trip time.Time
	for _, pk := range pkts {
		switch {
		case pk.src == scanner && pk.dst == target && pk.flags&tcpSYN != 0 && pk.flags&tcpACK == 0:
			if limit < 0 {
				if _, ok := slices.BinarySearch(monitored, pk.dport); ok {
					limit, trip = len(sent), pk.at
				}
			}
			if _, ok := sent[pk.dport]; !ok {
				sent[pk.dport] = pk.at
			}
		case pk.src == target && pk.dst == scanner && pk.flags&(tcpSYN|tcpRST) != 0:
			replied[pk.sport] = true
		}
	}
	if limit < 0 {
		limit = len(sent)
	}
	for port := range replied {
		if at, ok := sent[port]; ok && !trip.IsZero() && !at.Before(trip) {
			late = max(late, at.Sub(trip))
		}
	}
	return len(replied), limit, len(sent), late
}

// startCapture runs tcpdump on veth-b in ns, writing to file, until the
// returned function stops it (SIGINT, so it writes out its buffer).
func startCapture(b *testing.B, ns *netnstest.NS, file, filter string) (stop func()) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	// -Z root: tcpdump drops to its own user by default, which may not
	// write into the test's directory. --immediate-mode: otherwise what
	// waits in the kernel's ring at SIGINT is thrown away.
	cmd := ns.Command(ctx, "tcpdump", "-Z", "root", "-i", "veth-b", "-n", "-U", "--immediate-mode", "-s", "128", "-B", "8192", "-w", file, filter)
	out := &netnstest.Output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "listening on") {
		select {
		case <-done:
			cancel()
			b.Fatalf("tcpdump exited: %s", out)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			b.Fatalf("tcpdump not listening within 10 s: %s", out)
		}
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-done
			}
			cancel()
			if m := droppedRe.FindStringSubmatch(out.String()); m != nil && m[1] != "0" {
				b.Fatalf("tcpdump lost packets: %s", out)
			}
			if m := capturedRe.FindStringSubmatch(out.String()); m == nil || m[1] != m[2] {
				b.Fatalf("tcpdump did not write every packet it received: %s", out)
			}
		})
	}
	b.Cleanup(stop)
	return stop
}

var (
	droppedRe  = regexp.MustCompile(`(?m)^(\d+) packets dropped by kernel`)
	capturedRe = regexp.MustCompile(`(?m)^(\d+) packets captured\n(\d+) packets received by filter`)
)

const (
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// capPacket is one IPv4 TCP segment of a capture.
type capPacket struct {
	at           time.Time
	src, dst     netip.Addr
	sport, dport uint16
	flags        byte
}

// readPcap reads the IPv4 TCP segments of a classic pcap file of an
// Ethernet interface (what tcpdump -w writes), in capture order.
func readPcap(b *testing.B, file string) []capPacket {
	data, err := os.ReadFile(file)
	if err != nil {
		b.Fatal(err)
	}
	if len(data) < 24 {
		b.Fatalf("%s: no pcap header", file)
	}
	var bo binary.ByteOrder = binary.LittleEndian
	nano := false
	switch binary.LittleEndian.Uint32(data) {
	case 0xa1b2c3d4:
	case 0xa1b23c4d:
		nano = true
	case 0xd4c3b2a1:
		bo = binary.BigEndian
	case 0x4d3cb2a1:
		bo, nano = binary.BigEndian, true
	default:
		b.Fatalf("%s: not a pcap file", file)
	}
	if lt := bo.Uint32(data[20:]); lt != 1 {
		b.Fatalf("%s: link type %d, want Ethernet", file, lt)
	}
	var pkts []capPacket
	for off := 24; off+16 <= len(data); {
		sec, frac, incl := bo.Uint32(data[off:]), bo.Uint32(data[off+4:]), int(bo.Uint32(data[off+8:]))
		off += 16
		if off+incl > len(data) {
			break
		}
		frame := data[off : off+incl]
		off += incl
		ns := int64(frac) * 1000
		if nano {
			ns = int64(frac)
		}
		if len(frame) < 14+20 || binary.BigEndian.Uint16(frame[12:]) != 0x0800 {
			continue
		}
		ip := frame[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[0]>>4 != 4 || ip[9] != syscall.IPPROTO_TCP || len(ip) < ihl+14 || binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 {
			continue
		}
		tcp := ip[ihl:]
		pkts = append(pkts, capPacket{
			at:    time.Unix(int64(sec), ns),
			src:   netip.AddrFrom4([4]byte(ip[12:16])),
			dst:   netip.AddrFrom4([4]byte(ip[16:20])),
			sport: binary.BigEndian.Uint16(tcp[0:]),
			dport: binary.BigEndian.Uint16(tcp[2:]),
			flags: tcp[13],
		})
	}
	return pkts
}

// lineTimes timestamps the daemon's "has been blocked" lines as they are
// written to its output, per host.
type lineTimes struct {
	mu   sync.Mutex
	part []byte
	at   map[netip.Addr]time.Time
}

var blockedLineRe = regexp.MustCompile(`attackalert: Host (\S+) has been blocked via nftables set`)

func (l *lineTimes) Write(p []byte) (int, error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part = append(l.part, p...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		if m := blockedLineRe.FindSubmatch(l.part[:i]); m != nil {
			if a, err := netip.ParseAddr(string(m[1])); err == nil {
				if _, seen := l.at[a]; !seen {
					l.at[a] = now
				}
			}
		}
		l.part = l.part[i+1:]
	}
	return len(p), nil
}

// wait returns when the line for a was written (false: not within d).
func (l *lineTimes) wait(a netip.Addr, d time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(d)
	for {
		l.mu.Lock()
		t, ok := l.at[a]
		l.mu.Unlock()
		if ok || time.Now().After(deadline) {
			return t, ok
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// followDelays are when the follow-up probes go out after the tripwire
// probe (each to a closed port that is no tripwire: 2, 3, ...); the first
// goes out in the same system call as the probe.
var followDelays = []time.Duration{0, 250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond}

// benchStrikeLatency: probe-to-element latency with the kernel's first
// strike against the daemon's user-space block, and how far the daemon's
// record lags behind. From 200 distinct sources (spoofed in B; A routes
// their replies back to B), each sends one SYN to tripwire port 1, then
// follow-up SYNs to closed non-tripwire ports at the followDelays: a
// follow-up that gets a RST was answered before the element was in. A
// capture on veth-b gives the packets' times and the replies. The kernel's
// adds from the packet path send no netlink notification, so an element
// monitor sees only the daemon's adds (user space); for the first strike
// the follow-ups bound the latency. The daemon's lag is from the probe's
// capture time to its "has been blocked" line (written after the record
// and the journal's fsync); its own histogram (NFLOG copy arrival to the
// record) is reported too.
func benchStrikeLatency(b *testing.B, add func(string, string, string)) {
	const sources = 200
	if _, err := exec.LookPath("tcpdump"); err != nil {
		add("probe-to-element, first strike", "not measured: tcpdump not installed", "")
		return
	}
	type result struct {
		name             string
		tripAnswered     int
		followAnswered   []int
		followGap        [][]time.Duration
		lag, elem        []time.Duration
		hist             string
		elementsInKernel int
	}
	var results []result
	for _, blocker := range []string{"first strike", "user space"} {
		p := netnstest.NewPair(b)
		p.A.MustRun("ip", "route", "add", "10.210.0.0/16", "via", netnstest.AddrB)
		yaml := "block: {max_per_second: 100000}\nmetrics: {listen: \"127.0.0.1:9187\"}\n"
		if blocker == "user space" {
			yaml = "block: {max_per_second: 100000, first_strike: false}\nmetrics: {listen: \"127.0.0.1:9187\"}\n"
		}
		lines := &lineTimes{at: map[netip.Addr]time.Time{}}
		d := &daemon{t: b, ns: p.A, config: writeConfig(b, yaml), tap: lines}
		b.Cleanup(d.stop)
		d.start()

		// The daemon's element adds, as in benchLatency (none for the
		// kernel's: it does not notify them).
		adds, stopAdds := elementAdds(b, p.A)
		var emu sync.Mutex
		elemAt := map[netip.Addr]time.Time{}
		go func() {
			for e := range adds {
				emu.Lock()
				elemAt[e.Addr] = e.At
				emu.Unlock()
			}
		}()

		capFile := filepath.Join(b.TempDir(), "latency.pcap")
		stop := startCapture(b, p.B, capFile, "tcp and host "+netnstest.AddrA)
		raw := rawSocketIn(b, p.B)
		dst := netip.MustParseAddr(netnstest.AddrA)
		// Warm A's neighbour entry for B: the replies to the spoofed
		// sources go there.
		sendSYN(b, raw, netip.MustParseAddr(netnstest.AddrB), dst, 2)
		time.Sleep(100 * time.Millisecond)
		srcs := make([]netip.Addr, sources)
		var lineAt []time.Time
		// The probe and the first follow-up go out at SCHED_FIFO: otherwise
		// the tasks the probe wakes (the daemon, tcpdump) may run on the
		// sender's CPU between the two messages of sendmmsg, and the
		// follow-up leaves hundreds of µs after the probe. The later
		// follow-ups go out at normal priority after sleeping (a spinning
		// sender would take a core from the daemon: there are two).
		runtime.LockOSThread()
		fifo := true
		for i := range srcs {
			src := netip.AddrFrom4([4]byte{10, 210, byte((i + 1) >> 8), byte(i + 1)})
			srcs[i] = src
			fifo = fifo && unix.SchedSetAttr(0, &unix.SchedAttr{Policy: unix.SCHED_FIFO, Priority: 1}, 0) == nil
			start := time.Now()
			// One sendmmsg call: veth delivers within the sender's call,
			// so A's input path has taken the probe before the follow-up
			// is sent.
			sendBoth(b, raw, dst, synPacket(src, dst, 1), synPacket(src, dst, 2))
			unix.SchedSetAttr(0, &unix.SchedAttr{Policy: unix.SCHED_NORMAL}, 0)
			for k, delay := range followDelays[1:] {
				time.Sleep(delay - time.Since(start))
				sendSYN(b, raw, src, dst, uint16(3+k))
			}
			t, ok := lines.wait(src, 5*time.Second)
			if !ok {
				b.Fatalf("%s: no block line for %s within 5 s; daemon:\n%s", blocker, src, d.out)
			}
			lineAt = append(lineAt, t)
			time.Sleep(2 * time.Millisecond) // let the last follow-up's reply pass
		}
		runtime.UnlockOSThread()
		closeFD(raw)
		time.Sleep(300 * time.Millisecond)
		stop()
		stopAdds()
		hist := scrapeHistogram(b, p.A)
		if !fifo {
			blocker += " (the sender could not run at SCHED_FIFO)"
		}
		r := result{name: blocker, followAnswered: make([]int, len(followDelays)), followGap: make([][]time.Duration, len(followDelays)), hist: hist}
		r.elementsInKernel = countElements(b, p.A.Open(), nft.SetBlocked)

		type seen struct {
			sent    map[uint16]time.Time
			replied map[uint16]bool
		}
		per := map[netip.Addr]*seen{}
		for _, pk := range readPcap(b, capFile) {
			switch {
			case pk.dst == dst && pk.flags&tcpSYN != 0 && pk.flags&tcpACK == 0:
				s := per[pk.src]
				if s == nil {
					s = &seen{sent: map[uint16]time.Time{}, replied: map[uint16]bool{}}
					per[pk.src] = s
				}
				if _, dup := s.sent[pk.dport]; !dup {
					s.sent[pk.dport] = pk.at
				}
			case pk.src == dst && pk.flags&(tcpSYN|tcpRST) != 0:
				if s := per[pk.dst]; s != nil {
					s.replied[pk.sport] = true
				}
			}
		}
		for i, src := range srcs {
			s := per[src]
			if s == nil || s.sent[1].IsZero() {
				b.Fatalf("%s: the capture lacks the probe of %s", blocker, src)
			}
			t0 := s.sent[1]
			if s.replied[1] {
				r.tripAnswered++
			}
			for k := range followDelays {
				if at, ok := s.sent[uint16(2+k)]; ok {
					r.followGap[k] = append(r.followGap[k], at.Sub(t0))
				}
				if s.replied[uint16(2+k)] {
					r.followAnswered[k]++
				}
			}
			r.lag = append(r.lag, lineAt[i].Sub(t0))
			emu.Lock()
			if at, ok := elemAt[src]; ok {
				r.elem = append(r.elem, at.Sub(t0))
			}
			emu.Unlock()
		}
		results = append(results, r)
	}

	for _, r := range results {
		var follow []string
		for k := range followDelays {
			follow = append(follow, fmt.Sprintf("+%s: %d", usShort(pct(r.followGap[k], 50)), r.followAnswered[k]))
		}
		el := "the kernel's adds send no netlink event: bounded by the follow-ups"
		if len(r.elem) > 0 {
			el = fmt.Sprintf("element event p50 %s, p99 %s (%d of %d)", us(pct(r.elem, 50)), us(pct(r.elem, 99)), len(r.elem), sources)
		}
		add(fmt.Sprintf("probe-to-element, %s, %d sources: tripwire probe answered; follow-ups to closed ports answered (sent at +p50 gap)", r.name, sources),
			fmt.Sprintf("%d of %d; %s (of %d each); %s; %d elements", r.tripAnswered, sources, strings.Join(follow, ", "), sources, el, r.elementsInKernel), "first strike: 0 answered")
		add(fmt.Sprintf("daemon's record, %s: probe (capture time) to its \"has been blocked\" line", r.name),
			fmt.Sprintf("p50 %s, p99 %s, max %s; its histogram (NFLOG copy in to record): %s", us(pct(r.lag, 50)), us(pct(r.lag, 99)), us(pct(r.lag, 100)), r.hist), "")
	}
	if len(results) == 2 && len(results[1].elem) > 0 {
		fs, usr := results[0], results[1]
		add("daemon's lag behind the kernel", fmt.Sprintf("the kernel's element is in before the source's next packet (follow-up +%s: %d of %d answered, user space %d); the daemon follows at p50 %s, p99 %s; user space's element at p50 %s, p99 %s",
			usShort(pct(fs.followGap[0], 50)), fs.followAnswered[0], sources, usr.followAnswered[0], us(pct(fs.lag, 50)), us(pct(fs.lag, 99)), us(pct(usr.elem, 50)), us(pct(usr.elem, 99))), "")
	}
}

// sendBoth sends two IPv4 packets to dst in one sendmmsg call.
func sendBoth(b *testing.B, fd int, dst netip.Addr, p1, p2 []byte) {
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dst.As4()}
	iov := make([]unix.Iovec, 2)
	msgs := make([]unix.Mmsghdr, 2)
	for i, p := range [][]byte{p1, p2} {
		iov[i].Base = &p[0]
		iov[i].SetLen(len(p))
		msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&sa))
		msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
		msgs[i].Hdr.Iov = &iov[i]
		msgs[i].Hdr.SetIovlen(1)
	}
	n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), 2, 0, 0, 0)
	runtime.KeepAlive(p1)
	runtime.KeepAlive(p2)
	runtime.KeepAlive(iov)
	runtime.KeepAlive(msgs)
	runtime.KeepAlive(&sa)
	if errno != 0 || n != 2 {
		b.Fatalf("sendmmsg: %d sent, %v", n, errno)
	}
}

func usShort(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d.Nanoseconds())/1000) }

// scrapeHistogram reads portsentry_probe_to_block_seconds from the
// daemon's metrics endpoint in ns: the mean, and the p50 and p99 as the
// upper bounds of their buckets.
func scrapeHistogram(b *testing.B, ns *netnstest.NS) string {
	resp, err := ns.HTTPClient().Get("http://127.0.0.1:9187/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	type bucket struct {
		le float64
		n  float64
	}
	var buckets []bucket
	var sum, count float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "portsentry_probe_to_block_seconds") {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		switch {
		case strings.HasPrefix(line, "portsentry_probe_to_block_seconds_bucket{le=\""):
			le := strings.TrimSuffix(strings.TrimPrefix(f[0], "portsentry_probe_to_block_seconds_bucket{le=\""), "\"}")
			x, err := strconv.ParseFloat(le, 64)
			if le == "+Inf" {
				x, err = math.Inf(1), nil
			}
			if err == nil {
				buckets = append(buckets, bucket{x, v})
			}
		case strings.HasPrefix(line, "portsentry_probe_to_block_seconds_sum"):
			sum = v
		case strings.HasPrefix(line, "portsentry_probe_to_block_seconds_count"):
			count = v
		}
	}
	if count == 0 {
		return "no observation"
	}
	q := func(p float64) string {
		for _, bk := range buckets {
			if bk.n >= p*count {
				if math.IsInf(bk.le, 1) {
					return "> 1 s"
				}
				return fmt.Sprintf("<= %s", us(time.Duration(bk.le*float64(time.Second))))
			}
		}
		return "?"
	}
	return fmt.Sprintf("mean %s, p50 %s, p99 %s over %.0f", us(time.Duration(sum/count*float64(time.Second))), q(0.5), q(0.99), count)
}
