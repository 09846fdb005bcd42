package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// forgeScript sends one SYN from src to dst's tripwire port 1 (scapy, the
// sender's own stack routes it): what an off-path forger sends.
const forgeScript = `
import sys
from scapy.all import IP, IPv6, TCP, send, conf
conf.verb = 0
src, dst = sys.argv[1:3]
ip = IPv6(src=src, dst=dst) if ":" in dst else IP(src=src, dst=dst)
send(ip / TCP(sport=40001, dport=1, flags="S"), count=1)
`

// session is a TCP connection from B to an echo service on A (ncat), the
// kind of session a forged packet must not end.
type session struct {
	in    io.WriteCloser
	lines chan string
}

// echoServer runs `ncat -k -l port --exec /bin/cat` in A until the test ends.
func echoServer(t *testing.T, p *netnstest.Pair, port int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	srv := p.A.Command(ctx, "ncat", "-k", "-l", fmt.Sprint(port), "--exec", "/bin/cat")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); srv.Wait() })
	time.Sleep(300 * time.Millisecond) // the listener, and the daemon's next look at listeners
}

// dial opens a session from B to dst:port, closed when the test ends.
func dial(t *testing.T, p *netnstest.Pair, dst string, port int) *session {
	t.Helper()
	return dialArgs(t, p, dst, fmt.Sprint(port))
}

// dialFrom opens a session from B's address src to dst:port.
func dialFrom(t *testing.T, p *netnstest.Pair, src, dst string, port int) *session {
	t.Helper()
	return dialArgs(t, p, "-s", src, dst, fmt.Sprint(port))
}

func dialArgs(t *testing.T, p *netnstest.Pair, args ...string) *session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := p.B.Command(ctx, "ncat", args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &session{in: in, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	t.Cleanup(func() { in.Close(); cancel(); cmd.Wait() })
	return s
}

// echo sends msg and reports whether it came back within 3 s.
func (s *session) echo(msg string) bool {
	if _, err := fmt.Fprintln(s.in, msg); err != nil {
		return false
	}
	select {
	case got, ok := <-s.lines:
		return ok && got == msg
	case <-time.After(3 * time.Second):
		return false
	}
}

// S1 (issue 21): a client with an open TCP session to A, then one SYN
// forged from the client's address to a tripwire. The client is a peer:
// it is not blocked, and its session keeps working. IPv4 and IPv6.
func TestForgedProbeSparesPeer(t *testing.T) {
	py := scapyPython(t)
	netnstest.Require(t, "ncat")
	for _, fam := range []struct{ name, a, b, set, yaml string }{
		{"v4", netnstest.AddrA, netnstest.AddrB, "blocked", ""},
		{"v6", netnstest.Addr6A, netnstest.Addr6B, "blocked6", ""},
		// NFQUEUE: a held probe carries no rule; the daemon asks peers6.
		{"v6_nfqueue", netnstest.Addr6A, netnstest.Addr6B, "blocked6", "capture: {mode: nfqueue, queue: 4}\n"},
	} {
		t.Run(fam.name, func(t *testing.T) {
			p := netnstest.NewPair(t)
			d := startDaemon(t, p.A, fam.yaml)
			echoServer(t, p, 8080)
			s := dial(t, p, fam.a, 8080)
			if !s.echo("before") {
				t.Fatal("the session does not work before the forged probe")
			}
			p.B.MustRun("timeout", "30", py, "-c", forgeScript, fam.b, fam.a)
			waitAnyLog(d, 5*time.Second, "attackalert: Host "+fam.b+" not blocked: "+fam.b+" is a peer", "has been blocked")
			assertNotBlocked(t, p.A, fam.b)
			if !s.echo("after") {
				t.Errorf("the peer's session died after one forged probe; %s:\n%s", fam.set, listSet(t, p.A, fam.set))
			}
			if strings.Contains(d.out.String(), "has been blocked") {
				t.Errorf("a block was made:\n%s", d.out)
			}
		})
	}
}

// A scanner cannot make itself immune by first completing a connection:
// it is a peer, but a SYN scan of 1024 ports touches 3 tripwires quickly,
// and it is blocked on this host. IPv4 and IPv6.
func TestPeerThatScansIsBlocked(t *testing.T) {
	netnstest.Require(t, "ncat", "nmap")
	for _, fam := range []struct {
		name, a, b, set string
		nmap            []string
	}{
		{"v4", netnstest.AddrA, netnstest.AddrB, "blocked", nil},
		{"v6", netnstest.Addr6A, netnstest.Addr6B, "blocked6", []string{"-6"}},
	} {
		t.Run(fam.name, func(t *testing.T) {
			p := netnstest.NewPair(t)
			d := startDaemon(t, p.A, "")
			echoServer(t, p, 8080)
			if s := dial(t, p, fam.a, 8080); !s.echo("hello") {
				t.Fatal("no session")
			}
			if netnstest.ElementLine(listSet(t, p.A, peersSet(fam.set)), fam.b) == "" {
				t.Fatalf("%s is no peer after a completed connection:\n%s", fam.b, listSet(t, p.A, peersSet(fam.set)))
			}
			args := append(fam.nmap, "-sS", "-T4", "--max-retries", "0", "-p", "1-1024", fam.a)
			out := nmap(t, p.B, args...)
			waitBlocked(t, p.A, fam.set, fam.b, 5*time.Second)
			t.Logf("the peer's scan: %d of 1024 ports answered", answeredPorts(out))
			d.waitLog("attackalert: Host "+fam.b+" not blocked: "+fam.b+" is a peer", time.Second)
		})
	}
}

// waitAnyLog waits until d's output holds one of lines (no failure).
func waitAnyLog(d *daemon, within time.Duration, lines ...string) {
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		out := d.out.String()
		for _, l := range lines {
			if strings.Contains(out, l) {
				return
			}
		}
	}
}

func peersSet(blocked string) string { return strings.Replace(blocked, "blocked", "peers", 1) }
