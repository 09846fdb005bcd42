package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// The real scanners, run at a host with the daemon, are named in `list`
// (and list --json) by the tool their first probe came from
// (internal/scanner), and status --json counts their probes under it:
// nmap -sS, nmap -sT, masscan and Debian's zmap.
func TestToolNamedInList(t *testing.T) {
	netnstest.Require(t, "nmap", "masscan", "zmap")
	for _, tc := range []struct {
		name, tool, src string
		run             func(t *testing.T, p *netnstest.Pair)
	}{
		{"nmap-sS", "nmap-syn", netnstest.AddrB, func(t *testing.T, p *netnstest.Pair) {
			nmap(t, p.B, "-sS", "-p", "1,11,15,79", netnstest.AddrA)
		}},
		{"nmap-sS6", "nmap-syn", netnstest.Addr6B, func(t *testing.T, p *netnstest.Pair) {
			nmap(t, p.B, "-6", "-sS", "-p", "1,11,15,79", netnstest.Addr6A)
		}},
		{"nmap-sT", "os-stack", netnstest.AddrB, func(t *testing.T, p *netnstest.Pair) {
			nmap(t, p.B, "-sT", "-p", "1,11,15,79", netnstest.AddrA)
		}},
		{"masscan", "masscan", netnstest.AddrB, func(t *testing.T, p *netnstest.Pair) {
			attack(t, p.B, "masscan", "--adapter", "veth-b", "--router-mac", macOf(t, p.A, p.IfA),
				"-p", "1,11,15,79", "--rate", "100", "--wait", "0", netnstest.AddrA)
		}},
		{"zmap", "zmap", netnstest.AddrB, func(t *testing.T, p *netnstest.Pair) {
			attack(t, p.B, "zmap", "-i", "veth-b", "-S", netnstest.AddrB, "-G", macOf(t, p.A, p.IfA),
				"-p", "1", "-r", "100", "-c", "1", "-b", "/dev/null", "-o", "/dev/null", netnstest.AddrA+"/32")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := netnstest.NewPair(t)
			d := startDaemon(t, p.A, "")
			tc.run(t, p)
			set := "blocked"
			if strings.Contains(tc.src, ":") {
				set = "blocked6"
			}
			waitBlocked(t, p.A, set, tc.src, 10*time.Second)
			if got := listedTool(t, d, tc.src, 5*time.Second); got != tc.tool {
				t.Errorf("list --json names %q for %s, want %q", got, tc.src, tc.tool)
			}
			if out, err := d.cli("list"); err != nil || !strings.Contains(out, " "+tc.tool+" ") {
				t.Errorf("list (%v) does not show %s:\n%s", err, tc.tool, out)
			}
			var st struct {
				Tools map[string]uint64 `json:"probes_by_tool"`
			}
			out, err := d.cli("status", "--json")
			if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.Tools[tc.tool] == 0 || len(st.Tools) != 8 {
				t.Errorf("status --json (%v) counts no probe of %s among 8 tools:\n%s", err, tc.tool, out)
			}
		})
	}
}

// macOf is the MAC address of ns's interface dev.
func macOf(t *testing.T, ns *netnstest.NS, dev string) string {
	t.Helper()
	f := strings.Fields(ns.MustRun("ip", "-br", "link", "show", dev))
	if len(f) < 3 {
		t.Fatalf("ip -br link show %s: %q", dev, f)
	}
	return f[2]
}

// listedTool is the tool `list --json` names for addr, once the record is
// there ("" if it never is).
func listedTool(t *testing.T, d *daemon, addr string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		out, err := d.cli("list", "--json")
		var blocks []struct{ Addr, Tool string }
		if err == nil && json.Unmarshal([]byte(out), &blocks) == nil {
			for _, b := range blocks {
				if b.Addr == addr && b.Tool != "" {
					return b.Tool
				}
			}
		}
		if time.Now().After(deadline) {
			t.Logf("list --json (%v):\n%s", err, out)
			return ""
		}
		time.Sleep(100 * time.Millisecond)
	}
}
