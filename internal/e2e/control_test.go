package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/control"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// The control socket and its CLI against a daemon in a namespace: block,
// list (text and JSON), status, unblock, and the socket's permissions.
func TestControlSocket(t *testing.T) {
	netnstest.Require(t, "hping3")
	p := netnstest.NewPair(t)
	deny := filepath.Join(t.TempDir(), "hosts.deny")
	d := startDaemon(t, p.A, "hosts_deny: {path: "+deny+", template: \"ALL: $TARGET$\"}\n")

	fi, err := os.Stat(d.socket())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("control socket mode %v, want a socket with 0600", fi.Mode())
	}

	// A scan, then a manual block of an IPv6 address with its own timeout.
	hping(t, p.B, "-S", "-c", "1", "-p", "79", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
	if out, err := d.cli("block", "--timeout", "2h", "fd00:201::99"); err != nil || !strings.Contains(out, "blocked fd00:201::99") {
		t.Fatalf("block: %v %s", err, out)
	}
	if el := netnstest.ElementLine(listSet(t, p.A, "blocked6"), "fd00:201::99"); !strings.Contains(el, "timeout 2h") {
		t.Fatalf("manual block not in blocked6 with 2h: %q", el)
	}
	// The host's own address is refused.
	if out, err := d.cli("block", netnstest.AddrA); err == nil || !strings.Contains(out, "protected (local address)") {
		t.Errorf("blocking the host's own address: %v %s", err, out)
	}

	out, err := d.cli("list")
	if err != nil {
		t.Fatalf("list: %v %s", err, out)
	}
	if !strings.Contains(out, "ADDRESS") || !strings.Contains(out, netnstest.AddrB) || !strings.Contains(out, "TCP SYN scan") || !strings.Contains(out, "fd00:201::99") {
		t.Errorf("list output:\n%s", out)
	}
	out, err = d.cli("list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []control.Block
	if err := json.Unmarshal([]byte(out), &blocks); err != nil {
		t.Fatalf("list --json is not a JSON array of blocks: %v\n%s", err, out)
	}
	byAddr := map[string]control.Block{}
	for _, b := range blocks {
		byAddr[b.Addr] = b
	}
	b := byAddr[netnstest.AddrB]
	if b.ScanType != "TCP SYN scan" || b.Set != "blocked" || b.RemainingSeconds <= 3500 || len(b.Ports) != 1 || b.Ports[0] != 79 || b.TimesBlocked != 1 || b.FirstSeen.IsZero() || b.Origin != "kernel" {
		t.Errorf("list --json entry for the scanner: %+v", b)
	}
	if m := byAddr["fd00:201::99"]; m.ScanType != "manual" || m.Origin != "manual" || m.Set != "blocked6" || m.RemainingSeconds <= 7000 {
		t.Errorf("list --json entry for the manual block: %+v", m)
	}

	out, err = d.cli("status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var st control.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if st.Probes["TCP SYN scan"] != 1 || st.Counters["blocks"] != 2 || st.SetSizes["blocked"] != 1 || st.SetSizes["blocked6"] != 1 || st.ConfigFile != d.config {
		t.Errorf("status: %+v", st)
	}

	// An administrator's block is followed like a detected one.
	if data, _ := os.ReadFile(deny); string(data) != "ALL: 10.201.0.2\nALL: [fd00:201::99]\n" {
		t.Fatalf("hosts.deny before unblock: %q", data)
	}
	if out, err := d.cli("unblock", netnstest.AddrB); err != nil {
		t.Fatalf("unblock: %v %s", err, out)
	}
	assertNotBlocked(t, p.A, netnstest.AddrB)
	if data, _ := os.ReadFile(deny); string(data) != "ALL: [fd00:201::99]\n" {
		t.Errorf("unblock left the hosts.deny line, or took the other: %q", data)
	}
	// Unblocking what is not blocked is fine (idempotent).
	if out, err := d.cli("unblock", netnstest.AddrB); err != nil {
		t.Errorf("second unblock: %v %s", err, out)
	}
	// After an unblock the detector starts over: a new probe blocks again.
	hping(t, p.B, "-S", "-c", "1", "-p", "11", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
}

// With no daemon, the CLI says so clearly and exits 1.
func TestControlWithoutDaemon(t *testing.T) {
	cmd := daemonBinary(t)
	out, err := runCmd(cmd, "status", "--socket", t.TempDir()+"/none.sock")
	if err == nil || !strings.Contains(out, "the daemon is not running") {
		t.Errorf("status without a daemon: %v %q", err, out)
	}
}

// The Prometheus endpoint (off by default) serves one metric per
// quantity and the probe-to-block histogram.
func TestMetricsEndpoint(t *testing.T) {
	netnstest.Require(t, "hping3")
	p := netnstest.NewPair(t)
	startDaemon(t, p.A, "metrics: {listen: \"127.0.0.1:9187\"}\n")
	hping(t, p.B, "-S", "-c", "1", "-p", "1", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
	out := p.A.MustRun("bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/9187; printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3; cat <&3`)
	for _, want := range []string{
		`portsentry_probes_total{proto="tcp",scan_type="TCP SYN scan"} 1`,
		`portsentry_blocks_total{origin="kernel"} 1`,
		`portsentry_blocks_total{origin="detect"} 0`,
		`portsentry_blocks_total{origin="manual"} 0`,
		`portsentry_blocked_addresses{family="ipv4"} 1`,
		`portsentry_blocked_addresses{family="ipv6"} 0`,
		`portsentry_probe_to_block_seconds_count 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q:\n%s", want, out)
		}
	}
}

// Several addresses in one block (flags after them, a file with
// comments), all or nothing; unblock --all lifts every element, hosts.deny
// line and record, and says how many.
func TestBlockManyAndUnblockAll(t *testing.T) {
	netnstest.Require(t, "hping3")
	p := netnstest.NewPair(t)
	deny := filepath.Join(t.TempDir(), "hosts.deny")
	d := startDaemon(t, p.A, "hosts_deny: {path: "+deny+", template: \"ALL: $TARGET$\"}\n")
	hping(t, p.B, "-S", "-c", "1", "-p", "1", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
	list := filepath.Join(t.TempDir(), "list")
	os.WriteFile(list, []byte("# abuse desk\n198.51.100.1\n198.51.100.2 # twice\n198.51.100.2\n2001:db8::5\n"), 0o644)
	if out, err := d.cli("block", "203.0.113.7", "203.0.113.8", "--timeout", "2h", "--file", list); err != nil || out != "blocked 5 addresses\n" {
		t.Fatalf("block many: %v %q", err, out)
	}
	for _, a := range []string{"203.0.113.7", "203.0.113.8", "198.51.100.1", "198.51.100.2"} {
		waitBlocked(t, p.A, "blocked", a, time.Second)
	}
	waitBlocked(t, p.A, "blocked6", "2001:db8::5", time.Second)
	// One protected address refuses the whole list: nothing of it is blocked.
	out, err := d.cli("block", "203.0.113.50", netnstest.AddrA)
	if err == nil || !strings.Contains(out, "10.201.0.1 refused: 10.201.0.1 is protected (local address)") {
		t.Errorf("block with a protected address: %v %q", err, out)
	}
	assertNotBlocked(t, p.A, "203.0.113.50")
	// A timeout too large to read says so (not "at least 1s").
	if out, err := d.cli("block", "203.0.113.51", "--timeout", "100000d"); err == nil || !strings.Contains(out, `invalid duration "100000d"`) {
		t.Errorf("block --timeout 100000d: %v %q", err, out)
	}
	if data, _ := os.ReadFile(deny); strings.Count(string(data), "\n") != 6 {
		t.Errorf("hosts.deny before unblock --all:\n%s", data)
	}
	out, err = d.cli("unblock", "--all")
	if err != nil || out != "unblocked all: 6 blocks lifted\n" {
		t.Fatalf("unblock --all: %v %q", err, out)
	}
	assertNotBlocked(t, p.A, netnstest.AddrB, "203.0.113.7", "198.51.100.2")
	if n := strings.Count(listSet(t, p.A, "blocked6"), "2001:db8::5"); n != 0 {
		t.Errorf("blocked6 still holds 2001:db8::5 after unblock --all")
	}
	if data, _ := os.ReadFile(deny); len(data) != 0 {
		t.Errorf("hosts.deny after unblock --all:\n%s", data)
	}
	if out, _ := d.cli("list"); strings.Contains(out, "203.0.113.7") {
		t.Errorf("list after unblock --all:\n%s", out)
	}
}
