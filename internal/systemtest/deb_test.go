package systemtest

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

const unit = "portsentry-nft.service"

// The .deb on a fresh Debian 12: apt installs it, the service runs
// sandboxed with CAP_NET_ADMIN alone, an nmap scan from namespace B ends
// in the set blocked inside the guest, systemctl reload keeps the block,
// systemctl stop leaves no process, and apt remove takes the table away.
func TestDebInstallRunReloadStop(t *testing.T) {
	requireSystem(t, "nmap")
	t.Parallel()
	deb := debPath(t)
	p := netnstest.NewPair(t)
	g := bootGuest(t, p.A, filepath.Dir(deb)+":/mnt/portsentry-nft")

	start := time.Now()
	g.mustRun("apt-get", "install", "-y", "-q", "--no-install-recommends", "/mnt/portsentry-nft/"+filepath.Base(deb))
	t.Logf("apt-get install: %s", time.Since(start).Round(time.Millisecond))
	for _, f := range []string{
		"/usr/sbin/portsentry-nft",
		"/usr/lib/systemd/system/portsentry-nft.service",
		"/etc/portsentry-nft/portsentry.yaml",
		"/usr/share/man/man8/portsentry-nft.8.gz",
		"/usr/share/man/man5/portsentry-nft.yaml.5.gz",
		"/usr/share/bash-completion/completions/portsentry-nft",
		"/usr/share/zsh/vendor-completions/_portsentry-nft",
		"/usr/share/doc/portsentry-nft/copyright",
		"/usr/share/doc/portsentry-nft/README.md",
		"/usr/share/doc/portsentry-nft/docs/log-lines.md", // the manual README.md links to
	} {
		g.mustRun("test", "-f", f)
	}
	if out := g.mustRun("dpkg-query", "-W", "-f", "${Conffiles}", "portsentry-nft"); !strings.Contains(out, "/etc/portsentry-nft/portsentry.yaml") {
		t.Errorf("the configuration is not a conffile: %q", out)
	}
	if m := strings.TrimSpace(g.mustRun("stat", "-c", "%a %U", "/etc/portsentry-nft/portsentry.yaml")); m != "600 root" {
		t.Errorf("the configuration's mode and owner: %q, want 600 root (it may come to hold a password)", m)
	}
	g.mustRun("portsentry-nft", "check")

	// The installed unit, with the binary where it says, verifies clean;
	// the guest has no man, so Documentation= is not followed here (the
	// host-side test does that).
	if out, err := g.run("systemd-analyze", "verify", "--man=no", unit); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify in the guest: %v\n%s", err, out)
	}

	// The postinst enabled and started it; start is then a no-op.
	g.mustRun("systemctl", "start", unit)
	if s := g.show(unit, "ActiveState") + "/" + g.show(unit, "SubState"); s != "active/running" {
		t.Fatalf("after systemctl start: %s\n%s", s, g.mustRun("journalctl", "--no-pager", "-u", unit))
	}
	if !strings.Contains(g.mustRun("systemctl", "status", "--no-pager", unit), "Active: active (running)") {
		t.Error("systemctl status does not say active (running)")
	}
	if e := g.show(unit, "UnitFileState"); e != "enabled" {
		t.Errorf("UnitFileState = %q, want enabled", e)
	}
	g.waitJournal(unit, "PortSentry is initialized and monitoring.", 10*time.Second)

	// The sandbox as the kernel sees it: CAP_NET_ADMIN (bit 12) is the
	// only capability, no new privileges.
	pid := g.show(unit, "MainPID")
	status := g.mustRun("cat", "/proc/"+pid+"/status")
	for field, want := range map[string]string{"CapEff": "0000000000001000", "CapBnd": "0000000000001000", "NoNewPrivs": "1"} {
		if got := statusField(status, field); got != want {
			t.Errorf("%s of the daemon = %q, want %q", field, got, want)
		}
	}
	if out := g.mustRun("systemd-analyze", "security", "--no-pager", unit); exposure(t, out) > 2.0 {
		t.Errorf("exposure in the guest above 2.0:\n%s", out)
	}

	// A scan from namespace B ends in the set, inside the guest.
	scan(t, p.B)
	el := g.waitBlocked("blocked", netnstest.AddrB, 10*time.Second)
	t.Logf("blocked: %s", el)
	g.waitJournal(unit, "attackalert: Host "+netnstest.AddrB+" has been blocked via nftables set inet portsentry blocked", 10*time.Second)

	// The control socket answers through the sandbox.
	if out := g.mustRun("portsentry-nft", "list"); !strings.Contains(out, netnstest.AddrB) {
		t.Errorf("portsentry-nft list does not show %s:\n%s", netnstest.AddrB, out)
	}
	g.mustRun("portsentry-nft", "status")

	// Reload: SIGHUP, same process, every block kept.
	g.mustRun("systemctl", "reload", unit)
	g.waitJournal(unit, "configuration reloaded; every block kept.", 10*time.Second)
	if got := g.show(unit, "MainPID"); got != pid {
		t.Errorf("reload changed the main PID from %s to %s", pid, got)
	}
	if s := g.show(unit, "ActiveState"); s != "active" {
		t.Errorf("after reload: %s", s)
	}
	if netnstest.ElementLine(g.mustRun("nft", "list", "set", "inet", "portsentry", "blocked"), netnstest.AddrB) == "" {
		t.Error("systemctl reload lost the block")
	}

	// Stop: no process left; the blocks stay in the kernel.
	g.mustRun("systemctl", "stop", unit)
	if s := g.show(unit, "ActiveState"); s != "inactive" {
		t.Errorf("after stop: %s", s)
	}
	if ps := g.processes("portsentry-nft"); len(ps) > 0 {
		t.Errorf("portsentry-nft processes left after stop: %v", ps)
	}
	if netnstest.ElementLine(g.mustRun("nft", "list", "set", "inet", "portsentry", "blocked"), netnstest.AddrB) == "" {
		t.Error("stop removed the block; blocks stay until they expire")
	}

	// Remove: the table goes with the package; purge takes the state.
	g.mustRun("apt-get", "remove", "-y", "-q", "portsentry-nft")
	if out, err := g.run("nft", "list", "table", "inet", "portsentry"); err == nil {
		t.Errorf("table inet portsentry still there after apt-get remove:\n%s", out)
	}
	g.mustRun("apt-get", "purge", "-y", "-q", "portsentry-nft")
	if _, err := g.run("test", "-e", "/var/lib/portsentry-nft"); err == nil {
		t.Error("/var/lib/portsentry-nft still there after purge")
	}
}

// lintian, pedantic, finds no error and no warning in the .deb but those
// deploy/package/lintian-overrides overrides (each with its reason), and
// no override has gone stale. Info and pedantic tags are logged.
func TestDebLintian(t *testing.T) {
	requireEnabled(t, "lintian")
	t.Parallel()
	deb := debPath(t)
	// --fail-on none: the tags decide, not lintian's exit status.
	out, err := run(5*time.Minute, nil, "lintian", "--fail-on", "none", "--pedantic", "--display-info", deb)
	if err != nil {
		t.Fatalf("lintian: %v", err)
	}
	var bad []string
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "E: "), strings.HasPrefix(line, "W: "),
			strings.Contains(line, " unused-override "), strings.Contains(line, " mismatched-override "):
			bad = append(bad, line)
		case strings.HasPrefix(line, "I: "), strings.HasPrefix(line, "P: "), strings.HasPrefix(line, "X: "):
			t.Log(line)
		}
	}
	if len(bad) > 0 {
		t.Errorf("lintian on %s (fix, or override with a reason in deploy/package/lintian-overrides):\n%s",
			filepath.Base(deb), strings.Join(bad, "\n"))
	}
}

// statusField returns a field of /proc/PID/status.
func statusField(status, name string) string {
	for _, line := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

// exposure reads the overall exposure from systemd-analyze security.
func exposure(t *testing.T, out string) float64 {
	t.Helper()
	m := exposureRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
