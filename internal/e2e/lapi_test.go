package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// The machine the daemon pushes as, and the LAPI's port (on loopback in
// the daemon's namespace).
const (
	lapiMachine  = "psn-e2e"
	lapiPassword = "psn-e2e-machine-password-0123456789"
	lapiPort     = 18088
	lapiBouncer  = "psn-e2e-lapi-bouncer-key-0123456789"
)

// crowdsecLAPI is Debian's crowdsec run as a local API only (-no-cs) in a
// namespace, with a configuration of the test's own: a sqlite database in
// a temporary directory, no Central API, no hub.
type crowdsecLAPI struct {
	t    *testing.T
	ns   *netnstest.NS
	cfg  string
	cmd  *os.Process
	out  *netnstest.Output
	done chan error
}

// newCrowdSecLAPI writes the configuration, adds the machine and a
// bouncer with cscli, and starts the LAPI.
func newCrowdSecLAPI(t *testing.T, ns *netnstest.NS) *crowdsecLAPI {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"config.yaml": fmt.Sprintf(`common: {daemonize: false, log_media: stdout, log_level: info}
config_paths:
  config_dir: %[1]s/
  data_dir: %[1]s/data/
  simulation_path: %[1]s/simulation.yaml
  hub_dir: %[1]s/hub/
  index_path: %[1]s/hub/.index.json
db_config: {type: sqlite, db_path: %[1]s/data/crowdsec.db, use_wal: true}
api:
  client: {credentials_path: %[1]s/local_api_credentials.yaml}
  server: {listen_uri: "127.0.0.1:%[2]d", profiles_path: %[1]s/profiles.yaml}
`, dir, lapiPort),
		// The package's default profile: an alert with remediation and no
		// decision of its own gets a 4h ban.
		"profiles.yaml":   "name: default_ip_remediation\nfilters:\n - Alert.Remediation == true && Alert.GetScope() == \"Ip\"\ndecisions:\n - type: ban\n   duration: 4h\non_success: break\n",
		"simulation.yaml": "simulation: false\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	l := &crowdsecLAPI{t: t, ns: ns, cfg: filepath.Join(dir, "config.yaml")}
	// cscli's own client (alerts list) reads credentials_path.
	l.cscli("machines", "add", lapiMachine, "--password", lapiPassword, "-f", filepath.Join(dir, "local_api_credentials.yaml"))
	l.cscli("bouncers", "add", "psn-e2e-bouncer", "-k", lapiBouncer)
	l.start()
	t.Cleanup(l.stop)
	return l
}

func (l *crowdsecLAPI) cscli(args ...string) string {
	l.t.Helper()
	out, err := l.ns.Run("timeout", append([]string{"30", "cscli", "-c", l.cfg, "--error"}, args...)...)
	if err != nil {
		l.t.Fatalf("cscli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// start runs crowdsec -no-cs and waits until the LAPI listens.
func (l *crowdsecLAPI) start() {
	l.t.Helper()
	l.out, l.done = &netnstest.Output{}, make(chan error, 1)
	cmd := l.ns.Command(context.Background(), "crowdsec", "-c", l.cfg, "-no-cs")
	cmd.Stdout, cmd.Stderr = l.out, l.out
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.cmd = cmd.Process
	go func() { l.done <- cmd.Wait() }()
	for start := time.Now(); !strings.Contains(l.out.String(), "CrowdSec Local API listening on"); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-l.done:
			l.t.Fatalf("crowdsec exited (%v):\n%s", err, l.out)
		default:
		}
		if time.Since(start) > 20*time.Second {
			l.t.Fatalf("crowdsec's LAPI did not listen within 20s:\n%s", l.out)
		}
	}
}

// stop ends the LAPI (SIGTERM, then SIGKILL past 10 s).
func (l *crowdsecLAPI) stop() {
	if l.cmd == nil {
		return
	}
	l.cmd.Signal(syscall.SIGTERM)
	select {
	case <-l.done:
	case <-time.After(10 * time.Second):
		l.cmd.Kill()
		<-l.done
	}
	l.cmd = nil
}

// lapiAlert is what cscli alerts list -o json shows of an alert.
type lapiAlert struct {
	Scenario  string `json:"scenario"`
	MachineID string `json:"machine_id"`
	Message   string `json:"message"`
	Source    struct {
		Scope, Value, IP string
	} `json:"source"`
	Decisions []struct {
		Origin, Type, Scope, Value, Duration, Scenario string
	} `json:"decisions"`
	Events []struct {
		Meta []struct{ Key, Value string } `json:"meta"`
	} `json:"events"`
}

// alerts is cscli alerts list -a -o json (-a: crowdsec 1.4.6 lists
// without it only the alerts whose decisions come from crowdsec or
// cscli).
func (l *crowdsecLAPI) alerts() map[string]lapiAlert {
	l.t.Helper()
	out := l.cscli("alerts", "list", "-a", "-l", "0", "-o", "json")
	var as []lapiAlert
	if err := json.Unmarshal([]byte(out), &as); err != nil {
		l.t.Fatalf("cscli alerts list: %v\n%s", err, out)
	}
	m := map[string]lapiAlert{}
	for _, a := range as {
		m[a.Source.Value] = a
	}
	return m
}

// waitAlert waits until the LAPI holds an alert for addr.
func (l *crowdsecLAPI) waitAlert(addr string, within time.Duration) (lapiAlert, time.Duration) {
	l.t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if a, ok := l.alerts()[addr]; ok {
			return a, time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.t.Fatalf("no alert for %s in the LAPI within %s; crowdsec output:\n%s", addr, within, tail(l.out.String(), 20))
	return lapiAlert{}, 0
}

// Debian's crowdsec LAPI receives, from the daemon logged in as a machine,
// an alert with a ban for an administrator's block and for a connect
// scan's (verified mode: a completed handshake), which a bouncer of that
// LAPI then gets; a block on one forged probe never reaches it; the
// administrator's unblock lifts that ban. With the LAPI down, blocking
// goes on and the alert follows once it is back.
func TestCrowdSecLAPI(t *testing.T) {
	netnstest.Require(t, "crowdsec", "cscli", "nmap", "hping3")
	p := netnstest.NewPair(t)
	lapi := newCrowdSecLAPI(t, p.A)
	pw := filepath.Join(t.TempDir(), "lapi.password")
	if err := os.WriteFile(pw, []byte(lapiPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, p.A, fmt.Sprintf("tcp: {verified: true}\ncrowdsec: {lapi: {url: \"http://127.0.0.1:%d/\", machine_id: %s, password_file: %s}}\n", lapiPort, lapiMachine, pw))
	d.waitLog("Pushing alerts to the CrowdSec local API at http://127.0.0.1:18088/ as machine "+lapiMachine, 5*time.Second)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon output:\n%s", tail(d.out.String(), 30))
		}
	})

	// An administrator's block, a forged UDP probe's and a connect scan's.
	const admin, forged = "10.201.0.77", "10.201.0.66"
	if out, err := d.cli("block", admin); err != nil {
		t.Fatalf("block: %v %s", err, out)
	}
	a, took := lapi.waitAlert(admin, 10*time.Second)
	t.Logf("the administrator's block in the LAPI after %v", took.Round(time.Millisecond))
	if a.Scenario != "portsentry-nft/manual" || a.MachineID != lapiMachine || a.Source.Scope != "Ip" || len(a.Decisions) != 1 ||
		a.Decisions[0].Type != "ban" || a.Decisions[0].Origin != "portsentry-nft" || !strings.HasPrefix(a.Decisions[0].Duration, "59m") {
		t.Errorf("the administrator's alert: %+v", a)
	}
	hping(t, p.B, "-2", "-c", "1", "-p", "9", "-a", forged, netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", forged, 5*time.Second)
	nmap(t, p.B, "-sT", "-p", "1,11", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
	a, _ = lapi.waitAlert(netnstest.AddrB, 10*time.Second)
	if a.Scenario != "portsentry-nft/tcp-connect" || len(a.Decisions) != 1 || !strings.Contains(fmt.Sprint(a.Events), "{evidence handshake}") {
		t.Errorf("the connect scan's alert: %+v", a)
	}
	if _, ok := lapi.alerts()[forged]; ok {
		t.Errorf("the LAPI has an alert for %s, a block on one forged probe", forged)
	}
	// A bouncer of that LAPI gets both bans, not the forged block.
	stream := lapiStream(t, p.A)
	if !strings.Contains(stream, `"value":"`+admin+`"`) || !strings.Contains(stream, `"value":"`+netnstest.AddrB+`"`) || strings.Contains(stream, forged) {
		t.Errorf("the LAPI's decisions for its bouncers: %s", stream)
	}
	// The administrator's unblock lifts the LAPI's ban.
	if out, err := d.cli("unblock", admin); err != nil {
		t.Fatalf("unblock: %v %s", err, out)
	}
	for start := time.Now(); strings.Contains(lapiBans(t, p.A), `"value":"`+admin+`"`); time.Sleep(50 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("the LAPI still bans %s 5s after its unblock: %s", admin, lapiBans(t, p.A))
		}
	}
	if !strings.Contains(lapiBans(t, p.A), `"value":"`+netnstest.AddrB+`"`) {
		t.Errorf("the unblock of %s lifted the LAPI's other ban", admin)
	}
	lapiDown(t, p, d, lapi)
}

// lapiBans is the "new" part of the LAPI's stream: the bans in force.
func lapiBans(t *testing.T, ns *netnstest.NS) string {
	t.Helper()
	var s struct {
		New json.RawMessage `json:"new"`
	}
	if err := json.Unmarshal([]byte(lapiStream(t, ns)), &s); err != nil {
		t.Fatal(err)
	}
	return string(s.New)
}

// lapiDown: with the LAPI stopped an administrator's block is in the set
// at once and the push fails (counted); once the LAPI is back the alert
// arrives.
func lapiDown(t *testing.T, p *netnstest.Pair, d *daemon, lapi *crowdsecLAPI) {
	t.Helper()
	lapi.stop()
	const later = "10.201.0.78"
	start := time.Now()
	if out, err := d.cli("block", later); err != nil {
		t.Fatalf("block: %v %s", err, out)
	}
	waitBlocked(t, p.A, "blocked", later, 2*time.Second)
	t.Logf("with the LAPI down: blocked in %v", time.Since(start).Round(time.Millisecond))
	for start := time.Now(); status(t, d).Counters["crowdsec_push_failures"] == 0; time.Sleep(50 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("no push failure counted with the LAPI down")
		}
	}
	time.Sleep(2 * time.Second) // a few retries
	lapi.start()
	_, took := lapi.waitAlert(later, 20*time.Second)
	st := status(t, d)
	t.Logf("the LAPI back: the alert there %v later; pushed %d, failures %d, dropped %d", took.Round(time.Millisecond),
		st.Counters["crowdsec_alerts_pushed"], st.Counters["crowdsec_push_failures"], st.Counters["crowdsec_push_dropped"])
	if st.Counters["crowdsec_alerts_pushed"] != 3 || st.Counters["crowdsec_bans_lifted"] != 1 || st.Counters["crowdsec_push_dropped"] != 0 {
		t.Errorf("counters: %v", st.Counters)
	}
}

// lapiStream is the LAPI's GET /v1/decisions/stream?startup=true, as its
// bouncers get it.
func lapiStream(t *testing.T, ns *netnstest.NS) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/v1/decisions/stream?startup=true", lapiPort), nil)
	req.Header.Set("X-Api-Key", lapiBouncer)
	resp, err := ns.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}
