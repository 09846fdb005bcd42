package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// client adds namespace C, linked to A by its own veth pair:
// A has 10.201.203.1/24, C has 10.201.203.2.
func client(t testing.TB, a *netnstest.NS) *netnstest.NS {
	t.Helper()
	c := netnstest.New(t, "psC")
	a.MustRun("ip", "link", "add", "veth-c", "type", "veth", "peer", "name", "veth-ca", "netns", c.Name)
	a.MustRun("ip", "addr", "add", "10.201.203.1/24", "dev", "veth-c")
	a.MustRun("ip", "link", "set", "veth-c", "up")
	c.MustRun("ip", "addr", "add", "10.201.203.2/24", "dev", "veth-ca")
	c.MustRun("ip", "link", "set", "veth-ca", "up")
	return c
}

// Ports with a live service are never tripwires, even inside a watched
// range: the scanner is blocked, a hundred legitimate clients are not.
func TestLiveServicesAreNeverTripwires(t *testing.T) {
	netnstest.Require(t, "nmap", "ncat")
	p := netnstest.NewPair(t)
	c := client(t, p.A)
	serve(t, p.A, "0.0.0.0", "22", "ssh-here")
	serve(t, p.A, "0.0.0.0", "8080", "web-here")
	d := startDaemon(t, p.A, "tcp: {ports: [\"1-1024\", 8080]}\n")
	d.waitLog("adminalert: Not watching TCP port 22", 2*time.Second)
	d.waitLog("adminalert: Not watching TCP port 8080", 2*time.Second)

	nmap(t, p.B, "-sS", "-p", "1-1024,8080", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)

	for i := 0; i < 100; i++ {
		port, want := "22", "ssh-here"
		if i%2 == 1 {
			port, want = "8080", "web-here"
		}
		if !canConnect(c, "10.201.203.1", port, want) {
			t.Fatalf("connection %d from C to port %s failed", i, port)
		}
	}
	assertNotBlocked(t, p.A, "10.201.203.2")
	if strings.Contains(d.out.String(), "from host 10.201.203.2/") {
		t.Errorf("clients of live services were reported as scans:\n%s", d.out)
	}
}

// A service that starts listening on a watched port is no longer watched
// within a second; when it stops, the port is a tripwire again.
func TestListenerComingAndGoing(t *testing.T) {
	netnstest.Require(t, "ncat", "hping3")
	p := netnstest.NewPair(t)
	c := client(t, p.A)
	d := startDaemon(t, p.A, "tcp: {ports: [1-1024, 8080]}\n")

	ctx, cancel := context.WithCancel(context.Background())
	srv := p.A.Command(ctx, "ncat", "-l", "-k", "0.0.0.0", "8080", "--sh-exec", "echo late-service")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); srv.Wait() }()
	d.waitLog("TCP port 8080", 3*time.Second)
	d.waitLog("is now in use by a service; no longer watching it", 3*time.Second)
	if !strings.Contains(p.A.MustRun("nft", "list", "set", "inet", "portsentry", "tcp_inuse"), "8080") {
		t.Error("8080 is not in the kernel's in-use set")
	}
	if !canConnect(c, "10.201.203.1", "8080", "late-service") {
		t.Fatal("C cannot reach the new service")
	}
	assertNotBlocked(t, p.A, "10.201.203.2")

	cancel()
	srv.Wait()
	d.waitLog("TCP port 8080 is no longer in use; watching it again", 3*time.Second)
	// C used the service: it is a peer, which one probe does not block. B
	// is none.
	hping(t, p.B, "-S", "-c", "1", "-p", "8080", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
}

// A listener on 127.0.0.1:111 does not shadow 111 on the public address.
func TestLoopbackListenerDoesNotShadowPublicAddress(t *testing.T) {
	netnstest.Require(t, "ncat", "hping3")
	p := netnstest.NewPair(t)
	serve(t, p.A, "127.0.0.1", "111", "rpcbind-local")
	d := startDaemon(t, p.A, "")
	d.waitLog("adminalert: Not watching TCP port 111", 2*time.Second)
	if !strings.Contains(p.A.MustRun("nft", "list", "set", "inet", "portsentry", "tcp_inuse4"), "127.0.0.1 . 111") {
		t.Error("the loopback listener is not in tcp_inuse4")
	}
	hping(t, p.B, "-S", "-c", "1", "-p", "111", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
}

// Advanced mode (every port below N minus excludes minus listeners).
func TestAdvancedModeExcludes(t *testing.T) {
	netnstest.Require(t, "hping3", "ncat")
	p := netnstest.NewPair(t)
	serve(t, p.A, "0.0.0.0", "22", "ssh-here")
	d := startDaemon(t, p.A, "tcp: {ports: [], advanced: {below: 1024, exclude: [113, 139]}}\n")
	for _, port := range []string{"113", "139", "22"} {
		hping(t, p.B, "-S", "-c", "1", "-p", port, netnstest.AddrA)
	}
	time.Sleep(500 * time.Millisecond)
	assertNotBlocked(t, p.A, netnstest.AddrB)
	for _, port := range []int{113, 139, 22} {
		if strings.Contains(d.out.String(), fmt.Sprintf("to TCP port: %d ", port)) {
			t.Errorf("a probe of excluded/in-use port %d was reported", port)
		}
	}
	hping(t, p.B, "-S", "-c", "1", "-p", "777", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
}
