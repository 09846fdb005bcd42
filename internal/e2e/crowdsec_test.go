package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// The API keys of the two bouncers of TestCrowdSecBouncer.
const (
	localBouncerKey  = "local-bouncer-key-0123456789abcdef"
	remoteBouncerKey = "remote-bouncer-key-0123456789abcdef"
)

// bouncerTables are the nftables tables (family ip and ip6) the bouncers
// of the tests make, and the set in each.
const (
	bouncerTable4 = "psn-crowdsec"
	bouncerTable6 = "psn-crowdsec6"
	bouncerSet4   = "psn-crowdsec-blacklists"
	bouncerSet6   = "psn-crowdsec6-blacklists"
)

// bouncerFrequency is how often the bouncers poll.
const bouncerFrequency = time.Second

// cfBouncer is Debian's crowdsec-firewall-bouncer run in a namespace.
type cfBouncer struct {
	t    testing.TB
	ns   *netnstest.NS
	cmd  *exec.Cmd
	out  *netnstest.Output
	done chan error
}

// startBouncer runs crowdsec-firewall-bouncer in ns (mode nftables, its own
// tables, polling every bouncerFrequency) against the API at apiURL.
func startBouncer(t testing.TB, ns *netnstest.NS, apiURL, key string) *cfBouncer {
	t.Helper()
	netnstest.Require(t, "crowdsec-firewall-bouncer")
	dir := t.TempDir()
	conf := fmt.Sprintf(`mode: nftables
pid_dir: %[1]s
update_frequency: %[2]s
daemonize: true
log_mode: stdout
log_dir: %[1]s
log_level: info
api_url: %[3]s
api_key: %[4]s
insecure_skip_verify: false
disable_ipv6: false
deny_action: DROP
deny_log: false
supported_decisions_types: [ban]
blacklists_ipv4: %[5]s
blacklists_ipv6: %[6]s
nftables:
  ipv4: {enabled: true, set-only: false, table: %[7]s, chain: psn-crowdsec-chain}
  ipv6: {enabled: true, set-only: false, table: %[8]s, chain: psn-crowdsec6-chain}
prometheus: {enabled: false, listen_addr: 127.0.0.1, listen_port: "60601"}
`, dir, bouncerFrequency, apiURL, key, bouncerSet4, bouncerSet6, bouncerTable4, bouncerTable6)
	path := filepath.Join(dir, "crowdsec-firewall-bouncer.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &cfBouncer{t: t, ns: ns, out: &netnstest.Output{}, done: make(chan error, 1)}
	b.cmd = ns.Command(context.Background(), "crowdsec-firewall-bouncer", "-c", path)
	b.cmd.Stdout, b.cmd.Stderr = b.out, b.out
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.done <- b.cmd.Wait() }()
	t.Cleanup(b.stop)
	return b
}

// stop sends SIGTERM (the bouncer removes its tables) and waits a bounded
// time.
func (b *cfBouncer) stop() {
	if b.cmd.Process == nil {
		return
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		b.cmd.Process.Kill()
		<-b.done
	}
}

// has reports whether addr is in the bouncer's IPv4 set now.
func (b *cfBouncer) has(addr string) bool {
	out, err := b.ns.Run("nft", "list", "set", "ip", bouncerTable4, bouncerSet4)
	return err == nil && netnstest.ElementLine(out, addr) != ""
}

// waitHas waits until addr is in (want) or out of (!want) the bouncer's
// set, and returns how long that took; it fails the test past within.
func (b *cfBouncer) waitHas(addr string, want bool, within time.Duration) time.Duration {
	b.t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if b.has(addr) == want {
			return time.Since(start)
		}
		select {
		case err := <-b.done:
			b.t.Fatalf("crowdsec-firewall-bouncer exited (%v):\n%s", err, b.out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	set, _ := b.ns.Run("nft", "list", "set", "ip", bouncerTable4, bouncerSet4)
	b.t.Fatalf("%s in the bouncer's set: want %t within %s\n%s\nbouncer output:\n%s", addr, want, within, set, tail(b.out.String(), 30))
	return 0
}

// Debian's crowdsec-firewall-bouncer, pointed at the daemon's bouncer API,
// enforces the daemon's blocks in its own table: over loopback it gets a
// scanner within its update frequency and loses it on unblock; from
// another host it gets an administrator's block and not a block on one
// forgeable probe.
func TestCrowdSecBouncer(t *testing.T) {
	netnstest.Require(t, "nmap", "hping3", "crowdsec-firewall-bouncer")
	p := netnstest.NewPair(t)
	keys := filepath.Join(t.TempDir(), "bouncers.keys")
	if err := os.WriteFile(keys, []byte("local "+localBouncerKey+"\nremote "+remoteBouncerKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, p.A, "crowdsec: {listen: \":8081\", api_keys_file: "+keys+"}\n")
	d.waitLog("Serving the CrowdSec bouncer API on [::]:8081 (2 API keys)", 5*time.Second)
	local := startBouncer(t, p.A, "http://127.0.0.1:8081/", localBouncerKey)

	// A scan: the scanner in our set, then in the bouncer's.
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		p.B.Run("timeout", "60", "nmap", "-Pn", "-n", "-sS", "-T4", "--max-retries", "0", "--host-timeout", "30s", "-p", "1-200", netnstest.AddrA)
	}()
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 10*time.Second)
	took := local.waitHas(netnstest.AddrB, true, bouncerFrequency+3*time.Second)
	t.Logf("the scanner in the bouncer's set %v after it was in ours (update_frequency %v)", took.Round(time.Millisecond), bouncerFrequency)
	if took > bouncerFrequency+time.Second {
		t.Errorf("the bouncer took %v, more than its update frequency and a second", took)
	}
	// The bouncer's element lasts what our block has left.
	set := p.A.MustRun("nft", "list", "set", "ip", bouncerTable4, bouncerSet4)
	if el := netnstest.ElementLine(set, netnstest.AddrB); !strings.Contains(el, "timeout 59m") && !strings.Contains(el, "timeout 1h") {
		t.Errorf("the bouncer's element: %q, want the hour our block lasts", el)
	}
	<-scanned // no probe of it comes after the unblock
	if out, err := d.cli("unblock", netnstest.AddrB); err != nil {
		t.Fatalf("unblock: %v %s", err, out)
	}
	took = local.waitHas(netnstest.AddrB, false, bouncerFrequency+3*time.Second)
	t.Logf("unblocked: out of the bouncer's set after %v", took.Round(time.Millisecond))

	remoteBouncer(t, p, d, local)

	st := status(t, d)
	t.Logf("bouncer API: %d requests, %d decisions served, %d auth failures", st.Counters["crowdsec_requests"], st.Counters["crowdsec_decisions_served"], st.Counters["crowdsec_auth_failures"])
	if st.Counters["crowdsec_requests"] < 4 || st.Counters["crowdsec_decisions_served"] < 6 || st.Counters["crowdsec_auth_failures"] != 0 {
		t.Errorf("counters: %v", st.Counters)
	}
}

// remoteBouncer: a bouncer in B, the other host, gets an administrator's
// block and its lift, and not a block on one forged probe, which the
// bouncer on A (local) has.
func remoteBouncer(t *testing.T, p *netnstest.Pair, d *daemon, local *cfBouncer) {
	t.Helper()
	// An administrator's block, and one forged probe from 10.201.0.66.
	const admin, forged = "10.201.0.77", "10.201.0.66"
	if out, err := d.cli("block", admin); err != nil {
		t.Fatalf("block: %v %s", err, out)
	}
	hping(t, p.B, "-S", "-c", "1", "-p", "1", "-a", forged, netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", forged, 5*time.Second)
	local.waitHas(admin, true, bouncerFrequency+3*time.Second)
	local.waitHas(forged, true, bouncerFrequency+3*time.Second)

	// A bouncer on the other host: the administrator's block only.
	remote := startBouncer(t, p.B, "http://"+netnstest.AddrA+":8081/", remoteBouncerKey)
	remote.waitHas(admin, true, bouncerFrequency+5*time.Second)
	time.Sleep(2 * bouncerFrequency)
	if remote.has(forged) {
		t.Errorf("the remote bouncer has %s, a block on one forgeable probe", forged)
	}
	// Its lift reaches the remote bouncer too.
	if out, err := d.cli("unblock", admin); err != nil {
		t.Fatalf("unblock: %v %s", err, out)
	}
	remote.waitHas(admin, false, bouncerFrequency+3*time.Second)
	local.waitHas(admin, false, bouncerFrequency+3*time.Second)
}

// After a restart the bouncer API serves the blocks restored from the
// journal (the view is seeded with the ledger's blocks in force); a
// request with an unknown key is refused and counted.
func TestCrowdSecAPIAfterRestart(t *testing.T) {
	p := netnstest.NewPair(t)
	keys := filepath.Join(t.TempDir(), "bouncers.keys")
	if err := os.WriteFile(keys, []byte(localBouncerKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, p.A, "crowdsec: {listen: \"127.0.0.1:8081\", api_keys_file: "+keys+"}\n")
	const admin = "10.201.0.77"
	if out, err := d.cli("block", admin); err != nil {
		t.Fatalf("block: %v %s", err, out)
	}
	d.stop()
	d.start()
	ask := func(key string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:8081/v1/decisions?ip="+admin, nil)
		req.Header.Set("X-Api-Key", key)
		resp, err := p.A.HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	code, body := ask(localBouncerKey)
	if code != http.StatusOK || !strings.Contains(body, `"value":"`+admin+`"`) || !strings.Contains(body, `"scenario":"portsentry-nft/manual"`) {
		t.Errorf("after the restart: %d %s", code, body)
	}
	if code, body := ask(remoteBouncerKey); code != http.StatusForbidden {
		t.Errorf("an unknown key: %d %s", code, body)
	}
	if st := status(t, d); st.Counters["crowdsec_auth_failures"] != 1 || st.Counters["crowdsec_decisions_served"] != 1 {
		t.Errorf("counters: %v", st.Counters)
	}
}
