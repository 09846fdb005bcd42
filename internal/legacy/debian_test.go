package legacy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// debianPackage downloads Debian's portsentry package with apt-get and
// unpacks it with dpkg-deb, returning the unpacked tree. Set PORTSENTRY_DEB
// to a downloaded portsentry_*.deb to skip the download. Without apt (or
// its network) the test is skipped, loudly: the message goes to stderr too.
func debianPackage(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: not downloading Debian's portsentry package")
	}
	dir := t.TempDir()
	deb := os.Getenv("PORTSENTRY_DEB")
	if deb == "" {
		if _, err := exec.LookPath("apt-get"); err != nil {
			skipLoudly(t, "apt-get is not installed: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "apt-get", "download", "portsentry")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			skipLoudly(t, "apt-get download portsentry failed (apt unreachable?): %v\n%s", err, out)
		}
		m, _ := filepath.Glob(filepath.Join(dir, "portsentry_*.deb"))
		if len(m) != 1 {
			skipLoudly(t, "apt-get download portsentry left %d .deb files in %s", len(m), dir)
		}
		deb = m[0]
	}
	root := filepath.Join(dir, "root")
	if out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
		skipLoudly(t, "dpkg-deb -x %s: %v\n%s", deb, err, out)
	}
	t.Logf("unpacked %s", filepath.Base(deb))
	return root
}

func skipLoudly(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(os.Stderr, "\n*** %s SKIPPED: %s\n\n", t.Name(), msg)
	t.Skip(msg)
}

// TestDebianConf imports the portsentry.conf Debian ships, as PortSentry
// 1.2 runs it: stealth (-stcp -sudp), advanced (-atcp -audp), and with the
// modes read from the /etc/default/portsentry Debian's postinst writes.
func TestDebianConf(t *testing.T) {
	root := debianPackage(t)
	confPath := filepath.Join(root, "etc/portsentry/portsentry.conf")
	data, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	ignore := filepath.Join(root, "etc/portsentry/portsentry.ignore.static")
	c, err := Parse(confPath, data, DialectAuto)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Dialect != Dialect12 {
		t.Fatalf("dialect %v (%s); want 1.2", c.Dialect, c.DialectReason)
	}
	routeLine := 0
	if l, ok := c.Lookup("KILL_ROUTE"); ok {
		routeLine = l.Num
	}

	run := func(t *testing.T, modes *Modes, from string) *Result {
		t.Helper()
		res, err := Import(c, Options{Modes: modes, ModesFrom: from, IgnoreFile: ignore})
		if err != nil {
			t.Fatalf("Import: %v", err)
		}
		if _, err := config.Parse("debian.yaml", res.YAML); err != nil {
			t.Fatalf("config.Parse: %v\n%s", err, res.YAML)
		}
		for _, w := range res.Warnings {
			t.Log(w)
		}
		cfg := res.Config
		// Common to every mode: the Debian conf's responses and actions.
		if cfg.TCP.Response != config.ResponseLog || cfg.UDP.Response != config.ResponseLog {
			t.Errorf("responses %s/%s; Debian ships BLOCK_TCP=0 and BLOCK_UDP=0", cfg.TCP.Response, cfg.UDP.Response)
		}
		if cfg.HostsDeny.Template != "ALL: $TARGET$ : DENY" || cfg.HostsDeny.Path != "/etc/hosts.deny" {
			t.Errorf("hosts_deny %+v", cfg.HostsDeny)
		}
		if len(cfg.Commands) != 0 {
			t.Errorf("commands %+v; the route KILL_ROUTE is native blocking", cfg.Commands)
		}
		if routeLine == 0 || !hasDiag(res.Warnings, routeLine, "(route) is replaced by native blocking") {
			t.Errorf("no warning for the KILL_ROUTE on line %d", routeLine)
		}
		if cfg.State.HistoryFile != "/var/lib/portsentry/portsentry.history" || cfg.State.BlockedFile != "/var/lib/portsentry/portsentry.blocked" {
			t.Errorf("state %+v", cfg.State)
		}
		if got := prefixesOf(cfg); got != "0.0.0.0/32,127.0.0.0/8,127.0.0.1/32,::1/128" {
			t.Errorf("ignore %s", got)
		}
		return res
	}

	t.Run("stcp", func(t *testing.T) {
		res := run(t, &Modes{TCP: "stcp", UDP: "sudp"}, "")
		cfg := res.Config
		if portsOf(cfg.TCP.Ports) != "aware" || portsOf(cfg.UDP.Ports) != "aware" {
			t.Errorf("ports %v / %v; Debian's active lists are the aware preset", cfg.TCP.Ports, cfg.UDP.Ports)
		}
		if cfg.TCP.Advanced.Below != 0 || cfg.UDP.Advanced.Below != 0 {
			t.Errorf("advanced %+v / %+v in stealth mode", cfg.TCP.Advanced, cfg.UDP.Advanced)
		}
		for _, key := range []string{"ADVANCED_PORTS_TCP", "ADVANCED_PORTS_UDP", "ADVANCED_EXCLUDE_TCP", "ADVANCED_EXCLUDE_UDP"} {
			l, _ := c.Lookup(key)
			if !hasDiag(res.Warnings, l.Num, key+" is not imported: it is only used in -a") {
				t.Errorf("no warning for %s on line %d", key, l.Num)
			}
		}
		if !strings.Contains(string(res.YAML), "ports: [aware]") {
			t.Errorf("YAML lacks ports: [aware]\n%s", res.YAML)
		}
	})

	t.Run("atcp", func(t *testing.T) {
		res := run(t, &Modes{TCP: "atcp", UDP: "audp"}, "")
		cfg := res.Config
		if len(cfg.TCP.Ports) != 0 || cfg.TCP.Advanced.Below != 1024 || portsOf(cfg.TCP.Advanced.Exclude) != "113,139" {
			t.Errorf("tcp %+v", cfg.TCP)
		}
		if len(cfg.UDP.Ports) != 0 || cfg.UDP.Advanced.Below != 1024 || portsOf(cfg.UDP.Advanced.Exclude) != "520,138,137,67" {
			t.Errorf("udp %+v", cfg.UDP)
		}
		if len(cfg.TCP.Monitored) != 1023-2 || len(cfg.UDP.Monitored) != 1023-4 {
			t.Errorf("monitored %d TCP, %d UDP", len(cfg.TCP.Monitored), len(cfg.UDP.Monitored))
		}
		l, _ := c.Lookup("TCP_PORTS")
		if !hasDiag(res.Warnings, l.Num, "TCP_PORTS is not imported: in -atcp mode") {
			t.Errorf("no warning for TCP_PORTS on line %d", l.Num)
		}
	})

	t.Run("defaults", func(t *testing.T) {
		// What Debian's postinst writes on a fresh install.
		defaults := "# /etc/default/portsentry\n#\n# This file is read by /etc/init.d/portsentry.\n#\nTCP_MODE=\"tcp\"\nUDP_MODE=\"udp\"\n"
		m, warns, err := ParseDefaults("/etc/default/portsentry", []byte(defaults))
		if err != nil || len(warns) != 0 || m != DefaultModes {
			t.Fatalf("ParseDefaults = %+v, %v, %v", m, warns, err)
		}
		res := run(t, &m, "/etc/default/portsentry")
		l, _ := c.Lookup("TCP_PORTS")
		if !hasDiag(res.Warnings, l.Num, "PortSentry -tcp saw only completed connections") {
			t.Errorf("no -tcp warning on line %d", l.Num)
		}
		if !strings.Contains(string(res.YAML), "# PortSentry ran -tcp -udp (from /etc/default/portsentry).") {
			t.Errorf("header does not say where the modes came from:\n%s", res.YAML)
		}
	})
}
