package main

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/listeners"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// Shared with internal/config: the bad configs and their golden errors
// (rewritten by go test ./internal/config -update), and the good configs.
const configTestdata = "../../testdata/config"

// run calls dispatch as main would and returns the exit code and output.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = dispatch(slices.Clone(args), &out, &errb)
	return code, out.String(), errb.String()
}

func abs(t *testing.T, path string) string {
	t.Helper()
	p, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func yamlFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no YAML files in %s (%v)", dir, err)
	}
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	sort.Strings(names)
	return names
}

func skipIfDefaultConfigExists(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(config.DefaultPath); err == nil {
		t.Skipf("%s exists on this machine, so the command would read it instead of the embedded default", config.DefaultPath)
	}
}

// noSockets makes `rules` see a host without listeners for the test.
func noSockets(t *testing.T) {
	t.Helper()
	fakeSockets(t, nil, nil)
}

func fakeSockets(t *testing.T, socks []listeners.Socket, err error) {
	t.Helper()
	old := dumpSockets
	dumpSockets = func() ([]listeners.Socket, error) { return socks, err }
	t.Cleanup(func() { dumpSockets = old })
}

// TestRulesDefault: with no config file and no listeners, `rules` prints
// the reference ruleset nft/portsentry.nft byte for byte.
func TestRulesDefault(t *testing.T) {
	skipIfDefaultConfigExists(t)
	noSockets(t)
	want, err := os.ReadFile("../../nft/portsentry.nft")
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"rules"}, {"rules", "--config", config.DefaultPath}, {"rules", "-config=" + config.DefaultPath}} {
		code, stdout, stderr := run(t, args...)
		if code != 0 || stderr != "" {
			t.Fatalf("%v: exit %d, stderr %q", args, code, stderr)
		}
		if stdout != string(want) {
			t.Errorf("%v differs from nft/portsentry.nft\ngot:\n%s\nwant:\n%s", args, stdout, want)
		}
	}
}

// TestRulesInUse: `rules` prints what the daemon installs, in-use sets
// included: the same nft.Build of the same listeners.Elements.
func TestRulesInUse(t *testing.T) {
	skipIfDefaultConfigExists(t)
	socks := []listeners.Socket{
		{Proto: listeners.ProtoTCP, Addr: netip.MustParseAddr("0.0.0.0"), Port: 111, Inode: 7},
		{Proto: listeners.ProtoTCP, Addr: netip.MustParseAddr("::"), Port: 111, Inode: 8},
		{Proto: listeners.ProtoTCP, Addr: netip.MustParseAddr("127.0.0.1"), Port: 1, Inode: 9},
		{Proto: listeners.ProtoUDP, Addr: netip.MustParseAddr("fd00:201::1"), Port: 69, Inode: 10},
		{Proto: listeners.ProtoTCP, Addr: netip.MustParseAddr("0.0.0.0"), Port: 2024, Inode: 11}, // not monitored
	}
	fakeSockets(t, socks, nil)
	code, stdout, stderr := run(t, "rules")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	cfg := config.Default()
	want := nft.Build(cfg, nft.Shape{InUse: listeners.Elements(socks, cfg.TCP.Monitored, cfg.UDP.Monitored)}).Text()
	if stdout != want {
		t.Errorf("rules with listeners:\n%s\nwant:\n%s", stdout, want)
	}
	for _, el := range []string{"set tcp_inuse {\n\t\ttype inet_service\n\t\telements = {\n\t\t\t111\n", "127.0.0.1 . 1\n", "fd00:201::1 . 69\n"} {
		if !strings.Contains(stdout, el) {
			t.Errorf("rules lacks %q:\n%s", el, stdout)
		}
	}
	if strings.Contains(stdout, "2024") {
		t.Errorf("an unmonitored port is in an in-use set:\n%s", stdout)
	}

	// Unreadable sockets: the ruleset with empty in-use sets, and a warning.
	fakeSockets(t, nil, errors.New("operation not permitted"))
	code, stdout, stderr = run(t, "rules")
	ref, _ := os.ReadFile("../../nft/portsentry.nft")
	if code != 0 || stdout != string(ref) || !strings.Contains(stderr, "could not read the listening sockets") || !strings.Contains(stderr, "operation not permitted") {
		t.Errorf("unreadable sockets: exit %d, stderr %q, stdout equals the reference: %v", code, stderr, stdout == string(ref))
	}
}

// TestRulesVerifiedOwnPorts: in verified mode the daemon's own listeners
// are tripwires, not services: `rules` leaves them out of the in-use sets
// as the daemon does, and keeps other services.
func TestRulesVerifiedOwnPorts(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "v.yaml")
	if err := os.WriteFile(f, []byte("tcp: {ports: [1, 111, 8080], verified: true}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fakeSockets(t, []listeners.Socket{
		{Proto: listeners.ProtoTCP, Addr: netip.MustParseAddr("::"), Port: 1, Inode: 1},
		{Proto: listeners.ProtoTCP, Addr: netip.MustParseAddr("::"), Port: 111, Inode: 2},
		{Proto: listeners.ProtoTCP, Addr: netip.MustParseAddr("127.0.0.1"), Port: 8080, Inode: 3},
	}, nil)
	old := processName
	processName = func(inode uint32) string {
		return map[uint32]string{1: "portsentry-nft", 2: "portsentry-nft", 3: "httpd"}[inode]
	}
	t.Cleanup(func() { processName = old })
	code, stdout, stderr := run(t, "rules", "--config", f)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if strings.Contains(stdout, "set tcp_inuse {\n\t\ttype inet_service\n\t\telements") || !strings.Contains(stdout, "127.0.0.1 . 8080") {
		t.Errorf("verified mode in-use sets:\n%s", stdout)
	}
}

// TestRulesConfig: `rules` follows --config, and a bad config is exit 1
// with nothing on stdout.
func TestRulesConfig(t *testing.T) {
	noSockets(t)
	good, bad := abs(t, filepath.Join(configTestdata, "good")), abs(t, filepath.Join(configTestdata, "bad"))
	t.Chdir(good)
	code, stdout, stderr := run(t, "rules", "--config", "full.yaml")
	if code != 0 {
		t.Fatalf("rules full.yaml: exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"table inet portsentry {", `"eth0"`, `"wg0"`, "set blocked6 {", "size 4096", "10.16.17.101"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("rules full.yaml: output lacks %q", want)
		}
	}
	if !strings.HasPrefix(stderr, "warning: site.ignore:4:1: ") {
		t.Errorf("rules full.yaml: stderr %q, want the ignore-file warning", stderr)
	}

	t.Chdir(bad)
	code, stdout, stderr = run(t, "rules", "--config", "port-zero.yaml")
	if code != 1 || stdout != "" || stderr != "error: port-zero.yaml:2:14: tcp.ports[1]: port 0 is outside 1-65535\n" {
		t.Errorf("rules port-zero.yaml: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestCheckDefault(t *testing.T) {
	skipIfDefaultConfigExists(t)
	code, stdout, stderr := run(t, "check")
	if code != 0 || stderr != "" {
		t.Fatalf("check: exit %d, stderr %q", code, stderr)
	}
	want := "(embedded default): OK (26 TCP and 21 UDP ports monitored, 2 ignore entries, block timeout 1h0m0s)\n"
	if stdout = firstLine(stdout); stdout != want {
		t.Errorf("check: stdout %q, want %q", stdout, want)
	}
}

// TestCheckGood: every good config is exit 0 and one OK line; only
// warnings may reach stderr.
func TestCheckGood(t *testing.T) {
	dir := abs(t, filepath.Join(configTestdata, "good"))
	names := yamlFiles(t, dir)
	t.Chdir(dir)
	for _, name := range names {
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			code, stdout, stderr := run(t, "check", "--config", name)
			if code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			if !regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `: OK \(\d+ TCP and \d+ UDP ports monitored, \d+ ignore entries, block timeout \S+\)\n$`).MatchString(firstLine(stdout)) {
				t.Errorf("stdout %q", stdout)
			}
			for _, l := range lines(stderr) {
				if !strings.HasPrefix(l, "warning: ") {
					t.Errorf("stderr line %q is not a warning", l)
				}
			}
		})
	}
	// The full config's numbers.
	_, stdout, stderr := run(t, "check", "-config", "full.yaml")
	if want := "full.yaml: OK (1042 TCP and 17 UDP ports monitored, 8 ignore entries, block timeout 30d)\n"; firstLine(stdout) != want {
		t.Errorf("check full.yaml: stdout %q, want %q", stdout, want)
	}
	if want := "warning: site.ignore:4:1: 192.168.5.9/24 has host bits set; using 192.168.5.0/24\n"; stderr != want {
		t.Errorf("check full.yaml: stderr %q, want %q", stderr, want)
	}
	// The fleet's own addresses, never blocked.
	if want := "fleet: web-01, 3 servers; never blocked: their addresses and 3 fleet.hosts entries\n"; !strings.Contains(stdout, want) {
		t.Errorf("check full.yaml: stdout %q, want a line %q", stdout, want)
	}
	_, stdout, _ = run(t, "check", "-config", "fleet-nkey.yaml")
	if want := "note: fleet.hosts is empty"; !strings.Contains(stdout, want) {
		t.Errorf("check fleet-nkey.yaml: stdout %q, want a line %q", stdout, want)
	}
}

// TestCheckBad: every bad config is exit 1, nothing on stdout, and stderr
// is its golden errors, one "error: " line each, the first one first.
func TestCheckBad(t *testing.T) {
	dir := abs(t, filepath.Join(configTestdata, "bad"))
	names := yamlFiles(t, dir)
	if len(names) < 25 {
		t.Errorf("only %d bad configs", len(names))
	}
	t.Chdir(dir)
	for _, name := range names {
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			golden, err := os.ReadFile(strings.TrimSuffix(name, ".yaml") + ".err")
			if err != nil {
				t.Fatalf("%v (run go test ./internal/config -update)", err)
			}
			want := lines(string(golden))
			code, stdout, stderr := run(t, "check", "--config", name)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			got := lines(stderr)
			if len(got) == 0 || got[0] != "error: "+want[0] {
				t.Fatalf("first stderr line %q, want %q", first(got), "error: "+want[0])
			}
			for i := range want {
				want[i] = "error: " + want[i]
			}
			if !slices.Equal(got, want) {
				t.Errorf("stderr:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestCheckMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	code, stdout, stderr := run(t, "check", "--config", path)
	if want := "error: " + path + ": open " + path + ": no such file or directory\n"; code != 1 || stdout != "" || stderr != want {
		t.Errorf("check missing: exit %d, stdout %q, stderr %q; want 1, nothing, %q", code, stdout, stderr, want)
	}
}

func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func first(ls []string) string {
	if len(ls) == 0 {
		return ""
	}
	return ls[0]
}

func TestUnknownCommand(t *testing.T) {
	for _, args := range [][]string{{"frobnicate"}, {"chek"}, {"--config"}, {""}} {
		code, stdout, stderr := run(t, args...)
		if code != 2 || stdout != "" {
			t.Errorf("%q: exit %d, stdout %q; want 2 and nothing", args, code, stdout)
		}
		if !strings.HasPrefix(stderr, "portsentry-nft: unknown command "+quote(args[0])+"\n") || !strings.Contains(stderr, "Usage: portsentry-nft <command>") {
			t.Errorf("%q: stderr %q", args, stderr)
		}
	}
}

func quote(s string) string { return `"` + s + `"` }

func TestNoArguments(t *testing.T) {
	code, stdout, stderr := run(t)
	if code != 2 || stdout != "" || !strings.HasPrefix(stderr, "Usage: portsentry-nft <command> [flags]") {
		t.Errorf("no arguments: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestHelp: the top-level help lists every command on stdout.
func TestHelp(t *testing.T) {
	for _, arg := range []string{"help", "--help", "-help", "-h"} {
		code, stdout, stderr := run(t, arg)
		if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "Usage: portsentry-nft <command> [flags]") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", arg, code, stdout, stderr)
		}
		for name, c := range commands {
			if !strings.Contains(stdout, "  "+name+" ") || !strings.Contains(stdout, c.summary) {
				t.Errorf("%s: help does not list %s", arg, name)
			}
		}
	}
}

// TestCommandHelp: --help (and -h) on every command exits 0 and prints its
// usage line; it never runs the command.
func TestCommandHelp(t *testing.T) {
	want := []string{"check", "import", "rules", "run", "version"}
	for _, name := range want {
		if _, ok := commands[name]; !ok {
			t.Errorf("command %s is missing", name)
		}
	}
	for name := range commands {
		for _, flag := range []string{"--help", "-h"} {
			t.Run(name+flag, func(t *testing.T) {
				code, stdout, stderr := run(t, name, flag)
				if code != 0 {
					t.Errorf("exit %d, want 0; stderr %q", code, stderr)
				}
				if stdout != "" {
					t.Errorf("stdout %q, want nothing (the command ran?)", stdout)
				}
				if !strings.HasPrefix(stderr, "Usage: portsentry-nft "+name) {
					t.Errorf("stderr %q, want it to start with %q", stderr, "Usage: portsentry-nft "+name)
				}
			})
		}
	}
}

func TestBadFlag(t *testing.T) {
	for _, name := range []string{"check", "rules", "run", "version"} {
		code, stdout, stderr := run(t, name, "--no-such-flag")
		if code != 2 || stdout != "" || !strings.Contains(stderr, "flag provided but not defined: -no-such-flag") || !strings.Contains(stderr, "Usage: portsentry-nft "+name) {
			t.Errorf("%s --no-such-flag: exit %d, stdout %q, stderr %q", name, code, stdout, stderr)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		code, stdout, stderr := run(t, args...)
		if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "portsentry-nft ") || !strings.HasSuffix(stdout, ")\n") ||
			strings.Count(stdout, "\n") != 1 || !strings.Contains(stdout, "(commit ") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
}

// firstLine is the OK line of check; the "note: ... in use" lines after it
// depend on the services of the machine the test runs on.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i+1]
	}
	return s
}
