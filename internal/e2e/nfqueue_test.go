package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

var closedOrOpenRe = regexp.MustCompile(`(?m)^(\d+)/tcp\s+(open|closed)\b`)

// NFQUEUE mode: the verdict on the triggering probe waits for the block, so
// the scanner gets no answer from any monitored port; when the daemon is
// stopped the queue is bypassed and traffic flows.
func TestNFQueueInlineBlocking(t *testing.T) {
	netnstest.Require(t, "nmap", "ncat")
	p := netnstest.NewPair(t)
	c := client(t, p.A)
	serve(t, p.A, "0.0.0.0", "8080", "web-here")
	d := startDaemon(t, p.A, "capture: {mode: nfqueue, queue: 3}\n")
	if strings.Contains(d.out.String(), "nft_compat") {
		t.Log("this kernel has no nft_queue: the xtables NFQUEUE target is in use")
	} else {
		t.Log("queueing with the nft queue statement")
	}
	// From C: a connection from B would make it a peer, which the first
	// two tripwires do not block (TestPeerThatScansIsBlocked).
	if !canConnect(c, "10.201.203.1", "8080", "web-here") {
		t.Fatal("the open port is not reachable before the scan")
	}

	out := nmap(t, p.B, "-sS", "-p", "1,11,15,79,111,119,143,540", netnstest.AddrA)
	if m := closedOrOpenRe.FindAllString(out, -1); len(m) > 0 {
		t.Errorf("the scanner got answers from monitored ports %v before its block:\n%s", m, out)
	}
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
	d.waitLog("attackalert: Host 10.201.0.2 has been blocked", 5*time.Second)

	// Another client still reaches the open port; the scanner does not.
	if !canConnect(c, "10.201.203.1", "8080", "web-here") {
		t.Error("a bystander cannot reach the open port")
	}
	if canConnect(p.B, netnstest.AddrA, "8080", "web-here") {
		t.Error("the blocked scanner reaches the open port")
	}

	// Daemon stopped: the queue rule stays, with bypass, so traffic flows
	// (fail-open): a probe of a monitored port from C is answered (closed).
	d.stop()
	out = nmap(t, c, "-sS", "-p", "1,8080", "10.201.203.1")
	if !regexp.MustCompile(`(?m)^1/tcp\s+closed`).MatchString(out) || !regexp.MustCompile(`(?m)^8080/tcp\s+open`).MatchString(out) {
		t.Errorf("with the daemon stopped, traffic should pass the bypassed queue:\n%s", out)
	}
}
