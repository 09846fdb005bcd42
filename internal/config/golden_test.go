package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite the golden files: testdata/config/bad/*.err and the FuzzParse seeds made from testdata/config")

// configTestdata is the top-level testdata/config, shared with cmd/portsentry-nft.
const configTestdata = "../../testdata/config"

// mustAbs resolves a path before a test changes directory.
func mustAbs(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func yamlFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	sort.Strings(names)
	return names
}

// Bad files whose errors have no line (nothing to point at) or no key (the
// problem is the file itself, or lies in another file).
// Every syntax-*.yaml has a line but no key.
var (
	badWithoutLine = map[string]bool{"binary-nul.yaml": true, "unknown-anchor.yaml": true}
	badWithoutKey  = map[string]bool{
		"binary-nul.yaml": true, "unknown-anchor.yaml": true,
		"root-not-mapping.yaml": true, "ignore-file-hostname.yaml": true,
	}
)

func badHasKey(name string) bool {
	return !badWithoutKey[name] && !strings.HasPrefix(name, "syntax-")
}

// requiredBad are the cases the test plan promises; a missing file fails.
var requiredBad = []string{
	"unknown-key-top", "unknown-key-nested", "port-zero", "port-70000", "range-reversed",
	"preset-unknown", "string-for-int", "list-for-scalar", "mapping-for-list",
	"response-typo", "response-command-no-commands", "cidr-bad", "cidr-host-bits",
	"ignore-hostname", "ignore-file-missing", "state-dir-relative", "duration-bad",
	"timeout-zero", "scan-trigger-negative", "syslog-facility", "interface-name",
	"interfaces-auto-mixed", "duplicate-key", "syntax-tab", "syntax-unclosed-bracket",
	"binary-nul", "no-ports",
}

// TestBadConfigs loads every testdata/config/bad/NAME.yaml and compares its
// errors, one per line, with NAME.err (go test ./internal/config -update
// rewrites them). The first line is what `portsentry-nft check` prints first.
func TestBadConfigs(t *testing.T) {
	dir := mustAbs(t, filepath.Join(configTestdata, "bad"))
	names := yamlFiles(t, dir)
	for _, r := range requiredBad {
		if !slices.Contains(names, r+".yaml") {
			t.Errorf("testdata/config/bad/%s.yaml is missing", r)
		}
	}
	// Errors name files as given: load from inside the directory so that
	// the golden files read "NAME.yaml:line:col: ...", wherever the tree is.
	t.Chdir(dir)
	for _, name := range names {
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			c, err := Load(name)
			if err == nil {
				t.Fatalf("Load(%s) succeeded (%d TCP, %d UDP ports), want an error", name, len(c.TCP.Monitored), len(c.UDP.Monitored))
			}
			es, ok := err.(Errors)
			if !ok || len(es) == 0 {
				t.Fatalf("Load(%s) error is %T, want non-empty config.Errors: %v", name, err, err)
			}
			first := es[0]
			if first.File != name && !strings.HasSuffix(first.File, ".ignore") {
				t.Errorf("first error names file %q, want %q", first.File, name)
			}
			if (first.Line >= 1) == badWithoutLine[name] {
				t.Errorf("first error at line %d; a line is expected: %v", first.Line, !badWithoutLine[name])
			}
			if (first.Key != "") != badHasKey(name) {
				t.Errorf("first error key %q; a key is expected: %v", first.Key, badHasKey(name))
			}
			for _, e := range es {
				if e.File == "" || e.Msg == "" || e.Line < 0 || (e.Line > 0 && e.Column < 1) {
					t.Errorf("malformed error %+v", e)
				}
			}
			got := es.Error() + "\n"
			golden := strings.TrimSuffix(name, ".yaml") + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/config -update)", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s\ngot:\n%swant:\n%s", golden, got, want)
			}
		})
	}
	// Every golden file has its config.
	errFiles, _ := filepath.Glob("*.err")
	for _, e := range errFiles {
		if !slices.Contains(names, strings.TrimSuffix(e, ".err")+".yaml") {
			t.Errorf("%s has no %s.yaml", e, strings.TrimSuffix(e, ".err"))
		}
	}
}

// TestGoodConfigs: every testdata/config/good/*.yaml loads without error.
func TestGoodConfigs(t *testing.T) {
	dir := mustAbs(t, filepath.Join(configTestdata, "good"))
	names := yamlFiles(t, dir)
	for _, want := range []string{"full.yaml", "minimal.yaml", "empty.yaml"} {
		if !slices.Contains(names, want) {
			t.Errorf("testdata/config/good/%s is missing", want)
		}
	}
	t.Chdir(dir)
	def := Default()
	for _, name := range names {
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			c, err := Load(name)
			if err != nil {
				t.Fatalf("Load(%s): %v", name, err)
			}
			if c.File != name {
				t.Errorf("File = %q, want %q", c.File, name)
			}
			if len(c.TCP.Monitored)+len(c.UDP.Monitored) == 0 {
				t.Error("no port monitored")
			}
			switch name {
			case "empty.yaml", "comments-only.yaml":
				// All defaults.
				c.File = def.File
				if !reflect.DeepEqual(c, def) {
					t.Errorf("an empty file should give the default config\ngot  %+v\nwant %+v", c, def)
				}
			case "minimal.yaml":
				if c.TCP.Response != ResponseLog || !slices.Equal(c.TCP.Monitored, def.TCP.Monitored) {
					t.Errorf("tcp = %+v", c.TCP)
				}
			case "advanced.yaml":
				if len(c.TCP.Monitored) != 1021 || slices.Contains(c.TCP.Monitored, 113) || slices.Contains(c.TCP.Monitored, 139) || slices.Contains(c.TCP.Monitored, 1024) {
					t.Errorf("advanced TCP: %d ports", len(c.TCP.Monitored))
				}
				if len(c.UDP.Monitored) != 1019 {
					t.Errorf("advanced UDP: %d ports, want 1019", len(c.UDP.Monitored))
				}
			}
		})
	}
}

// TestFullConfig checks every value of good/full.yaml, and that it uses
// every key the schema has (so a new key must be added there).
func TestFullConfig(t *testing.T) {
	t.Chdir(mustAbs(t, filepath.Join(configTestdata, "good")))
	data, err := os.ReadFile("full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	collectKeys(doc.Content[0], "", used)
	for _, k := range schemaKeys(reflect.TypeFor[Config](), "") {
		if !used[k] && !exclusiveKeys[k] && testedElsewhere[k] == "" {
			t.Errorf("full.yaml does not use the key %s", k)
		}
	}
	// Keys that cannot be in full.yaml with the others are used by another good file.
	others := map[string]bool{}
	for _, name := range yamlFiles(t, ".") {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var d yaml.Node
		if err := yaml.Unmarshal(data, &d); err != nil {
			t.Fatal(err)
		}
		if len(d.Content) > 0 {
			collectKeys(d.Content[0], "", others)
		}
	}
	for k := range exclusiveKeys {
		if !others[k] {
			t.Errorf("no file of testdata/config/good uses the key %s", k)
		}
	}

	c, err := Load("full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	aware := sortedUnique(Presets["aware"].TCP)
	tcp := sortedUnique(append(slices.Clone(aware), 8080, 9000, 9001, 9002, 1, 11, 15))
	var adv []uint16
	for p := uint16(1); p < 1024; p++ {
		if p != 113 && p != 139 {
			adv = append(adv, p)
		}
	}
	tcp = sortedUnique(append(tcp, adv...))
	udp := sortedUnique(append(slices.Clone(Presets["bare-bones"].UDP), 5353))
	checks := []struct {
		name      string
		got, want string
	}{
		{"interfaces", fmt.Sprint(c.Interfaces, c.AllInterfaces), "[eth0 wg0] false"},
		{"addresses", fmt.Sprint(c.WatchAddrs), "[10.16.17.101 2001:db8::101]"},
		{"tcp ports", fmt.Sprint(c.TCP.Monitored), fmt.Sprint(tcp)},
		{"udp ports", fmt.Sprint(c.UDP.Monitored), fmt.Sprint(udp)},
		{"responses", string(c.TCP.Response) + " " + string(c.UDP.Response), "block command"},
		{"detect", fmt.Sprint(c.Detect.ScanTrigger, time.Duration(c.Detect.Window), c.Detect.MaxSources, c.Detect.Prefix6Sources), "2 36h0m0s 5000 8"},
		{"ignore", fmt.Sprint(c.IgnorePrefixes), "[10.0.0.0/8 127.0.0.0/8 172.16.0.0/12 192.168.1.7/32 192.168.5.0/24 ::1/128 2001:db8::/32 fd00::/8]"},
		{"warnings", fmt.Sprint(c.Warnings), "[site.ignore:4:1: 192.168.5.9/24 has host bits set; using 192.168.5.0/24]"},
		{"block", fmt.Sprint(c.Block), "{30d 4096 2 90d 50 false 10m0s map[mirai:60d]}"},
		{"never_block", fmt.Sprint(c.NeverBlockPrefixes), "[198.51.100.0/24 2001:db8::/32]"},
		{"hosts_deny", fmt.Sprint(c.HostsDeny), "{/etc/hosts.deny ALL: $TARGET$ : DENY}"},
		{"commands", fmt.Sprint(c.Commands), "[{[/usr/local/bin/notify $TARGET$ $PORT$ $MODE$] true 1m30s} {[/usr/bin/logger -t portsentry blocked $TARGET$] false 30s}]"},
		{"resolve_host", fmt.Sprint(c.ResolveHost), "true"},
		{"port_banner", c.PortBanner, "** UNAUTHORIZED ACCESS PROHIBITED **"},
		{"state", fmt.Sprint(c.State), "{/srv/portsentry /var/log/portsentry.history /var/log/portsentry.blocked}"},
		{"capture", fmt.Sprint(c.Capture), "{nflog 42 10 80000 7}"},
		{"logging", fmt.Sprint(c.Logging), "{syslog local3 info}"},
		{"fleet", fmt.Sprint(c.Fleet), "{[nats://10.16.0.1:4222 tls://n2.example.net:4222 nats://[2001:db8::3]:4222] web-01 /etc/portsentry-nft/fleet.creds     {/etc/portsentry-nft/fleet-ca.pem /etc/portsentry-nft/web-01.pem /etc/portsentry-nft/web-01.key} {4 30m0s [web-01 db-01 db-02]} 2d [10.16.0.0/24 2001:db8:16::10 2001:db8:16::11] true 0.2 hub site_a [10.16.0.0/24 2001:db8:16::10/128 2001:db8:16::11/128]}"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %s, want %s", ck.name, ck.got, ck.want)
		}
	}
}

// exclusiveKeys are the keys full.yaml cannot use along with the others
// (fleet credentials: one kind at a time); another good file uses each.
var exclusiveKeys = map[string]bool{"fleet.user": true, "fleet.password": true, "fleet.nkey": true}

// testedElsewhere are the keys no file of testdata/config/good can use,
// with the test that does: fleet.password_file,
// crowdsec.api_keys_file (which crowdsec.listen needs) and
// crowdsec.lapi.password_file (which crowdsec.lapi.url needs) must be
// absolute paths to files that exist when the configuration loads.
var testedElsewhere = map[string]string{"fleet.password_file": "TestPasswordFile",
	"crowdsec": "TestCrowdSecSection", "crowdsec.listen": "TestCrowdSecSection", "crowdsec.api_keys_file": "TestCrowdSecSection",
	"crowdsec.tls_cert": "TestCrowdSecSection", "crowdsec.tls_key": "TestCrowdSecSection",
	"crowdsec.lapi": "TestLAPISection", "crowdsec.lapi.url": "TestLAPISection", "crowdsec.lapi.machine_id": "TestLAPISection",
	"crowdsec.lapi.password_file": "TestLAPISection"}

// collectKeys records the dotted key paths of a YAML mapping ("[]" for list items).
func collectKeys(n *yaml.Node, path string, out map[string]bool) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := join(path, n.Content[i].Value)
			out[k] = true
			collectKeys(n.Content[i+1], k, out)
		}
	case yaml.SequenceNode:
		for _, it := range n.Content {
			collectKeys(it, path+"[]", out)
		}
	}
}

// schemaKeys lists the dotted key paths of the YAML schema of t.
func schemaKeys(t reflect.Type, path string) []string {
	var keys []string
	fields, names := fieldNames(t)
	for _, name := range names {
		k := join(path, name)
		keys = append(keys, k)
		ft := t.Field(fields[name]).Type
		if reflect.PointerTo(ft).Implements(unmarshalerType) {
			continue
		}
		switch {
		case ft.Kind() == reflect.Struct:
			keys = append(keys, schemaKeys(ft, k)...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, schemaKeys(ft.Elem(), k+"[]")...)
		}
	}
	return keys
}

// TestLoadErrorsAreErrors: errors.As reaches the located *Error through
// the Errors that Load returns.
func TestLoadErrorsAreErrors(t *testing.T) {
	_, err := Load(filepath.Join(configTestdata, "bad", "port-zero.yaml"))
	var e *Error
	if !errors.As(err, &e) || e.Key != "tcp.ports[1]" || e.Line != 2 || e.Column != 14 {
		t.Errorf("errors.As(*Error) = %+v", e)
	}
}

// fuzzSeed is how `go test` stores one []byte fuzz input.
func fuzzSeed(data []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data)
}

// TestFuzzSeeds keeps testdata/fuzz/FuzzParse in step with the config files:
// each good and bad file is a seed named good-NAME / bad-NAME (-update
// rewrites them). The hand-written seeds beside them are left alone.
func TestFuzzSeeds(t *testing.T) {
	seedDir := filepath.Join("testdata", "fuzz", "FuzzParse")
	n := 0
	for _, kind := range []string{"good", "bad"} {
		dir := filepath.Join(configTestdata, kind)
		for _, name := range yamlFiles(t, dir) {
			data, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			seed := filepath.Join(seedDir, kind+"-"+strings.TrimSuffix(name, ".yaml"))
			n++
			if *update {
				if err := os.MkdirAll(seedDir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(seed, fuzzSeed(data), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(seed)
			if err != nil || string(got) != string(fuzzSeed(data)) {
				t.Errorf("fuzz seed %s is missing or stale (run go test ./internal/config -update)", seed)
			}
		}
	}
	all, _ := os.ReadDir(seedDir)
	if n < 10 || len(all) < 10 {
		t.Errorf("%d config files, %d seeds; want at least 10", n, len(all))
	}
}
