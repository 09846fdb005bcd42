package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// SIGHUP applies a new configuration in place and keeps every block; a
// configuration with errors is refused and the running one stays.
func TestReloadKeepsBlocksAndRefusesBrokenConfig(t *testing.T) {
	netnstest.Require(t, "hping3")
	p := netnstest.NewPair(t)
	d := startDaemon(t, p.A, "")
	hping(t, p.B, "-S", "-c", "1", "-p", "1", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)

	// A valid change: port 8081 becomes a tripwire.
	rewriteConfig(t, d.config, "tcp: {ports: [aware, 8081]}\n")
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog("configuration reloaded; every block kept.", 5*time.Second)
	if !strings.Contains(p.A.MustRun("nft", "list", "set", "inet", "portsentry", "tcp_ports"), "8081") {
		t.Error("reload did not install the new port list")
	}
	if netnstest.ElementLine(listSet(t, p.A, "blocked"), netnstest.AddrB) == "" {
		t.Fatal("reload lost the block")
	}

	// A broken file: refused, logged with file:line, old ruleset and blocks stay.
	rewriteConfig(t, d.config, "tcp: {ports: [70000]}\n")
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog("reload refused, keeping the running configuration: "+d.config+":3:15: tcp.ports[0]: port 70000 is outside 1-65535", 5*time.Second)
	if !strings.Contains(p.A.MustRun("nft", "list", "set", "inet", "portsentry", "tcp_ports"), "8081") {
		t.Error("a refused reload changed the ruleset")
	}
	if netnstest.ElementLine(listSet(t, p.A, "blocked"), netnstest.AddrB) == "" {
		t.Fatal("a refused reload lost the block")
	}
}

// SIGHUPs during start-up (logrotate during a long restore) neither end
// nor crash the daemon: they wait for READY, then reload once it is.
func TestSIGHUPDuringStartup(t *testing.T) {
	ns := netnstest.New(t, "psH")
	f := writeConfig(t, "block: {set_size: 200000}\n")
	stateDir := filepath.Join(filepath.Dir(f), "state")
	os.MkdirAll(stateDir, 0o700)
	var sb strings.Builder
	exp := time.Now().Add(2 * time.Hour).UnixMilli()
	for i := 0; i < 50000; i++ { // a restore long enough to signal into
		fmt.Fprintf(&sb, "add\t10.%d.%d.%d\t%d\t3600000\t1\t1\t\t0\t0\t\"TCP SYN scan\"\t\"TCP\"\t\"\"\t\"\"\n", 120+i>>16, byte(i>>8), byte(i), exp)
	}
	os.WriteFile(filepath.Join(stateDir, "blocks.journal"), []byte(sb.String()), 0o600)
	d := &daemon{t: t, ns: ns, config: f, out: &netnstest.Output{}}
	t.Cleanup(d.stop)
	d.cmd = ns.Command(context.Background(), daemonBinary(t), "run", "--config", f)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.done = make(chan error, 1)
	go func() { d.done <- d.cmd.Wait() }()
	time.Sleep(50 * time.Millisecond) // the Go runtime is up; the state is loading
	sent := 0
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(d.out.String(), "PortSentry is initialized and monitoring."); {
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 10s:\n%s", d.out)
		}
		select {
		case err := <-d.done:
			t.Fatalf("the daemon ended (%v) after %d SIGHUPs during start-up:\n%s", err, sent, d.out)
		default:
		}
		d.cmd.Process.Signal(syscall.SIGHUP)
		sent++
		time.Sleep(5 * time.Millisecond)
	}
	if sent < 2 {
		t.Fatalf("only %d SIGHUP sent before READY: the start-up was too short to test", sent)
	}
	d.waitLog("adminalert: configuration reloaded; every block kept.", 5*time.Second)
	before, _, _ := strings.Cut(d.out.String(), "PortSentry is initialized and monitoring.")
	if strings.Contains(before, "SIGHUP: reloading") {
		t.Error("a reload ran before READY")
	}
	t.Logf("%d SIGHUPs during start-up", sent)
}
