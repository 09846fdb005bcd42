package systemtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

var (
	unitFile     = filepath.Join(repoRoot, "deploy/systemd/portsentry-nft.service")
	unitTemplate = filepath.Join(repoRoot, "deploy/ansible/roles/portsentry_nft/templates/portsentry-nft.service.j2")
	manPages     = []string{
		filepath.Join(repoRoot, "deploy/man/portsentry-nft.8"),
		filepath.Join(repoRoot, "deploy/man/portsentry-nft.yaml.5"),
	}
)

// The role's unit template is the unit with the binary path as a
// variable, and nothing else.
func TestRoleUnitTemplateMatchesUnit(t *testing.T) {
	want, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := os.ReadFile(unitTemplate)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.SplitAfter(string(tmpl), "\n") {
		if strings.HasPrefix(l, "{#") || strings.HasPrefix(l, "{{ ansible_managed") {
			continue
		}
		lines = append(lines, strings.ReplaceAll(l, "{{ portsentry_nft_binary_dest }}", "/usr/sbin/portsentry-nft"))
	}
	if got := strings.Join(lines, ""); got != string(want) {
		t.Errorf("%s differs from %s; regenerate it:\n"+
			"  { echo '{# ... #}'; echo '{{ ansible_managed | comment }}'; sed 's|/usr/sbin/portsentry-nft|{{ portsentry_nft_binary_dest }}|g' %s; }",
			unitTemplate, unitFile, unitFile)
	}
}

// systemd-analyze verify finds nothing to say about the unit. The binary
// path is pointed at an executable (the unit names /usr/sbin, where the
// .deb puts it; the guest test verifies the installed unit as it is), and
// the man pages of Documentation= are looked up in deploy/man.
func TestUnitVerifies(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed")
	}
	dir := t.TempDir()
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.ReplaceAll(string(data), "/usr/sbin/portsentry-nft", exe))
	f := filepath.Join(dir, "portsentry-nft.service")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"verify"}
	if _, err := exec.LookPath("man"); err == nil {
		man := filepath.Join(dir, "man")
		for _, p := range manPages {
			sec := filepath.Join(man, "man"+p[len(p)-1:])
			os.MkdirAll(sec, 0o755)
			page, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(sec, filepath.Base(p)), page, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Setenv("MANPATH", man)
	} else {
		args = append(args, "--man=no")
	}
	out, err := run(time.Minute, nil, "systemd-analyze", append(args, f)...)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The unit's exposure, as systemd-analyze security rates it offline, is
// 2.0 or lower.
func TestUnitSecurityExposure(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed")
	}
	out, err := run(time.Minute, nil, "systemd-analyze", "security", "--offline=yes", "--no-pager", unitFile)
	if err != nil && !strings.Contains(out, "Overall exposure level") {
		if strings.Contains(out, "offline") {
			t.Skipf("this systemd-analyze has no --offline: %v", err)
		}
		t.Fatal(err)
	}
	e := exposure(t, out)
	t.Logf("systemd-analyze security --offline=yes: exposure %.1f", e)
	if e > 2.0 {
		t.Errorf("exposure %.1f, want 2.0 or lower:\n%s", e, out)
	}
}

// Every key of the default configuration (two levels: "block.timeout")
// has its entry in portsentry-nft.yaml(5).
func TestManPageNamesEveryConfigKey(t *testing.T) {
	def, err := os.ReadFile(filepath.Join(repoRoot, "internal/config/default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	if err := yaml.Unmarshal(def, &keys); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(manPages[1])
	if err != nil {
		t.Fatal(err)
	}
	// Keys appear in .B/.BR lines, alone or as "key.sub".
	documented := map[string]bool{}
	for _, line := range strings.Split(strings.ReplaceAll(string(page), `\-`, "-"), "\n") {
		if !strings.HasPrefix(line, ".B ") && !strings.HasPrefix(line, ".BR ") {
			continue
		}
		for _, tok := range strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '"' || r == ',' }) {
			documented[tok] = true
		}
	}
	for k, v := range keys {
		sub, ok := v.(map[string]any)
		if !ok {
			if !documented[k] {
				t.Errorf("portsentry-nft.yaml(5) has no entry for %q", k)
			}
			continue
		}
		for s := range sub {
			if !documented[k+"."+s] {
				t.Errorf("portsentry-nft.yaml(5) has no entry for %q", k+"."+s)
			}
		}
	}
}

// The man pages format without warnings.
func TestManPagesFormat(t *testing.T) {
	requireEnabled(t, "man")
	for _, p := range manPages {
		cmd := exec.Command("man", "--warnings", "-l", p)
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "LANG=C.UTF-8")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Errorf("man -l %s: %v\n%s", p, err, stderr.String())
		}
		if !strings.Contains(string(out), "portsentry-nft") {
			t.Errorf("man -l %s printed nothing useful", p)
		}
	}
}

// yamllint and ansible-lint (production profile) pass on the role and the
// playbook, and ansible-playbook accepts its syntax.
func TestLintAnsible(t *testing.T) {
	requireEnabled(t, "yamllint", "ansible-lint", "ansible-playbook")
	dir := filepath.Join(repoRoot, "deploy/ansible")
	if out, err := run(2*time.Minute, nil, "yamllint", "-s", dir); err != nil {
		t.Errorf("yamllint: %v\n%s", err, out)
	}
	cmd := exec.Command("ansible-lint", "--profile", "production", "--nocolor")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ANSIBLE_LOCAL_TEMP="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("ansible-lint --profile production: %v\n%s", err, out)
	}
	inv := filepath.Join(t.TempDir(), "inventory.ini")
	if err := os.WriteFile(inv, []byte("[portsentry]\nguest\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(2*time.Minute, nil, "ansible-playbook", "--syntax-check", "-i", inv, filepath.Join(dir, "site.yml")); err != nil {
		t.Errorf("ansible-playbook --syntax-check: %v\n%s", err, out)
	}
}

// make install puts binary, unit (ExecStart under PREFIX), man pages and
// the default configuration (0600) under DESTDIR, and keeps an existing
// configuration.
func TestMakeInstall(t *testing.T) {
	requireEnabled(t, "make")
	dest := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dest, "etc/portsentry-nft"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := run(5*time.Minute, nil, "make", "-C", repoRoot, "install", "DESTDIR="+dest, "PREFIX=/opt/psn"); err != nil {
		t.Fatal(err, out)
	}
	for _, f := range []string{
		"opt/psn/sbin/portsentry-nft",
		"opt/psn/lib/systemd/system/portsentry-nft.service",
		"opt/psn/share/man/man8/portsentry-nft.8",
		"opt/psn/share/man/man5/portsentry-nft.yaml.5",
		"opt/psn/share/bash-completion/completions/portsentry-nft",
		"opt/psn/share/zsh/vendor-completions/_portsentry-nft",
		"etc/portsentry-nft/portsentry.yaml",
	} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Error(err)
		}
	}
	u, _ := os.ReadFile(filepath.Join(dest, "opt/psn/lib/systemd/system/portsentry-nft.service"))
	if !strings.Contains(string(u), "\nExecStart=/opt/psn/sbin/portsentry-nft run\n") {
		t.Errorf("installed unit does not run /opt/psn/sbin/portsentry-nft:\n%s", u)
	}
	// The configuration is root's alone: it may come to hold a password.
	conf := filepath.Join(dest, "etc/portsentry-nft/portsentry.yaml")
	if fi, err := os.Stat(conf); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("installed configuration: %v, want mode 0600", fi.Mode())
	}
	// A second install keeps a changed configuration.
	if err := os.WriteFile(conf, []byte("block: {timeout: 2h}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(5*time.Minute, nil, "make", "-C", repoRoot, "install", "DESTDIR="+dest, "PREFIX=/opt/psn"); err != nil {
		t.Fatal(err, out)
	}
	if got, _ := os.ReadFile(conf); string(got) != "block: {timeout: 2h}\n" {
		t.Errorf("make install replaced an existing configuration: %q", got)
	}
}
