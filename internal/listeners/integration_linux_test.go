package listeners

import (
	"bufio"
	"context"
	"io"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// pySockets is a python3 program that opens sockets, prints "ready" and
// waits. Each argument is one socket: family (4/6), type (tcp/udp),
// address ("-": leave unbound), port, IPV6_V6ONLY (0/1, "-": leave
// alone), then optionally a peer host:port to connect to (a UDP client).
// TCP sockets without a peer listen; "tcp-bound" ones only bind.
const pySockets = `
import socket, sys, time
keep = []
for spec in sys.argv[1:]:
    f = spec.split(",")
    fam = socket.AF_INET6 if f[0] == "6" else socket.AF_INET
    typ = socket.SOCK_DGRAM if f[1] == "udp" else socket.SOCK_STREAM
    s = socket.socket(fam, typ)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if f[4] != "-":
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(f[4]))
    if f[2] != "-":
        s.bind((f[2], int(f[3])))
    if len(f) > 5:
        host, port = f[5].rsplit(":", 1)
        s.connect((host.strip("[]"), int(port)))
    elif f[1] == "tcp":
        s.listen(5)
    keep.append(s)
print("ready", flush=True)
time.sleep(3600)
`

// start runs a command in ns until the test ends. With ready set it waits
// until the command prints a line (python's "ready").
func start(t *testing.T, ns *netnstest.NS, ready bool, name string, args ...string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := ns.Command(ctx, name, args...)
	var stdout io.ReadCloser
	if ready {
		var err error
		if stdout, err = cmd.StdoutPipe(); err != nil {
			t.Fatal(err)
		}
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
	})
	if ready {
		line := make(chan string, 1)
		go func() {
			l, _ := bufio.NewReader(stdout).ReadString('\n')
			line <- l
		}()
		select {
		case l := <-line:
			if !strings.HasPrefix(l, "ready") {
				t.Fatalf("%s %v did not start: %q %s", name, args, l, stderr.String())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s %v: not ready after 10s: %s", name, args, stderr.String())
		}
	}
	return cmd
}

// python opens the sockets of specs (see pySockets) in one process.
func python(t *testing.T, ns *netnstest.NS, specs ...string) *exec.Cmd {
	t.Helper()
	return start(t, ns, true, "python3", append([]string{"-c", pySockets}, specs...)...)
}

// listenNS makes a namespace with 10.201.0.1/24 and fd00:201::1/64 on lo.
func listenNS(t *testing.T) *netnstest.NS {
	t.Helper()
	netnstest.Require(t, "ncat", "python3")
	ns := netnstest.New(t, "psL")
	ns.MustRun("ip", "addr", "add", netnstest.AddrA+"/24", "dev", "lo")
	ns.MustRun("ip", "addr", "add", netnstest.Addr6A+"/64", "dev", "lo", "nodad")
	return ns
}

// waitFor reads the namespace's sockets until ok accepts them (5s bound).
func waitFor(t *testing.T, ns *netnstest.NS, what string, ok func([]Socket) bool) []Socket {
	t.Helper()
	f := ns.Open()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := Dump(f)
		if err != nil {
			t.Fatalf("Dump: %v", err)
		}
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within 5s; Dump returned %v", what, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func find(sockets []Socket, s Socket) (Socket, bool) {
	i := slices.IndexFunc(sockets, func(x Socket) bool { return compareEndpoint(x, s) == 0 })
	if i < 0 {
		return Socket{}, false
	}
	return sockets[i], true
}

func TestIntegrationDump(t *testing.T) {
	ns := listenNS(t)
	start(t, ns, false, "ncat", "-l", "-k", netnstest.AddrA, "8080")
	start(t, ns, false, "ncat", "-l", "-k", "127.0.0.1", "111")
	start(t, ns, false, "ncat", "-u", "-l", "0.0.0.0", "69")
	python(t, ns,
		"6,tcp,::,2222,0",                   // dual-stack
		"6,tcp,::,2223,1",                   // IPv6 only
		"6,udp,"+netnstest.Addr6A+",5353,-", // one IPv6 address
		// Not listening: a connected UDP client (ephemeral port), bound
		// and connected UDP sockets, a TCP socket that is bound only.
		"4,udp,-,0,-,127.0.0.1:9",
		"4,udp,0.0.0.0,6000,-,127.0.0.1:9",
		"6,udp,::,6001,0,[::1]:9",
		"4,tcp-bound,0.0.0.0,6002,-",
	)
	want := []Socket{
		sock(ProtoTCP, "127.0.0.1", 111),
		sock(ProtoTCP, "::", 2222),
		v6only(sock(ProtoTCP, "::", 2223)),
		sock(ProtoTCP, netnstest.AddrA, 8080),
		sock(ProtoUDP, "0.0.0.0", 69),
		// An IPv6 socket bound to one address is V6Only in the kernel.
		v6only(sock(ProtoUDP, netnstest.Addr6A, 5353)),
	}
	got := waitFor(t, ns, "all listeners", func(s []Socket) bool {
		for _, w := range want {
			if _, ok := find(s, w); !ok {
				return false
			}
		}
		return true
	})
	t.Logf("Dump: %v", got)
	if !equalEndpoints(got, want) {
		t.Errorf("Dump =\n%v\nwant exactly\n%v", got, want)
	}
	for _, s := range got {
		if s.Inode == 0 {
			t.Errorf("%v: no inode", s)
		}
	}

	// The same through the Set: per address, not per port.
	set := NewSet(got)
	for _, c := range []struct {
		proto uint8
		dst   string
		port  uint16
		want  bool
	}{
		{ProtoTCP, netnstest.AddrA, 8080, true},
		{ProtoTCP, "127.0.0.1", 8080, false},
		{ProtoTCP, "127.0.0.1", 111, true},
		{ProtoTCP, netnstest.AddrA, 111, false}, // 127.0.0.1 does not shadow the public address
		{ProtoTCP, netnstest.AddrA, 2222, true},
		{ProtoTCP, netnstest.Addr6A, 2222, true},
		{ProtoTCP, netnstest.AddrA, 2223, false},
		{ProtoTCP, netnstest.Addr6A, 2223, true},
		{ProtoUDP, netnstest.AddrA, 69, true},
		{ProtoUDP, netnstest.Addr6A, 69, false},
		{ProtoUDP, netnstest.AddrA, 6000, false}, // connected
		{ProtoTCP, netnstest.AddrA, 6002, false}, // bound, not listening
	} {
		if g := set.InUse(c.proto, netip.MustParseAddr(c.dst), c.port); g != c.want {
			t.Errorf("InUse(%s %s:%d) = %v, want %v", ProtoName(c.proto), c.dst, c.port, g, c.want)
		}
	}

	// ProcessName finds who holds them.
	for _, c := range []struct {
		s    Socket
		name string
	}{
		{sock(ProtoTCP, netnstest.AddrA, 8080), "ncat"},
		{sock(ProtoUDP, "0.0.0.0", 69), "ncat"},
		{v6only(sock(ProtoTCP, "::", 2223)), "python3"},
	} {
		s, _ := find(got, c.s)
		if name := ProcessName(s.Inode); !strings.HasPrefix(name, c.name) {
			t.Errorf("ProcessName(%d) for %v = %q, want %s", s.Inode, s, name, c.name)
		}
		if pid, _ := Process(s.Inode); pid <= 0 {
			t.Errorf("Process(%d) for %v: no PID", s.Inode, s)
		}
	}
	if name := ProcessName(0); name != "" {
		t.Errorf("ProcessName(0) = %q", name)
	}
	if name := ProcessName(0xfffffff0); name != "" {
		t.Errorf("ProcessName(unknown) = %q", name)
	}
}

// TestIntegrationWatcher: a listener that starts is reported, and again
// when it stops, each within the 3s bound, with its process.
func TestIntegrationWatcher(t *testing.T) {
	ns := listenNS(t)
	start(t, ns, false, "ncat", "-l", "-k", "127.0.0.1", "111")
	waitFor(t, ns, "127.0.0.1:111", func(s []Socket) bool { return len(s) == 1 })

	changes := make(chan change, 10)
	w := &Watcher{NetNS: ns.Open(), OnChange: func(a, r []Socket) { changes <- change{a, r} }}
	added, removed, err := w.Update()
	if err != nil {
		t.Fatal(err)
	}
	if !equalEndpoints(added, []Socket{sock(ProtoTCP, "127.0.0.1", 111)}) || removed != nil {
		t.Fatalf("first Update: added %v removed %v", added, removed)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })

	next := func(what string) change {
		t.Helper()
		select {
		case c := <-changes:
			return c
		case <-time.After(3 * time.Second):
			t.Fatalf("%s: no OnChange within 3s", what)
		}
		panic("unreachable")
	}
	web := sock(ProtoTCP, netnstest.AddrA, 8080)
	dst := netip.MustParseAddr(netnstest.AddrA)
	cmd := start(t, ns, false, "ncat", "-l", "-k", netnstest.AddrA, "8080")
	c := next("listener starts")
	if !equalEndpoints(c.added, []Socket{web}) || c.removed != nil {
		t.Fatalf("OnChange(%v, %v), want (%v, nil)", c.added, c.removed, web)
	}
	if !w.Snapshot().InUse(ProtoTCP, dst, 8080) {
		t.Error("Snapshot does not show the new listener")
	}
	if name := ProcessName(c.added[0].Inode); name != "ncat" {
		t.Errorf("ProcessName = %q, want ncat", name)
	}

	cmd.Process.Kill()
	c = next("listener stops")
	if !equalEndpoints(c.removed, []Socket{web}) || c.added != nil {
		t.Fatalf("OnChange(%v, %v), want (nil, %v)", c.added, c.removed, web)
	}
	if w.Snapshot().InUse(ProtoTCP, dst, 8080) {
		t.Error("Snapshot still shows the stopped listener")
	}
	if !w.Snapshot().InUse(ProtoTCP, netip.MustParseAddr("127.0.0.1"), 111) {
		t.Error("Snapshot lost 127.0.0.1:111")
	}
}
