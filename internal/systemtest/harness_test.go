package systemtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// repoRoot is the repository, seen from this package's directory.
const repoRoot = "../.."

// Environment of the system tier (set by make e2e-system).
const (
	envEnable = "PORTSENTRY_SYSTEM_TESTS" // "1" runs the tier
	envDeb    = "PORTSENTRY_DEB"          // the .deb under test (default: newest bin/*.deb)
	envRootfs = "PORTSENTRY_ROOTFS"       // the rootfs tarball (default: the make rootfs cache)
	envBinary = "PORTSENTRY_BINARY"       // the binary for the role's binary method (default: go build)
)

func TestMain(m *testing.M) {
	code := m.Run()
	removeRootfs()
	os.Exit(code)
}

// requireSystem skips unless the system tier is enabled, then requires
// root and the tools like every privileged test.
func requireSystem(t *testing.T, tools ...string) {
	t.Helper()
	if os.Getenv(envEnable) != "1" {
		t.Skipf("system tier: set %s=1 to run it (make e2e-system)", envEnable)
	}
	netnstest.Require(t, append([]string{"systemd-nspawn", "nsenter", "tar", "zstd"}, tools...)...)
}

// requireEnabled skips unless the system tier is enabled (for the checks
// that need its tools but not root) and fails when a tool is missing.
func requireEnabled(t *testing.T, tools ...string) {
	t.Helper()
	if os.Getenv(envEnable) != "1" {
		t.Skipf("system tier: set %s=1 to run it (make e2e-system)", envEnable)
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (make e2e-system installs SYSTEM_TEST_PKGS)", tool)
		}
	}
}

// debPath is the .deb under test.
func debPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(envDeb); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(abs); err != nil {
			t.Fatalf("%s: %v (make deb builds it)", envDeb, err)
		}
		return abs
	}
	matches, _ := filepath.Glob(filepath.Join(repoRoot, "bin", "portsentry-nft_*.deb"))
	var newest string
	var newestTime time.Time
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && fi.ModTime().After(newestTime) {
			newest, newestTime = m, fi.ModTime()
		}
	}
	if newest == "" {
		t.Fatalf("no .deb: run make deb, or set %s", envDeb)
	}
	abs, _ := filepath.Abs(newest)
	return abs
}

// binaryPath is the portsentry-nft binary the role installs by its binary
// method: the one packed into the .deb (make deb stages it), or a fresh
// static build.
func binaryPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(envBinary); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(abs); err != nil {
			t.Fatalf("%s: %v (make deb stages it)", envBinary, err)
		}
		return abs
	}
	bin := filepath.Join(t.TempDir(), "portsentry-nft")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, filepath.Join(repoRoot, "cmd/portsentry-nft"))
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// run runs a command on the host with a time bound and returns its
// combined output.
func run(timeout time.Duration, stdin []byte, name string, args ...string) (string, error) {
	return runWrapped(timeout, nil, nil, stdin, "", name, args...)
}

// runWrapped runs name with args behind the wrapper argv (nsenter for the
// guest) with env, bounded by timeout; errors name the command itself,
// after where (e.g. "in guest: ").
func runWrapped(timeout time.Duration, wrapper, env []string, stdin []byte, where, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var buf bytes.Buffer
	argv := append(append(append([]string(nil), wrapper...), name), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s: %w", timeout, err)
	}
	if err != nil {
		err = fmt.Errorf("%s%s %s: %w\n%s", where, name, strings.Join(args, " "), err, buf.String())
	}
	return buf.String(), err
}

// ---- the root file system ----

var (
	rootfsOnce sync.Once
	rootfsDir  string
	rootfsErr  error
)

// defaultRootfsTarball is where make rootfs caches the tarball: the name
// carries the first 12 hex digits of mkrootfs.sh's SHA-256, as in
// mk/deploy.mk.
func defaultRootfsTarball() (string, error) {
	script, err := os.ReadFile("mkrootfs.sh")
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(script)
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".cache", "portsentry-nft", "debian12-rootfs-"+hex.EncodeToString(sum[:])[:12]+".tar.zst"), nil
}

// rootfs returns the guest's root file system, unpacked once per test
// binary from the cached tarball (built with mkrootfs.sh when missing).
// Guests boot it with --volatile=overlay: it is never written, so every
// guest starts from the same fresh tree.
func rootfs(t *testing.T) string {
	t.Helper()
	rootfsOnce.Do(func() {
		tarball := os.Getenv(envRootfs)
		if tarball == "" {
			if tarball, rootfsErr = defaultRootfsTarball(); rootfsErr != nil {
				return
			}
		}
		if _, err := os.Stat(tarball); errors.Is(err, os.ErrNotExist) {
			t.Logf("building the guest root file system %s (debootstrap, a few minutes)", tarball)
			if _, rootfsErr = run(30*time.Minute, nil, "./mkrootfs.sh", tarball); rootfsErr != nil {
				return
			}
		}
		sweepRootfs()
		start := time.Now()
		dir, err := os.MkdirTemp("", fmt.Sprintf("portsentry-systemtest-rootfs-%d-", os.Getpid()))
		if err != nil {
			rootfsErr = err
			return
		}
		rootfsDir = dir
		if _, rootfsErr = run(5*time.Minute, nil, "tar", "-C", dir, "--numeric-owner", "--zstd", "-xf", tarball); rootfsErr != nil {
			return
		}
		t.Logf("unpacked %s in %s", tarball, time.Since(start).Round(time.Millisecond))
	})
	if rootfsErr != nil {
		t.Fatalf("guest root file system: %v", rootfsErr)
	}
	return rootfsDir
}

// sweepRootfs removes trees left by test binaries that were killed (their
// pid is in the name) and whose guests are gone.
func sweepRootfs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "portsentry-systemtest-rootfs-*-*"))
	for _, d := range dirs {
		f := strings.Split(filepath.Base(d), "-")
		pid, err := strconv.Atoi(f[len(f)-2])
		if err != nil || syscall.Kill(pid, 0) == nil || inUse(d) {
			continue
		}
		os.RemoveAll(d)
	}
}

// inUse reports whether a running process names dir on its command line
// (a systemd-nspawn -D dir that outlived its test).
func inUse(dir string) bool {
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, c := range cmdlines {
		if data, err := os.ReadFile(c); err == nil && bytes.Contains(data, []byte(dir)) {
			return true
		}
	}
	return false
}

func removeRootfs() {
	if rootfsDir != "" {
		os.RemoveAll(rootfsDir)
	}
}

// ---- guests ----

var guestCounter atomic.Int64

// guest is a Debian 12 system booted with systemd-nspawn in a network
// namespace made by the test.
type guest struct {
	t       *testing.T
	name    string
	cmd     *exec.Cmd
	console *netnstest.Output
	done    chan struct{}
	// pid is the guest's systemd (PID 1 inside) as the host sees it.
	pid int
}

// bootGuest boots a fresh guest in ns and waits until its systemd reports
// the boot finished. binds are --bind-ro arguments (HOST:GUEST). The guest
// is powered off, and killed if it does not stop, at cleanup.
func bootGuest(t *testing.T, ns *netnstest.NS, binds ...string) *guest {
	t.Helper()
	root := rootfs(t)
	g := &guest{
		t:       t,
		name:    fmt.Sprintf("pssys%d-%d", os.Getpid(), guestCounter.Add(1)),
		console: &netnstest.Output{},
		done:    make(chan struct{}),
	}
	args := []string{
		"-D", root, "-M", g.name, "-b",
		"--register=no", "--keep-unit",
		"--network-namespace-path=" + ns.Path(),
		"--capability=CAP_NET_ADMIN",
		"--volatile=overlay",
		"--console=read-only",
	}
	for _, b := range binds {
		args = append(args, "--bind-ro="+b)
	}
	start := time.Now()
	g.cmd = exec.Command("systemd-nspawn", args...)
	g.cmd.Stdout, g.cmd.Stderr = g.console, g.console
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("systemd-nspawn: %v", err)
	}
	go func() { g.cmd.Wait(); close(g.done) }()
	t.Cleanup(g.shutdown)

	deadline := time.Now().Add(30 * time.Second)
	for g.pid == 0 {
		select {
		case <-g.done:
			t.Fatalf("systemd-nspawn exited during boot:\n%s", g.console)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no guest init under systemd-nspawn within 30s:\n%s", g.console)
		}
		g.pid = guestInit(g.cmd.Process.Pid)
	}
	// Right after PID 1 starts, systemctl finds no manager yet ("offline").
	bootDeadline := time.Now().Add(2 * time.Minute)
	var state string
	for {
		out, err := g.runTimeout(time.Until(bootDeadline), "systemctl", "is-system-running", "--wait")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		state = lines[len(lines)-1]
		if state == "running" || state == "degraded" {
			break
		}
		if time.Now().After(bootDeadline) {
			t.Fatalf("guest %s did not boot within 2m (%q, %v):\n%s", g.name, state, err, g.console)
		}
		select {
		case <-g.done:
			t.Fatalf("systemd-nspawn exited during boot:\n%s", g.console)
		case <-time.After(200 * time.Millisecond):
		}
	}
	if state == "degraded" {
		failed, _ := g.run("systemctl", "--failed", "--no-legend", "--plain")
		t.Logf("guest %s booted degraded; failed units:\n%s", g.name, failed)
	}
	t.Logf("guest %s booted in %s (systemd pid %d)", g.name, time.Since(start).Round(time.Millisecond), g.pid)
	return g
}

// guestInit finds the child of nspawnPID that is PID 1 of a new PID
// namespace (the guest's systemd), or 0.
func guestInit(nspawnPID int) int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", nspawnPID))
	for _, f := range tasks {
		data, _ := os.ReadFile(f)
		for _, c := range strings.Fields(string(data)) {
			pid, err := strconv.Atoi(c)
			if err != nil {
				continue
			}
			status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			for _, line := range strings.Split(string(status), "\n") {
				if f := strings.Fields(line); len(f) == 3 && f[0] == "NSpid:" && f[2] == "1" {
					return pid
				}
			}
		}
	}
	return 0
}

// sigRTMin3 is SIGRTMIN+3 as systemd counts (glibc's SIGRTMIN is 34):
// halt.
const sigRTMin3 = syscall.Signal(37)

// shutdown powers the guest off (SIGTERM to nspawn: the guest halts), and
// kills it when it does not stop in time. On failure it logs the guest's
// journal and console first.
func (g *guest) shutdown() {
	select {
	case <-g.done:
	default:
		if g.t.Failed() && g.pid != 0 {
			if j, err := g.runTimeout(30*time.Second, "journalctl", "--no-pager", "-n", "200"); err == nil {
				g.t.Logf("journal of guest %s (last 200 lines):\n%s", g.name, j)
			}
		}
		// SIGRTMIN+3 asks the guest's systemd to halt; nspawn exits with
		// it. Sent again while it runs: one that arrives before systemd
		// has its handlers is lost.
		deadline := time.Now().Add(30 * time.Second)
	halt:
		for {
			if g.pid != 0 {
				syscall.Kill(g.pid, sigRTMin3)
			} else {
				g.cmd.Process.Signal(syscall.SIGTERM)
			}
			select {
			case <-g.done:
				break halt
			case <-time.After(2 * time.Second):
			}
			if time.Now().After(deadline) {
				g.t.Errorf("guest %s did not power off within 30s; killing it", g.name)
				if g.pid != 0 {
					syscall.Kill(g.pid, syscall.SIGKILL)
				}
				g.cmd.Process.Kill()
				select {
				case <-g.done:
				case <-time.After(10 * time.Second):
					g.t.Errorf("systemd-nspawn for %s still running after SIGKILL", g.name)
				}
				break halt
			}
		}
	}
	os.RemoveAll("/run/systemd/nspawn/propagate/" + g.name)
	if g.t.Failed() {
		g.t.Logf("console of guest %s:\n%s", g.name, tail(g.console.String(), 80))
	}
}

// guestEnv is the environment of commands run in the guest.
var guestEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root", "LANG=C.UTF-8", "TERM=dumb",
	"SYSTEMD_COLORS=0", "SYSTEMD_PAGER=", "DEBIAN_FRONTEND=noninteractive",
}

// runTimeout runs a command in all of the guest's namespaces.
func (g *guest) runTimeout(timeout time.Duration, name string, args ...string) (string, error) {
	return g.runInput(timeout, nil, name, args...)
}

func (g *guest) runInput(timeout time.Duration, stdin []byte, name string, args ...string) (string, error) {
	wrapper := []string{"nsenter", "-t", strconv.Itoa(g.pid), "-a", "--"}
	return runWrapped(timeout, wrapper, guestEnv, stdin, "in guest: ", name, args...)
}

// run runs a command in the guest with a 2 minute bound.
func (g *guest) run(name string, args ...string) (string, error) {
	return g.runTimeout(2*time.Minute, name, args...)
}

// mustRun is run that fails the test on error.
func (g *guest) mustRun(name string, args ...string) string {
	g.t.Helper()
	out, err := g.run(name, args...)
	if err != nil {
		g.t.Fatal(err)
	}
	return out
}

// writeFile writes a file in the guest (parent directories created).
func (g *guest) writeFile(path string, data []byte) {
	g.t.Helper()
	if _, err := g.runInput(time.Minute, data, "sh", "-c", `mkdir -p "$(dirname "$1")" && cat >"$1"`, "sh", path); err != nil {
		g.t.Fatal(err)
	}
}

// show returns one property of a unit (systemctl show -p).
func (g *guest) show(unit, prop string) string {
	g.t.Helper()
	return strings.TrimSpace(g.mustRun("systemctl", "show", "-p", prop, "--value", unit))
}

// processes lists the PIDs (inside the guest) of processes named comm.
func (g *guest) processes(comm string) []string {
	g.t.Helper()
	out := g.mustRun("sh", "-c", `for f in /proc/[0-9]*/comm; do [ "$(cat "$f" 2>/dev/null)" = "$1" ] && echo "${f%/comm}"; done; true`, "sh", comm)
	return strings.Fields(out)
}

// waitJournal waits until the unit's journal contains s.
func (g *guest) waitJournal(unit, s string, within time.Duration) {
	g.t.Helper()
	deadline := time.Now().Add(within)
	var out string
	for time.Now().Before(deadline) {
		out, _ = g.run("journalctl", "--no-pager", "-o", "cat", "-u", unit)
		if strings.Contains(out, s) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	g.t.Fatalf("no %q in the journal of %s within %s:\n%s", s, unit, within, tail(out, 40))
}

// waitBlocked waits until addr is an element of the set inet portsentry
// set as `nft list set` inside the guest shows it, and returns its line.
func (g *guest) waitBlocked(set, addr string, within time.Duration) string {
	g.t.Helper()
	deadline := time.Now().Add(within)
	var out string
	for time.Now().Before(deadline) {
		out = g.mustRun("nft", "list", "set", "inet", "portsentry", set)
		if el := netnstest.ElementLine(out, addr); el != "" {
			return el
		}
		time.Sleep(100 * time.Millisecond)
	}
	g.t.Fatalf("%s not in set %s within %s:\n%s", addr, set, within, out)
	return ""
}

// scan runs nmap -sS against the guest's address from namespace b.
func scan(t *testing.T, b *netnstest.NS) {
	t.Helper()
	out, err := b.Run("timeout", "60", "nmap", "-Pn", "-n", "-sS", "--max-retries", "1", "--host-timeout", "30s",
		"-p", "1,11,15,79", netnstest.AddrA)
	if err != nil && !strings.Contains(err.Error(), "exit status") {
		t.Fatalf("nmap: %v", err)
	}
	t.Logf("nmap -sS from %s:\n%s", b.Name, out)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
