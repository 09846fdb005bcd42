package legacy

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/legacy")

// golden runs from the repository root so the names in the YAML header and
// the warnings are repository paths, the same on every machine.
type golden struct {
	conf    string // under testdata/legacy
	dialect Dialect
	modes   string // --mode, "" for none
	ignore  string // --ignore, "" for none
}

var goldens = []golden{
	{conf: "psionic-2.0-beta.conf", ignore: "testdata/legacy/psionic-2.0-beta.ignore"},
	{conf: "classic-1.2-full.conf", modes: "stcp,audp"},
	{conf: "revived-2.x.conf"},
}

// importGolden imports one golden case; the caller is in the repository root.
func importGolden(t *testing.T, g golden) *Result {
	t.Helper()
	name := "testdata/legacy/" + g.conf
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(name, data, g.dialect)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	opts := Options{IgnoreFile: g.ignore}
	if g.modes != "" {
		m, err := ParseModes([]string{g.modes})
		if err != nil {
			t.Fatal(err)
		}
		opts.Modes = &m
	}
	res, err := Import(c, opts)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if _, err := config.Parse("golden.yaml", res.YAML); err != nil {
		t.Fatalf("the YAML does not pass config.Parse: %v\n%s", err, res.YAML)
	}
	return res
}

func TestGolden(t *testing.T) {
	t.Chdir("../..")
	for _, g := range goldens {
		t.Run(g.conf, func(t *testing.T) {
			res := importGolden(t, g)
			base := "testdata/legacy/" + strings.TrimSuffix(g.conf, ".conf")
			checkGolden(t, base+".yaml", res.YAML)
			var w bytes.Buffer
			for _, d := range res.Warnings {
				w.WriteString(d.String() + "\n")
			}
			checkGolden(t, base+".warnings", w.Bytes())
		})
	}
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/legacy -run TestGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test ./internal/legacy -run TestGolden -update rewrites it):\n--- got\n%s\n--- want\n%s", filepath.Base(path), got, want)
	}
}

// TestGoldenBeta checks, beyond the golden bytes, what the issue asks of the
// 2.0 beta import.
func TestGoldenBeta(t *testing.T) {
	t.Chdir("../..")
	res := importGolden(t, goldens[0])
	cfg := res.Config
	y := string(res.YAML)

	if !strings.HasPrefix(y, "# Imported from testdata/legacy/psionic-2.0-beta.conf (PortSentry 2.0 beta) by portsentry-nft import.\n") {
		t.Errorf("header: %q", strings.SplitN(y, "\n", 2)[0])
	}
	// The aware lists (lines 15-16) win over the comprehensive ones (11-12).
	if got := portsOf(cfg.TCP.Ports); got != "1,11,15,79,111,119,143,515,540,635,666,1080,1524,2000,6667,12345,12346,20034,27374,27665,31337,32771,32772,32773,32774,40421,49724,54320,54321" {
		t.Errorf("tcp.ports = %s", got)
	}
	if got := portsOf(cfg.UDP.Ports); got != "1,7,9,69,161,162,513,635,2049,27444,32770,32771,32772,32773,32774,31337,54321" {
		t.Errorf("udp.ports = %s", got)
	}
	// The ipf KILL_ROUTE is native blocking: nothing in commands.
	if cfg.TCP.Response != config.ResponseBlock || cfg.UDP.Response != config.ResponseBlock || len(cfg.Commands) != 0 {
		t.Errorf("responses %s/%s, commands %v; want block/block and none", cfg.TCP.Response, cfg.UDP.Response, cfg.Commands)
	}
	if !hasDiag(res.Warnings, 42, "(ipf) is replaced by native blocking") {
		t.Errorf("no warning on line 42 for the ipf KILL_ROUTE: %v", res.Warnings)
	}
	if cfg.HostsDeny.Path != "/etc/hosts.deny" || cfg.HostsDeny.Template != "ALL: $TARGET$ : DENY" {
		t.Errorf("hosts_deny = %+v", cfg.HostsDeny)
	}
	if len(cfg.Addresses) != 1 || cfg.Addresses[0] != "10.16.17.205" || !cfg.AllInterfaces {
		t.Errorf("interfaces %v, addresses %v", cfg.Interfaces, cfg.Addresses)
	}
	if got := prefixesOf(cfg); got != "10.16.17.0/24,127.0.0.0/8,127.0.0.1/32,172.16.88.0/24,192.168.0.0/16,::1/128" {
		t.Errorf("ignore = %s", got)
	}
	if cfg.ResolveHost || cfg.Detect.ScanTrigger != 0 {
		t.Errorf("resolve_host %v, scan_trigger %d", cfg.ResolveHost, cfg.Detect.ScanTrigger)
	}
	if cfg.State.HistoryFile != "/usr/local/psionic/portsentry2/portsentry.history" || cfg.State.BlockedFile != "/usr/local/psionic/portsentry2/portsentry.blocked" {
		t.Errorf("state = %+v", cfg.State)
	}
	for _, w := range []struct {
		line int
		text string
	}{
		{15, "TCP_PORTS is set on lines 11 and 15; line 15 wins"},
		{16, "UDP_PORTS is set on lines 12 and 16; line 16 wins"},
		{49, "KILL_RUN_CMD_FIRST is not imported"},
	} {
		if !hasDiag(res.Warnings, w.line, w.text) {
			t.Errorf("no warning %d: %q in\n%s", w.line, w.text, res.Warnings)
		}
	}
	if !strings.Contains(y, "# TCP_PORTS=\"1,11,15,79,") || !strings.Contains(y, "(line 15)") {
		t.Errorf("tcp.ports does not quote its original line:\n%s", y)
	}
}

func portsOf(pl config.PortList) string {
	s := make([]string, len(pl))
	for i, p := range pl {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func prefixesOf(cfg *config.Config) string {
	s := make([]string, len(cfg.IgnorePrefixes))
	for i, p := range cfg.IgnorePrefixes {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// hasDiag reports whether ds has a diagnostic at line whose message contains text.
func hasDiag(ds Diags, line int, text string) bool {
	for _, d := range ds {
		if d.Line == line && strings.Contains(d.Msg, text) {
			return true
		}
	}
	return false
}
