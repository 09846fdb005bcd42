package e2e

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// SYNs forged from the fleet's own addresses, at h1's tripwire, block
// nothing: one from each NATS server's address (h1 would cut itself off
// the fleet for the block's hour) and one from h2's (h1 would drop all of
// h2's traffic). h1 logs each as protected, stays connected, still
// mirrors h2's blocks, and still talks to h2; h2 and h3 block none of them.
func TestFleetForgedProbesFromTheFleetBlockNothing(t *testing.T) {
	f := newFleetLAN(t, "", "")
	h1, h2 := f.hosts[0], f.hosts[1]
	forged := map[string]string{h2.addr: "fleet host"}
	for i := 1; i <= 3; i++ {
		forged[serverAddr(i)] = "fleet server"
	}
	for src := range forged {
		hping(t, f.scanner, "-S", "-c", "1", "-p", "1", "-a", src, h1.addr)
	}
	for src, why := range forged {
		h1.d.waitLog(fmt.Sprintf("attackalert: Host %s is protected (%s) and is never blocked", src, why), 5*time.Second)
	}
	// What mirrors would have arrived by now (a fleet block takes
	// milliseconds; a lost connection shows within the 4-6 s of the pings).
	time.Sleep(6 * time.Second)
	for _, h := range f.hosts {
		for src := range forged {
			assertNotBlocked(t, h.ns, src)
		}
	}
	if n := counter(t, h1.d, "fleet_connected"); n != 1 {
		t.Errorf("h1 fleet_connected %d after the forged probes", n)
	}
	// h1 still hears the fleet: h2's block reaches it.
	const mark = "10.201.0.97"
	if out, err := h2.d.cli("block", mark); err != nil {
		t.Fatalf("h2 block: %v %s", err, out)
	}
	if took := waitElements(t, []*fleetHost{h1}, mark, time.Now(), 10*time.Second); took[0] == 0 {
		f.dump(t)
		t.Fatalf("h2's block of %s did not reach h1 within 10 s", mark)
	}
	// h2 still talks to h1.
	assertConnects(t, h1, h2)
}

// assertConnects checks that from can open a TCP connection to a service
// of to and read its answer.
func assertConnects(t *testing.T, to, from *fleetHost) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := to.ns.Command(ctx, "ncat", "-l", "-k", to.addr, "8080", "--sh-exec", "echo hello-"+to.name)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = srv.Wait() }()
	var last error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := from.ns.Dial(dctx, "tcp", to.addr+":8080")
		dcancel()
		if err != nil {
			last = err
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if strings.TrimSpace(line) == "hello-"+to.name {
			return
		}
		last = fmt.Errorf("read %q: %v", line, err)
	}
	t.Errorf("%s cannot talk to %s: %v", from.name, to.name, last)
}
