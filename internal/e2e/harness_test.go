package e2e

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// daemonBinary builds cmd/portsentry-nft once per test run.
func daemonBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "portsentry-nft-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "portsentry-nft")
		out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/portsentry-nft").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// daemon is portsentry-nft run in namespace ns.
type daemon struct {
	t      testing.TB
	ns     *netnstest.NS
	config string
	cmd    *exec.Cmd
	out    *netnstest.Output
	done   chan error
	// tap, when set, also gets the daemon's output as it is written
	// (to timestamp its lines).
	tap io.Writer
}

// writeConfig writes a YAML config for a test; state goes to a temp dir
// beside it.
func writeConfig(t testing.TB, yaml string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "portsentry.yaml")
	rewriteConfig(t, f, yaml)
	return f
}

// rewriteConfig replaces the config at f, keeping its state directory.
func rewriteConfig(t testing.TB, f, yaml string) {
	t.Helper()
	dir := filepath.Dir(f)
	yaml = "state: {dir: " + filepath.Join(dir, "state") + "}\ncontrol: {socket: " + filepath.Join(dir, "control.sock") + "}\n" + yaml
	if err := os.WriteFile(f, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startDaemon runs the daemon in ns with the given YAML and waits until it
// says it is monitoring.
func startDaemon(t testing.TB, ns *netnstest.NS, yaml string) *daemon {
	t.Helper()
	d := &daemon{t: t, ns: ns, config: writeConfig(t, yaml)}
	t.Cleanup(d.stop)
	d.start()
	return d
}

func (d *daemon) start() {
	d.t.Helper()
	d.out = &netnstest.Output{}
	d.cmd = d.ns.Command(context.Background(), daemonBinary(d.t), "run", "--config", d.config)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if d.tap != nil {
		w := io.MultiWriter(d.out, d.tap)
		d.cmd.Stdout, d.cmd.Stderr = w, w
	}
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.done = make(chan error, 1)
	go func() { d.done <- d.cmd.Wait() }()
	d.waitLog("PortSentry is initialized and monitoring.", 10*time.Second)
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	defer func() { d.cmd = nil }()
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			d.t.Errorf("daemon exited with %v after SIGTERM; output:\n%s", err, d.out)
		}
	case <-time.After(10 * time.Second):
		// SIGQUIT: the Go runtime writes every goroutine's stack to the
		// output, which shows what held the stop up.
		d.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-d.done:
		case <-time.After(3 * time.Second):
			d.cmd.Process.Kill()
		}
		d.t.Errorf("daemon did not stop within 10s of SIGTERM; output (its goroutines' stacks at the end):\n%s", d.out)
	}
}

// waitLog waits until the daemon's output contains s.
func (d *daemon) waitLog(s string, within time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if strings.Contains(d.out.String(), s) {
			return
		}
		select {
		case err := <-d.done:
			d.t.Fatalf("daemon exited (%v) before logging %q; output:\n%s", err, s, d.out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	d.t.Fatalf("no %q within %s; daemon output:\n%s", s, within, d.out)
}

// socket is the daemon's control socket.
func (d *daemon) socket() string { return filepath.Join(filepath.Dir(d.config), "control.sock") }

// cli runs a portsentry-nft subcommand against this daemon's socket.
func (d *daemon) cli(args ...string) (string, error) {
	cmd := exec.Command(daemonBinary(d.t), append(args[:1:1], append([]string{"--socket", d.socket()}, args[1:]...)...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// listSet is `nft list set inet portsentry NAME` in ns.
func listSet(t testing.TB, ns *netnstest.NS, name string) string {
	t.Helper()
	return ns.MustRun("nft", "list", "set", "inet", "portsentry", name)
}

// waitBlocked waits until addr is an element of set, with a timeout, as
// the admin sees it in `nft list set`.
func waitBlocked(t testing.TB, ns *netnstest.NS, set, addr string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	var out string
	for time.Now().Before(deadline) {
		out = listSet(t, ns, set)
		if netnstest.ElementLine(out, addr) != "" {
			return netnstest.ElementLine(out, addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s not in set %s within %s:\n%s", addr, set, within, out)
	return ""
}

func assertNotBlocked(t testing.TB, ns *netnstest.NS, addrs ...string) {
	t.Helper()
	for _, set := range []string{"blocked", "blocked6"} {
		out := listSet(t, ns, set)
		for _, a := range addrs {
			if netnstest.ElementLine(out, a) != "" {
				t.Errorf("%s is in set %s but must not be:\n%s", a, set, out)
			}
		}
	}
}

// attack runs a scanner in ns (bounded by a timeout) and returns its output.
func attack(t testing.TB, ns *netnstest.NS, tool string, args ...string) string {
	t.Helper()
	out, err := ns.Run("timeout", append([]string{"60", tool}, args...)...)
	if err != nil && !strings.Contains(err.Error(), "exit status") {
		t.Fatalf("%s: %v", tool, err)
	}
	return out
}

// nmap runs nmap from ns without ping or DNS, bounded in time.
func nmap(t testing.TB, ns *netnstest.NS, args ...string) string {
	t.Helper()
	netnstest.Require(t, "nmap")
	base := []string{"-Pn", "-n", "--max-retries", "1", "--host-timeout", "30s"}
	return attack(t, ns, "nmap", append(base, args...)...)
}

// hping sends count probes with hping3 from ns.
func hping(t testing.TB, ns *netnstest.NS, args ...string) string {
	t.Helper()
	netnstest.Require(t, "hping3")
	return attack(t, ns, "hping3", args...)
}

func runCmd(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// scanUntilBlocked runs `nmap -sS -T4 -p 1-1024` from B at A while it
// watches A's blocked set. It returns how long after nmap's start B was in
// the set (0: not within `within`) and how many ports nmap saw answered.
func scanUntilBlocked(t testing.TB, p *netnstest.Pair, within time.Duration) (time.Duration, int) {
	t.Helper()
	start := time.Now()
	scan := make(chan string, 1)
	go func() {
		out, _ := p.B.Run("timeout", "60", "nmap", "-Pn", "-n", "-sS", "-T4", "--max-retries", "0",
			"--host-timeout", "50s", "-p", "1-1024", netnstest.AddrA)
		scan <- out
	}()
	var took time.Duration
	for took == 0 && time.Since(start) < within {
		if netnstest.ElementLine(listSet(t, p.A, "blocked"), netnstest.AddrB) != "" {
			took = time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return took, answeredPorts(<-scan)
}

// elementAdd is an address added to a set of ns's nftables, and when its
// netlink event arrived.
type elementAdd struct {
	Addr netip.Addr
	At   time.Time
}

// elementAdds follows the element adds of ns's nftables (NEWSETELEM
// events) until stop is called (at the latest when the test ends; the
// channel is closed then). Only adds made through netlink are notified
// (the daemon's writer): the kernel's own adds from the packet path (the
// first strike) send none. Adds beyond the channel's room are dropped
// rather than stall the monitor.
//
// Stop as soon as the step that reads it ends: netlink keeps one bitmap of
// a protocol's subscribed groups for all namespaces, so while this
// monitor lives, every nftables commit in every namespace of the machine
// builds a notification per element (it doubled the time of a later
// step's 1M-element restore).
func elementAdds(t testing.TB, ns *netnstest.NS) (adds <-chan elementAdd, stop func()) {
	t.Helper()
	conn, err := nft.DialQuery(ns.Open())
	if err != nil {
		t.Fatal(err)
	}
	mon := nftables.NewMonitor(nftables.WithMonitorObject(nftables.MonitorObjectElements), nftables.WithMonitorAction(nftables.MonitorActionNew))
	events, err := conn.AddMonitor(mon)
	if err != nil {
		t.Fatal(err)
	}
	stop = func() { mon.Close() }
	t.Cleanup(stop)
	out := make(chan elementAdd, 1<<16)
	go func() {
		for ev := range events {
			now := time.Now()
			els, _ := ev.Data.([]nftables.SetElement)
			for _, e := range els {
				if a, ok := netip.AddrFromSlice(e.Key); ok {
					select {
					case out <- elementAdd{a, now}:
					default:
					}
				}
			}
		}
	}()
	return out, stop
}
