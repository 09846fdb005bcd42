package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// The PortSentry 2.0 beta config from the 2002 article, imported, checked,
// rendered (nft -c accepts it), and run: an nmap SYN scan of its
// INTERFACE_ADDRESS is blocked natively (the article's ipf KILL_ROUTE) and
// hosts.deny gets "ALL: <scanner> : DENY".
func TestImportedPsionicConfigBlocksScan(t *testing.T) {
	netnstest.Require(t, "nmap")
	bin := daemonBinary(t)
	legacy := filepath.Join("..", "..", "testdata", "legacy")
	out, err := exec.Command(bin, "import", "--ignore", filepath.Join(legacy, "psionic-2.0-beta.ignore"), filepath.Join(legacy, "psionic-2.0-beta.conf")).Output()
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	// Keep the test's hands off the host: hosts.deny and PortSentry's files
	// go to the test's directory.
	dir := t.TempDir()
	deny := filepath.Join(dir, "hosts.deny")
	y := string(out)
	for old, repl := range map[string]string{
		"path: /etc/hosts.deny": "path: " + deny,
		"history_file: /usr/local/psionic/portsentry2/portsentry.history": "history_file: " + filepath.Join(dir, "portsentry.history"),
		"blocked_file: /usr/local/psionic/portsentry2/portsentry.blocked": "blocked_file: " + filepath.Join(dir, "portsentry.blocked"),
		"\nstate:\n": "\nstate:\n  dir: " + filepath.Join(dir, "state") + "\n",
	} {
		if !strings.Contains(y, old) {
			t.Fatalf("imported YAML lacks %q:\n%s", old, y)
		}
		y = strings.Replace(y, old, repl, 1)
	}
	y += "control: {socket: " + filepath.Join(dir, "control.sock") + "}\n"
	cfg := filepath.Join(dir, "portsentry.yaml")
	os.WriteFile(cfg, []byte(y), 0o600)
	if out, err := exec.Command(bin, "check", "--config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("check of the imported config: %v\n%s", err, out)
	}

	p := netnstest.NewPair(t)
	rules, err := exec.Command(bin, "rules", "--config", cfg).Output()
	if err != nil {
		t.Fatal(err)
	}
	rf := filepath.Join(dir, "rules.nft")
	os.WriteFile(rf, rules, 0o644)
	p.A.MustRun("nft", "-c", "-f", rf)

	// The host of the article: 10.16.17.205 on A, reached by B through A.
	p.A.MustRun("ip", "addr", "add", "10.16.17.205/32", "dev", "veth-a")
	p.B.MustRun("ip", "route", "add", "10.16.17.205", "via", netnstest.AddrA)
	d := &daemon{t: t, ns: p.A, config: cfg}
	t.Cleanup(d.stop)
	d.start()
	nmap(t, p.B, "-sS", "-p", "1,11,15,79", "10.16.17.205")
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)
	d.waitLog(`attackalert: Host 10.201.0.2 has been blocked via wrappers with string: "ALL: 10.201.0.2 : DENY"`, 5*time.Second)
	if data, _ := os.ReadFile(deny); string(data) != "ALL: 10.201.0.2 : DENY\n" {
		t.Errorf("hosts.deny: %q", data)
	}
}
