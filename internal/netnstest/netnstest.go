// Package netnstest gives privileged tests their own little network: named
// network namespaces joined by a veth pair, created per test and removed
// when it ends. Tests never touch the root namespace's interfaces or
// ruleset, and never send to an address outside the namespaces they made.
//
// Addresses: namespace A has 10.201.0.1/24 and fd00:201::1/64 on its end of
// the pair, namespace B has .2 and ::2.
package netnstest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Addresses of the pair made by NewPair.
const (
	AddrA  = "10.201.0.1"
	AddrB  = "10.201.0.2"
	Addr6A = "fd00:201::1"
	Addr6B = "fd00:201::2"
)

var (
	probeOnce sync.Once
	probeErr  error
	counter   atomic.Int64
)

// Require stops the test unless it can create network namespaces and load
// nftables rules (root, iproute2, nft). Outside CI it skips with the
// reason; under CI (CI set in the environment) it fails, since CI runs as
// root and a skipped privileged test there would hide a missing test.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	probeOnce.Do(func() { probeErr = probe() })
	err := probeErr
	for _, tool := range tools {
		if err == nil {
			if _, lerr := exec.LookPath(tool); lerr != nil {
				err = fmt.Errorf("%s not installed (make test installs it)", tool)
			}
		}
	}
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("privileged test cannot run under CI: %v", err)
	}
	t.Skipf("SKIPPING PRIVILEGED TEST: %v (run as root: sudo make test)", err)
}

func probe() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("not root")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not installed", tool)
		}
	}
	name := fmt.Sprintf("psprobe%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add: %v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", name).Run()
	if out, err := exec.Command("ip", "netns", "exec", name, "nft", "add", "table", "inet", "probe").CombinedOutput(); err != nil {
		return fmt.Errorf("nftables in a namespace: %v: %s", err, out)
	}
	return nil
}

// NS is one network namespace created for a test.
type NS struct {
	Name string
	t    testing.TB
}

// New creates a namespace with a unique name (prefix, pid, counter) and
// loopback up; it is deleted, with every process still in it, at cleanup.
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	Require(t)
	ns := &NS{Name: fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), counter.Add(1)), t: t}
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns.Name, err, out)
	}
	t.Cleanup(ns.remove)
	ns.MustRun("ip", "link", "set", "lo", "up")
	return ns
}

func (ns *NS) remove() {
	// Kill what is left in the namespace, then delete it.
	if out, err := exec.Command("ip", "netns", "pids", ns.Name).Output(); err == nil {
		for _, pid := range strings.Fields(string(out)) {
			if n, err := strconv.Atoi(pid); err == nil {
				syscall.Kill(n, syscall.SIGKILL)
			}
		}
	}
	exec.Command("ip", "netns", "del", ns.Name).Run()
}

// Path is the namespace's bind mount, for setns(2) or nsenter.
func (ns *NS) Path() string { return "/run/netns/" + ns.Name }

// Open opens the namespace file (for WithNetNSFd / nflog Config.NetNS).
// It is closed at cleanup.
func (ns *NS) Open() *os.File {
	ns.t.Helper()
	f, err := os.Open(ns.Path())
	if err != nil {
		ns.t.Fatalf("open %s: %v", ns.Path(), err)
	}
	ns.t.Cleanup(func() { f.Close() })
	return f
}

// Command returns a command that runs inside the namespace.
func (ns *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Run runs a command in the namespace with a 2 minute bound and returns
// its combined output.
func (ns *NS) Run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var buf bytes.Buffer
	cmd := ns.Command(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s (in %s): %w\n%s", name, strings.Join(args, " "), ns.Name, err, buf.String())
	}
	return buf.String(), err
}

// MustRun is Run that fails the test on error.
func (ns *NS) MustRun(name string, args ...string) string {
	ns.t.Helper()
	out, err := ns.Run(name, args...)
	if err != nil {
		ns.t.Fatal(err)
	}
	return out
}

// Pair is two namespaces joined by a veth pair: A (the protected host)
// and B (the attacker), with AddrA/Addr6A and AddrB/Addr6B.
type Pair struct {
	A, B *NS
	// IfA is the name of A's veth end, as the daemon sees it.
	IfA string
}

// NewPair creates A and B, the veth pair and their addresses (IPv6 with
// DAD off so addresses work at once).
func NewPair(t testing.TB) *Pair {
	t.Helper()
	p := &Pair{A: New(t, "psA"), B: New(t, "psB"), IfA: "veth-a"}
	p.A.MustRun("ip", "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b", "netns", p.B.Name)
	p.A.MustRun("ip", "addr", "add", AddrA+"/24", "dev", "veth-a")
	p.A.MustRun("ip", "addr", "add", Addr6A+"/64", "dev", "veth-a", "nodad")
	p.A.MustRun("ip", "link", "set", "veth-a", "up")
	p.B.MustRun("ip", "addr", "add", AddrB+"/24", "dev", "veth-b")
	p.B.MustRun("ip", "addr", "add", Addr6B+"/64", "dev", "veth-b", "nodad")
	p.B.MustRun("ip", "link", "set", "veth-b", "up")
	return p
}

// Output collects a process's output while a test reads it.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// ElementLine returns the "ADDR timeout ... expires ..." text of addr in
// an `nft list set` listing, or "" when addr is not an element.
func ElementLine(listing, addr string) string {
	i := strings.Index(listing, "elements = {")
	if i < 0 {
		return ""
	}
	body := listing[i+len("elements = {"):]
	if j := strings.Index(body, "}"); j >= 0 {
		body = body[:j]
	}
	for _, el := range strings.Split(body, ",") {
		el = strings.Join(strings.Fields(el), " ")
		if strings.HasPrefix(el, addr+" ") || el == addr {
			return el
		}
	}
	return ""
}

// Dial connects from inside the namespace: the socket is made on a thread
// that has joined it (a socket stays in the namespace it was made in), and
// the thread goes back to its own namespace after.
func (ns *NS) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	runtime.LockOSThread()
	own, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer own.Close()
	target, err := os.Open(ns.Path())
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("setns %s: %w", ns.Name, err)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, address)
	if unix.Setns(int(own.Fd()), unix.CLONE_NEWNET) == nil {
		runtime.UnlockOSThread() // else the thread stays locked and ends with the goroutine
	}
	return c, err
}

// HTTPClient is a client whose connections are made inside the namespace.
func (ns *NS) HTTPClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: ns.Dial, DisableKeepAlives: true}}
}

// LAN is several namespaces on one Ethernet segment: a bridge (br0) in a
// namespace of its own, and one veth pair per member, whose member end is
// "lan0" with the member's IPv4 address in 10.201.0.0/24.
type LAN struct {
	// Bridge holds br0 and the bridge ends of the members' pairs.
	Bridge *NS
	t      testing.TB
	n      int
}

// NewLAN creates the bridge namespace; add members with Join.
func NewLAN(t testing.TB) *LAN {
	t.Helper()
	l := &LAN{Bridge: New(t, "psLANbr"), t: t}
	l.Bridge.MustRun("ip", "link", "add", "br0", "type", "bridge")
	l.Bridge.MustRun("ip", "link", "set", "br0", "up")
	return l
}

// Join creates a namespace (prefix as in New) on the LAN with addr (an
// IPv4 address in 10.201.0.0/24, given without a prefix length). Its
// port on the bridge is returned with it, for `ip link set PORT down`
// in l.Bridge.
func (l *LAN) Join(prefix, addr string) (*NS, string) {
	l.t.Helper()
	ns := New(l.t, prefix)
	l.n++
	port := fmt.Sprintf("port%d", l.n)
	l.Bridge.MustRun("ip", "link", "add", port, "type", "veth", "peer", "name", "lan0", "netns", ns.Name)
	l.Bridge.MustRun("ip", "link", "set", port, "master", "br0")
	l.Bridge.MustRun("ip", "link", "set", port, "up")
	ns.MustRun("ip", "addr", "add", addr+"/24", "dev", "lan0")
	ns.MustRun("ip", "link", "set", "lan0", "up")
	return ns, port
}
