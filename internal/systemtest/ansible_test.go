package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// deploy/ansible/site.yml on a fresh Debian 12 guest: --check passes
// before anything is installed, the first run installs the .deb, writes
// the configuration from the role variables and starts the service, the
// second run changes nothing, a configuration that portsentry-nft check
// refuses fails the run and changes nothing, and the service blocks a scan
// with the configured timeout. Then the role imports a legacy portsentry.conf on
// the host, again idempotently.
func TestAnsibleRole(t *testing.T) {
	requireSystem(t, "nmap", "ansible-playbook")
	t.Parallel()
	deb := debPath(t)
	p := netnstest.NewPair(t)
	g := bootGuest(t, p.A)
	a := newAnsible(t, g, map[string]any{"portsentry_nft_deb": deb})

	r := a.play("--check")
	if r.failed != 0 || r.unreachable != 0 {
		t.Fatalf("--check on a fresh host: %s", r)
	}
	if _, err := g.run("test", "-e", "/usr/sbin/portsentry-nft"); err == nil {
		t.Fatal("--check installed the binary")
	}

	r = a.play()
	if r.failed != 0 || r.changed == 0 {
		t.Fatalf("first run, want changes and no failure: %s", r)
	}
	r = a.play()
	if r.failed != 0 || r.changed != 0 {
		t.Fatalf("second run, want changed=0: %s", r)
	}

	if s := g.show(unit, "ActiveState") + "/" + g.show(unit, "SubState"); s != "active/running" {
		t.Fatalf("after the playbook: %s", s)
	}
	if e := g.show(unit, "UnitFileState"); e != "enabled" {
		t.Errorf("UnitFileState = %q, want enabled", e)
	}
	conf := g.mustRun("cat", "/etc/portsentry-nft/portsentry.yaml")
	if !strings.Contains(conf, "timeout: 2h") {
		t.Errorf("the configuration does not carry site.yml's block timeout:\n%s", conf)
	}
	g.waitJournal(unit, "configuration reloaded; every block kept.", 10*time.Second)

	// A configuration portsentry-nft check refuses fails the run and
	// leaves the installed one in place.
	r = a.play("-e", "@"+a.vars(map[string]any{"portsentry_nft_config": map[string]any{"tcp": map[string]any{"ports": []int{70000}}}}))
	if r.failed != 1 || !strings.Contains(r.out, "failed to validate") || !strings.Contains(r.out, "70000") {
		t.Errorf("a broken configuration: want one failed task (failed to validate, naming 70000): %s", r)
	}
	if now := g.mustRun("cat", "/etc/portsentry-nft/portsentry.yaml"); now != conf {
		t.Errorf("a refused configuration replaced the installed one:\n%s", now)
	}
	if s := g.show(unit, "ActiveState"); s != "active" {
		t.Errorf("after a refused configuration: %s", s)
	}

	scan(t, p.B)
	el := g.waitBlocked("blocked", netnstest.AddrB, 10*time.Second)
	if !strings.Contains(el, "timeout 2h") {
		t.Errorf("element %q: want the 2h timeout from the role variables", el)
	}

	// The legacy import, on a host where PortSentry 1.2 was installed the
	// Debian way. Its HISTORY_FILE and BLOCKED_FILE live in
	// /var/lib/portsentry, which the unit's sandbox opens only through a
	// drop-in: the role writes one. Its KILL_HOSTS_DENY names
	// /etc/hosts.deny, which Debian 12 does not have: the role creates it.
	g.writeFile("/etc/portsentry/portsentry.conf", []byte(legacyConf))
	g.writeFile("/etc/portsentry/portsentry.ignore.static", []byte("127.0.0.1/32\n0.0.0.0\n"))
	g.writeFile("/etc/default/portsentry", []byte("TCP_MODE=\"tcp\"\nUDP_MODE=\"udp\"\n"))
	g.mustRun("mkdir", "-p", "/var/lib/portsentry")
	pidBefore := g.show(unit, "MainPID")
	imp := map[string]any{
		"portsentry_nft_import":         true,
		"portsentry_nft_systemd_dropin": "[Service]\nReadWritePaths=-/var/lib/portsentry\n",
	}
	r = a.play("-e", "@"+a.vars(imp))
	if r.failed != 0 || r.changed == 0 {
		t.Fatalf("import run, want changes and no failure: %s", r)
	}
	r = a.play("-e", "@"+a.vars(imp))
	if r.failed != 0 || r.changed != 0 {
		t.Fatalf("second import run, want changed=0: %s", r)
	}
	conf = g.mustRun("cat", "/etc/portsentry-nft/portsentry.yaml")
	if !strings.HasPrefix(conf, "# Imported from /etc/portsentry/portsentry.conf") {
		t.Errorf("the configuration is not the imported one:\n%s", conf)
	}
	if s := g.show(unit, "ActiveState"); s != "active" {
		t.Fatalf("after the import: %s\n%s", s, g.mustRun("journalctl", "--no-pager", "-u", unit))
	}
	if _, err := g.run("test", "-f", "/etc/hosts.deny"); err != nil {
		t.Error("KILL_HOSTS_DENY was imported but the role did not create /etc/hosts.deny for the sandbox to open")
	}
	if g.show(unit, "MainPID") == pidBefore {
		t.Error("the new drop-in did not restart the service")
	}
	if netnstest.ElementLine(g.mustRun("nft", "list", "set", "inet", "portsentry", "blocked"), netnstest.AddrB) == "" {
		t.Error("the restart lost the block")
	}

	// The fleet's variables: the fleet: section joins the (imported)
	// configuration with the fleet's hosts, the credentials file is root's
	// alone, and a password makes the configuration root's alone too. No
	// NATS server answers here: local blocking goes on.
	imp["portsentry_nft_fleet"] = map[string]any{"servers": []string{"nats://127.0.0.1:4222"}, "name": "h1"}
	imp["portsentry_nft_fleet_hosts"] = []string{"192.0.2.0/28", "2001:db8::11"}
	imp["portsentry_nft_fleet_credentials"] = "-----BEGIN NATS USER JWT-----\nnot-a-real-one\n------END NATS USER JWT------\n"
	for i := range 2 {
		r = a.play("-e", "@"+a.vars(imp))
		if r.failed != 0 || (i == 0) != (r.changed > 0) {
			t.Fatalf("fleet run %d: want changes only the first time, no failure: %s", i+1, r)
		}
	}
	conf = g.mustRun("cat", "/etc/portsentry-nft/portsentry.yaml")
	if !strings.Contains(conf, "credentials: /etc/portsentry-nft/fleet.creds") || !strings.Contains(conf, "nats://127.0.0.1:4222") ||
		!strings.Contains(conf, "192.0.2.0/28") || !strings.Contains(conf, "2001:db8::11") {
		t.Errorf("the configuration lacks the fleet section or its hosts:\n%s", conf)
	}
	if m := strings.TrimSpace(g.mustRun("stat", "-c", "%a %U", "/etc/portsentry-nft/fleet.creds", "/etc/portsentry-nft/portsentry.yaml")); m != "600 root\n600 root" {
		t.Errorf("modes of the credentials and the configuration: %q, want 600, root's", m)
	}
	delete(imp, "portsentry_nft_fleet_credentials")
	imp["portsentry_nft_fleet"] = map[string]any{"servers": []string{"nats://127.0.0.1:4222"}, "name": "h1", "user": "h1", "password": "h1-change-me"}
	if r = a.play("-e", "@"+a.vars(imp)); r.failed != 0 {
		t.Fatalf("fleet run with a password: %s", r)
	}
	if m := strings.TrimSpace(g.mustRun("stat", "-c", "%a", "/etc/portsentry-nft/portsentry.yaml")); m != "600" {
		t.Errorf("a configuration with the fleet's password has mode %s, want 600", m)
	}
	if s := g.show(unit, "ActiveState"); s != "active" {
		t.Errorf("with a fleet whose servers do not answer: %s", s)
	}
}

// The role with a bare binary instead of the .deb: it installs the
// binary and the unit (ExecStart under /usr/local/sbin), idempotently.
func TestAnsibleRoleBinary(t *testing.T) {
	requireSystem(t, "ansible-playbook")
	t.Parallel()
	bin := binaryPath(t)
	p := netnstest.NewPair(t)
	g := bootGuest(t, p.A)
	a := newAnsible(t, g, map[string]any{"portsentry_nft_binary": bin})

	if r := a.play("--check"); r.failed != 0 || r.unreachable != 0 {
		t.Fatalf("--check on a fresh host: %s", r)
	}
	if r := a.play(); r.failed != 0 || r.changed == 0 {
		t.Fatalf("first run, want changes and no failure: %s", r)
	}
	if r := a.play(); r.failed != 0 || r.changed != 0 {
		t.Fatalf("second run, want changed=0: %s", r)
	}
	if s := g.show(unit, "ActiveState") + "/" + g.show(unit, "SubState"); s != "active/running" {
		t.Fatalf("after the playbook: %s", s)
	}
	if got := g.show(unit, "FragmentPath"); got != "/etc/systemd/system/portsentry-nft.service" {
		t.Errorf("unit loaded from %s", got)
	}
	if out := g.mustRun("systemctl", "cat", unit); !strings.Contains(out, "\nExecStart=/usr/local/sbin/portsentry-nft run\n") {
		t.Errorf("the unit does not run /usr/local/sbin/portsentry-nft:\n%s", out)
	}
	if out, err := g.run("systemd-analyze", "verify", "--man=no", unit); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify in the guest: %v\n%s", err, out)
	}
	g.waitJournal(unit, "PortSentry is initialized and monitoring.", 10*time.Second)
}

// legacyConf is PortSentry 1.2's configuration as Debian ships it, abridged.
const legacyConf = `# PortSentry 1.2 (Debian), abridged
TCP_PORTS="1,11,15,79,111,119,143,540,635,1080,1524,2000,5742,6667,12345,12346,20034,27665,31337,32771,32772,32773,32774,40421,49724,54320"
UDP_PORTS="1,7,9,69,161,162,513,635,640,641,700,37444,34555,31335,32770,32771,32772,32773,32774,31337,54321"
ADVANCED_PORTS_TCP="1024"
ADVANCED_PORTS_UDP="1024"
ADVANCED_EXCLUDE_TCP="113,139"
ADVANCED_EXCLUDE_UDP="520,138,137,67"
IGNORE_FILE="/etc/portsentry/portsentry.ignore.static"
HISTORY_FILE="/var/lib/portsentry/portsentry.history"
BLOCKED_FILE="/var/lib/portsentry/portsentry.blocked"
RESOLVE_HOST = "0"
BLOCK_UDP="1"
BLOCK_TCP="1"
KILL_ROUTE="/sbin/iptables -I INPUT -s $TARGET$ -j DROP"
KILL_HOSTS_DENY="ALL: $TARGET$ : DENY"
SCAN_TRIGGER="0"
`

// ansible runs deploy/ansible/site.yml against one guest.
type ansible struct {
	t         *testing.T
	dir       string
	inventory string
	base      string // extra-vars file given to every run
	n         int
}

func newAnsible(t *testing.T, g *guest, vars map[string]any) *ansible {
	t.Helper()
	a := &ansible{t: t, dir: t.TempDir()}
	a.inventory = filepath.Join(a.dir, "inventory.ini")
	inv := fmt.Sprintf("[portsentry]\nguest ansible_connection=community.docker.nsenter ansible_nsenter_pid=%d "+
		"ansible_become=false ansible_python_interpreter=/usr/bin/python3\n", g.pid)
	if err := os.WriteFile(a.inventory, []byte(inv), 0o600); err != nil {
		t.Fatal(err)
	}
	a.base = a.vars(vars)
	return a
}

// vars writes extra variables to a JSON file for -e @FILE.
func (a *ansible) vars(v map[string]any) string {
	a.t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		a.t.Fatal(err)
	}
	a.n++
	f := filepath.Join(a.dir, fmt.Sprintf("vars%d.json", a.n))
	if err := os.WriteFile(f, data, 0o600); err != nil {
		a.t.Fatal(err)
	}
	return f
}

// recap is the PLAY RECAP line of the guest.
type recap struct {
	ok, changed, unreachable, failed, skipped int
	out                                       string // the whole output
}

func (r recap) String() string {
	return fmt.Sprintf("ok=%d changed=%d unreachable=%d failed=%d skipped=%d\n%s",
		r.ok, r.changed, r.unreachable, r.failed, r.skipped, r.out)
}

var recapRE = regexp.MustCompile(`(?m)^guest\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)`)

// play runs ansible-playbook site.yml (bounded to 5 minutes) and returns
// the recap; the output is logged.
func (a *ansible) play(args ...string) recap {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	argv := append([]string{"-i", a.inventory, filepath.Join(repoRoot, "deploy/ansible/site.yml"), "-e", "@" + a.base}, args...)
	cmd := exec.CommandContext(ctx, "ansible-playbook", argv...)
	cmd.Env = append(os.Environ(),
		"ANSIBLE_NOCOLOR=1", "ANSIBLE_FORCE_COLOR=0", "ANSIBLE_RETRY_FILES_ENABLED=0",
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(a.dir, "tmp"), "ANSIBLE_PIPELINING=1",
		"ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks")
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start).Round(time.Millisecond)
	m := recapRE.FindStringSubmatch(string(out))
	if m == nil {
		a.t.Fatalf("ansible-playbook %s: %v, no recap (%s):\n%s", strings.Join(args, " "), err, took, out)
	}
	r := recap{out: string(out)}
	for i, p := range []*int{&r.ok, &r.changed, &r.unreachable, &r.failed, &r.skipped} {
		*p, _ = strconv.Atoi(m[i+1])
	}
	a.t.Logf("ansible-playbook site.yml %s: %s (%s)", strings.Join(args, " "), strings.TrimSpace(m[0]), took)
	if err != nil && r.failed == 0 && r.unreachable == 0 {
		a.t.Fatalf("ansible-playbook %s: %v:\n%s", strings.Join(args, " "), err, out)
	}
	return r
}
