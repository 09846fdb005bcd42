package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// response: log logs the scan and blocks nothing.
func TestLogOnlyResponse(t *testing.T) {
	netnstest.Require(t, "nmap")
	p := netnstest.NewPair(t)
	d := startDaemon(t, p.A, "tcp: {response: log}\nudp: {response: log}\n")
	nmap(t, p.B, "-sS", "-p", "1,11", netnstest.AddrA)
	d.waitLog("attackalert: TCP SYN scan from host 10.201.0.2/10.201.0.2", 5*time.Second)
	d.waitLog("attackalert: Ignoring TCP response per configuration file setting.", 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	assertNotBlocked(t, p.A, netnstest.AddrB)
}

// hosts.deny gains the line with the block and loses it when it expires.
func TestHostsDenyLineFollowsTheBlock(t *testing.T) {
	netnstest.Require(t, "hping3")
	p := netnstest.NewPair(t)
	deny := filepath.Join(t.TempDir(), "hosts.deny")
	os.WriteFile(deny, []byte("# site rules\nALL: 192.0.2.1\n"), 0o644)
	d := startDaemon(t, p.A, fmt.Sprintf("block: {timeout: 2s}\nhosts_deny: {path: %s, template: \"ALL: $TARGET$ : DENY\"}\n", deny))
	hping(t, p.B, "-S", "-c", "1", "-p", "1", netnstest.AddrA)
	d.waitLog(`attackalert: Host 10.201.0.2 has been blocked via wrappers with string: "ALL: 10.201.0.2 : DENY"`, 5*time.Second)
	if data, _ := os.ReadFile(deny); string(data) != "# site rules\nALL: 192.0.2.1\nALL: 10.201.0.2 : DENY\n" {
		t.Fatalf("hosts.deny after the block:\n%s", data)
	}
	d.waitLog("adminalert: Block of host 10.201.0.2 expired", 6*time.Second)
	if data, _ := os.ReadFile(deny); string(data) != "# site rules\nALL: 192.0.2.1\n" {
		t.Fatalf("hosts.deny after the block expired:\n%s", data)
	}
}

// Commands run as argv with $TARGET$ $PORT$ $MODE$ substituted, the first
// one before the element lands, the other after it.
func TestCommandsRunInOrderWithSubstitutedArguments(t *testing.T) {
	netnstest.Require(t, "hping3")
	p := netnstest.NewPair(t)
	dir := t.TempDir()
	record := filepath.Join(dir, "record")
	script := filepath.Join(dir, "rec.sh")
	// The script notes its argv and whether the host is in the set already.
	os.WriteFile(script, []byte(`#!/bin/sh
inset=no
nft list set inet portsentry blocked | grep -q "$2 " && inset=yes
echo "$* in-set=$inset" >> `+record+"\n"), 0o755)
	d := startDaemon(t, p.A, fmt.Sprintf(`commands:
  - {argv: [%[1]s, first, "$TARGET$", "$PORT$", "$MODE$"], first: true}
  - {argv: [%[1]s, after, "$TARGET$", "port=$PORT$"]}
`, script))
	hping(t, p.B, "-S", "-c", "1", "-p", "79", netnstest.AddrA)
	d.waitLog("attackalert: External command run for host: 10.201.0.2 using command: \""+script+" after", 10*time.Second)
	data, _ := os.ReadFile(record)
	want := "first 10.201.0.2 79 tcp in-set=no\nafter 10.201.0.2 port=79 in-set=yes\n"
	if string(data) != want {
		t.Fatalf("commands recorded:\n%s\nwant:\n%s", data, want)
	}
}

var expiresRe = regexp.MustCompile(`timeout (\S+) expires (\S+)`)

// After a reboot the kernel's sets are empty: the daemon restores every
// block from its state with its remaining time.
func TestRestoreAfterTableLoss(t *testing.T) {
	netnstest.Require(t, "hping3")
	p := netnstest.NewPair(t)
	d := startDaemon(t, p.A, "block: {timeout: 1h}\n")
	hping(t, p.B, "-S", "-c", "1", "-p", "1", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
	d.stop()
	p.A.MustRun("nft", "delete", "table", "inet", "portsentry") // what a reboot does
	time.Sleep(1100 * time.Millisecond)
	d.start()
	d.waitLog("adminalert: Restored 1 blocks from", 5*time.Second)
	el := netnstest.ElementLine(listSet(t, p.A, "blocked"), netnstest.AddrB)
	m := expiresRe.FindStringSubmatch(el)
	if m == nil {
		t.Fatalf("block not restored: %q", el)
	}
	// Restored with what was left (< 1h), not a fresh hour.
	if left, err := time.ParseDuration(strings.ReplaceAll(m[2], "ms", "ms")); err != nil || left >= time.Hour || left < 58*time.Minute {
		t.Errorf("restored element %q: remaining time %s, want just under 1h", el, m[2])
	}
}

// Self-healing: `nft flush ruleset` while running; the daemon reinstalls
// the table and puts the block back.
func TestSelfHealsAfterFlushRuleset(t *testing.T) {
	netnstest.Require(t, "hping3")
	p := netnstest.NewPair(t)
	d := startDaemon(t, p.A, "")
	hping(t, p.B, "-S", "-c", "1", "-p", "1", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
	p.A.MustRun("nft", "flush", "ruleset")
	d.waitLog("was changed outside portsentry-nft (table inet portsentry is missing); reinstalled it and restored 1 blocks.", 5*time.Second)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 2*time.Second)
	// And a flushed set is refilled.
	p.A.MustRun("nft", "flush", "set", "inet", "portsentry", "blocked")
	d.waitLog("1 blocks were missing from the sets", 10*time.Second)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 2*time.Second)
}

// nmap -D with the host's default gateway as a decoy: the scanner is
// blocked, the gateway never.
func TestDecoyGatewayIsNeverBlocked(t *testing.T) {
	netnstest.Require(t, "nmap")
	p := netnstest.NewPair(t)
	withGateway(t, p)
	d := startDaemon(t, p.A, "")
	nmap(t, p.B, "-sS", "-D", "10.201.202.254,ME", "-p", "1,11,15,79", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
	d.waitLog("attackalert: Host 10.201.202.254 is protected (default gateway) and is never blocked", 5*time.Second)
	assertNotBlocked(t, p.A, "10.201.202.254")
}

// A spoofed flood from random sources: blocks stay within
// block.max_per_second, the excess is logged, and the daemon keeps going.
func TestRateCapHoldsUnderRandomSourceFlood(t *testing.T) {
	netnstest.Require(t, "hping3")
	p := netnstest.NewPair(t)
	d := startDaemon(t, p.A, "block: {max_per_second: 5}\n")
	start := time.Now()
	// 3000 SYNs at 1 per 500 µs from random sources, into namespace A only.
	hping(t, p.B, "--rand-source", "-S", "-p", "1", "-i", "u500", "-c", "3000", "-q", netnstest.AddrA)
	elapsed := time.Since(start)
	time.Sleep(500 * time.Millisecond)
	out := listSet(t, p.A, "blocked")
	n := strings.Count(out, "expires")
	limit := 5 + int(elapsed.Seconds()*5) + 5
	if n == 0 || n > limit {
		t.Fatalf("%d blocks after %s of flood; want 1..%d (rate cap 5/s, burst 5)", n, elapsed, limit)
	}
	d.waitLog("not blocked: more than block.max_per_second new blocks; logged only", 5*time.Second)
	if !strings.Contains(d.out.String(), "PortSentry is initialized") {
		t.Fatal("daemon output lost")
	}
	t.Logf("flood of %s: %d blocks (cap %d)", elapsed, n, limit)
}

// The set size cap: beyond it, one clear warning and no crash.
func TestSetSizeCap(t *testing.T) {
	netnstest.Require(t, "hping3")
	p := netnstest.NewPair(t)
	d := startDaemon(t, p.A, "block: {set_size: 3}\n")
	for i := 10; i < 15; i++ {
		hping(t, p.B, "-a", "10.201.0."+strconv.Itoa(i), "-S", "-c", "1", "-p", "1", netnstest.AddrA)
		time.Sleep(100 * time.Millisecond)
	}
	d.waitLog("adminalert: WARNING: the blocked sets are full (block.set_size 3)", 5*time.Second)
	if n := strings.Count(listSet(t, p.A, "blocked"), "expires"); n != 3 {
		t.Errorf("%d elements, want 3 (the cap)", n)
	}
	if c := strings.Count(d.out.String(), "the blocked sets are full"); c != 1 {
		t.Errorf("the set-full warning appeared %d times, want once", c)
	}
}

// Verified mode: a SYN scan (no handshake) is logged and blocks nothing; a
// connect scan completes handshakes and is blocked.
func TestVerifiedModeIgnoresSYNScanAndBlocksConnectScan(t *testing.T) {
	netnstest.Require(t, "nmap")
	p := netnstest.NewPair(t)
	d := startDaemon(t, p.A, "tcp: {verified: true}\n")
	d.waitLog("adminalert: verified mode: listening on 26 TCP ports", 5*time.Second)
	nmap(t, p.B, "-sS", "-p", "1,11,15,79", netnstest.AddrA)
	d.waitLog("attackalert: TCP SYN scan from host 10.201.0.2/10.201.0.2 to TCP port: 79", 5*time.Second)
	time.Sleep(500 * time.Millisecond)
	assertNotBlocked(t, p.A, netnstest.AddrB)
	nmap(t, p.B, "-sT", "-p", "1,11", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
	d.waitLog("attackalert: TCP connect from host 10.201.0.2/10.201.0.2 to TCP port: ", 5*time.Second)
}

// resolve_host: the scanner's name (reverse lookup, here from the hosts
// file that `ip netns exec` gives the namespace: /etc/netns/NAME/hosts)
// shows in the alert lines and the history file.
func TestResolveHost(t *testing.T) {
	netnstest.Require(t, "hping3")
	p := netnstest.NewPair(t)
	netnsEtc(t, p.A, "hosts", "127.0.0.1 localhost\n10.201.0.2 scanner.example.test\n")
	d := startDaemon(t, p.A, "resolve_host: true\n")
	hping(t, p.B, "-S", "-c", "1", "-p", "79", netnstest.AddrA)
	d.waitLog("attackalert: TCP SYN scan from host scanner.example.test/10.201.0.2 to TCP port: 79", 10*time.Second)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
	history := filepath.Join(filepath.Dir(d.config), "state", "portsentry.history")
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, _ := os.ReadFile(history)
		if strings.Contains(string(data), "Host: scanner.example.test/10.201.0.2 Port: 79 TCP Blocked") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history file lacks the resolved name: %q", data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// netnsEtc writes /etc/netns/NAME/file, which `ip netns exec` (and so
// the daemon started in ns) sees as /etc/file, removed at the test's end.
func netnsEtc(t *testing.T, ns *netnstest.NS, file, content string) {
	t.Helper()
	dir := filepath.Join("/etc/netns", ns.Name)
	_, err := os.Stat("/etc/netns")
	madeParent := os.IsNotExist(err)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.RemoveAll(dir)
		if madeParent {
			os.Remove("/etc/netns")
		}
	})
	if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// resolve_host with DNS that drops every query (the nameserver's address
// is routed through B, which drops it) and 200 spoofed SYNs a second: no
// part waits for DNS, so a real scanner is blocked within 2 s of its scan's
// start and SIGTERM completes in a few seconds. Before, every block's
// record and every probe's line waited up to 2 s for its lookup: the scan
// went unblocked and a stop took a minute.
func TestResolveHostWithDNSDown(t *testing.T) {
	netnstest.Require(t, "hping3", "nmap")
	p := netnstest.NewPair(t)
	const ns = "10.201.9.9"
	netnsEtc(t, p.A, "resolv.conf", "nameserver "+ns+"\n")
	p.A.MustRun("ip", "route", "add", ns+"/32", "via", netnstest.AddrB)
	p.B.MustRun("nft", "add table ip dnsdrop")
	p.B.MustRun("nft", "add chain ip dnsdrop pre { type filter hook prerouting priority -300; }")
	p.B.MustRun("nft", "add rule ip dnsdrop pre ip daddr "+ns+" counter drop")
	d := startDaemon(t, p.A, "resolve_host: true\ntcp: {ports: [\"1-1024\"]}\n")

	flood := make(chan string, 1)
	go func() {
		out, _ := p.B.Run("timeout", "30", "hping3", "--rand-source", "-i", "u5000", "-c", "1000", "-S", "-p", "1", netnstest.AddrA)
		flood <- out
	}()
	time.Sleep(2 * time.Second) // 400 spoofed triggers, their lookups queued
	took, answered := scanUntilBlocked(t, p, 10*time.Second)
	<-flood
	drops := p.B.MustRun("nft", "list chain ip dnsdrop pre")
	t.Logf("scanner blocked %s after its scan started (%d of 1024 ports answered); %d blocks in all; DNS dropped: %s",
		took.Round(time.Millisecond), answered, countBlocked(d), strings.TrimSpace(regexp.MustCompile(`counter packets \d+`).FindString(drops)))
	if took == 0 || took > 2*time.Second {
		t.Errorf("the scanner was blocked %s after its scan started, want within 2 s (0: not within 10 s)\n%s", took, tail(d.out.String(), 20))
	}
	if !strings.Contains(drops, "counter packets") || strings.Contains(drops, "counter packets 0 ") {
		t.Errorf("the daemon's lookups never reached the silent nameserver: the test tests nothing\n%s", drops)
	}
	stopped := time.Now()
	d.stop() // fails the test past 10 s
	t.Logf("SIGTERM completed in %s", time.Since(stopped).Round(time.Millisecond))
	if took := time.Since(stopped); took > 5*time.Second {
		t.Errorf("SIGTERM took %s, want a few seconds whatever DNS does", took)
	}
}

// The kernel and the ledger agree within one probe: after `nft flush set`,
// the first probe from the blocked scanner reaches the daemon (the drop
// rule comes first, so it proves the element is gone), the element goes
// back at once, and the scanner's next probe gets no answer, long before
// the watchdog's next look at the sets.
func TestLostElementIsBackAfterOneProbe(t *testing.T) {
	netnstest.Require(t, "hping3", "ncat")
	p := netnstest.NewPair(t)
	d := startDaemon(t, p.A, "")
	serve(t, p.A, netnstest.AddrA, "8080", "hello-from-A")
	hping(t, p.B, "-S", "-c", "1", "-p", "1", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
	time.Sleep(time.Second) // well past the probes in flight when the element landed
	p.A.MustRun("nft", "flush", "set", "inet", "portsentry", "blocked")
	flushed := time.Now()
	if !canConnect(p.B, netnstest.AddrA, "8080", "hello-from-A") {
		t.Fatal("B cannot connect after the flush: the test cannot see the loss")
	}
	hping(t, p.B, "-S", "-c", "1", "-p", "11", netnstest.AddrA)
	d.waitLog("attackalert: Host 10.201.0.2 was missing from set blocked (removed outside portsentry-nft); blocked again", 2*time.Second)
	out := hping(t, p.B, "-S", "-c", "1", "-p", "8080", netnstest.AddrA)
	if !strings.Contains(out, "1 packets transmitted, 0 packets received") {
		t.Errorf("the probe after the one that proved the loss was answered:\n%s", out)
	}
	if canConnect(p.B, netnstest.AddrA, "8080", "hello-from-A") {
		t.Error("B still reaches A after its element went back")
	}
	if since := time.Since(flushed); strings.Contains(d.out.String(), "blocks were missing from the sets") {
		t.Errorf("the watchdog, not the probe, put the element back (%s after the flush)", since)
	}
	if strings.Contains(d.out.String(), "is already blocked. Ignoring") {
		t.Errorf("a probe after the loss was logged as already blocked:\n%s", d.out.String())
	}
}

// The watchdog checks the table's content, not only that its parts are
// there: a port set restored from an old snapshot keeps every set, chain
// and rule but leaves a tripwire blind, and is put right within seconds.
func TestSelfHealsAChangedPortSet(t *testing.T) {
	netnstest.Require(t, "hping3")
	p := netnstest.NewPair(t)
	d := startDaemon(t, p.A, "")
	p.A.MustRun("nft", "flush", "set", "inet", "portsentry", "tcp_ports")
	p.A.MustRun("nft", "add", "element", "inet", "portsentry", "tcp_ports", "{ 2 }")
	d.waitLog("(its rules or sets differ from what portsentry-nft installed); reinstalled it", 5*time.Second)
	hping(t, p.B, "-S", "-c", "1", "-p", "1", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
}
