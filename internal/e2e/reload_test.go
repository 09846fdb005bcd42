package e2e

import (
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
