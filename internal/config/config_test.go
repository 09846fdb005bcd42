package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// mustParse parses a YAML snippet that must be valid.
func mustParse(t *testing.T, yaml string) *Config {
	t.Helper()
	c, err := Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("Parse(%q): %v", yaml, err)
	}
	return c
}

// parseErrs parses a YAML snippet that must be invalid and returns its errors.
func parseErrs(t *testing.T, yaml string) Errors {
	t.Helper()
	c, err := Parse("test.yaml", []byte(yaml))
	if err == nil {
		t.Fatalf("Parse(%q) = %+v, want an error", yaml, c)
	}
	if c != nil {
		t.Errorf("Parse(%q) returned a config with its error", yaml)
	}
	var es Errors
	if !errors.As(err, &es) || len(es) == 0 {
		t.Fatalf("Parse(%q) error %T %v, want a non-empty config.Errors", yaml, err, err)
	}
	return es
}

func ports(ps ...uint16) []uint16 { return ps }

func sortedUnique(ps []uint16) []uint16 {
	out := slices.Clone(ps)
	slices.Sort(out)
	return slices.Compact(out)
}

func TestDefault(t *testing.T) {
	c := Default()
	wantTCP := ports(1, 11, 15, 79, 111, 119, 143, 540, 635, 1080, 1524, 2000, 5742, 6667, 12345, 12346, 20034, 27665, 31337, 32771, 32772, 32773, 32774, 40421, 49724, 54320)
	wantUDP := ports(1, 7, 9, 69, 161, 162, 513, 635, 640, 641, 700, 31335, 31337, 32770, 32771, 32772, 32773, 32774, 34555, 37444, 54321)
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"file", c.File, EmbeddedName},
		{"TCP port count", len(c.TCP.Monitored), 26},
		{"UDP port count", len(c.UDP.Monitored), 21},
		{"TCP ports", c.TCP.Monitored, wantTCP},
		{"UDP ports", c.UDP.Monitored, wantUDP},
		{"TCP ports are the aware preset", c.TCP.Monitored, sortedUnique(Presets["aware"].TCP)},
		{"UDP ports are the aware preset", c.UDP.Monitored, sortedUnique(Presets["aware"].UDP)},
		{"TCP port list", c.TCP.Ports, PortList{{Preset: "aware"}}},
		{"TCP response", c.TCP.Response, ResponseBlock},
		{"UDP response", c.UDP.Response, ResponseBlock},
		{"block timeout", c.BlockTimeout(), time.Hour},
		{"block timeout text", c.Block.Timeout.String(), "1h0m0s"},
		{"set size", c.Block.SetSize, 65536},
		{"repeat factor", c.Block.RepeatFactor, 4},
		{"max timeout", c.Block.MaxTimeout.String(), "30d"},
		{"max per second", c.Block.MaxPerSecond, 100},
		{"peer window", time.Duration(c.Block.PeerWindow), 30 * time.Minute},
		{"prefix6 sources", c.Detect.Prefix6Sources, 3},
		{"never block", len(c.NeverBlockPrefixes), 0},
		{"all interfaces", c.AllInterfaces, true},
		{"interfaces", c.Interfaces, []string{"auto"}},
		{"watch addresses", len(c.WatchAddrs), 0},
		{"scan trigger", c.Detect.ScanTrigger, 0},
		{"window", time.Duration(c.Detect.Window), 10 * time.Minute},
		{"max sources", c.Detect.MaxSources, 100000},
		{"ignore", c.IgnorePrefixes, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}},
		{"hosts.deny off", c.HostsDeny.Path, ""},
		{"hosts.deny template", c.HostsDeny.Template, "ALL: $TARGET$"},
		{"commands", len(c.Commands), 0},
		{"state dir", c.State.Dir, "/var/lib/portsentry-nft"},
		{"history file", c.State.HistoryFile, "/var/lib/portsentry-nft/portsentry.history"},
		{"blocked file", c.State.BlockedFile, "/var/lib/portsentry-nft/portsentry.blocked"},
		{"capture", c.Capture, Capture{Mode: "nflog", Group: 5, QueueThreshold: 256, FloodRate: 50000}},
		{"logging", c.Logging, Logging{Target: "stderr", Facility: "auth", Level: "notice"}},
		{"warnings", len(c.Warnings), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !equal(tt.got, tt.want) {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

// equal compares the handful of types TestDefault uses.
func equal(a, b any) bool {
	switch a := a.(type) {
	case []uint16:
		return slices.Equal(a, b.([]uint16))
	case []string:
		return slices.Equal(a, b.([]string))
	case []netip.Prefix:
		return slices.Equal(a, b.([]netip.Prefix))
	case PortList:
		return slices.Equal(a, b.(PortList))
	}
	return a == b
}

// TestDefaultFileMatchesDefault: DefaultYAML is the embedded file, a copy,
// and parsing it as a user file gives the same result as no file at all.
func TestDefaultYAML(t *testing.T) {
	y := DefaultYAML()
	y[0] ^= 0xff
	if DefaultYAML()[0] == y[0] {
		t.Fatal("DefaultYAML returns the embedded slice itself, not a copy")
	}
	onDisk, err := os.ReadFile("default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(onDisk) != string(DefaultYAML()) {
		t.Error("DefaultYAML differs from default.yaml")
	}
	c := mustParse(t, string(DefaultYAML()))
	d := Default()
	if !slices.Equal(c.TCP.Monitored, d.TCP.Monitored) || !slices.Equal(c.UDP.Monitored, d.UDP.Monitored) ||
		!reflect.DeepEqual(c.Block, d.Block) || !slices.Equal(c.IgnorePrefixes, d.IgnorePrefixes) {
		t.Error("the default parsed as a user file differs from Default()")
	}
}

func TestLoadDefaultPath(t *testing.T) {
	if _, err := os.Stat(DefaultPath); err == nil {
		t.Skipf("%s exists on this machine; the embedded-default fallback cannot be tested", DefaultPath)
	}
	c, err := Load(DefaultPath)
	if err != nil {
		t.Fatalf("Load(DefaultPath) without the file: %v", err)
	}
	if c.File != EmbeddedName || len(c.TCP.Monitored) != 26 {
		t.Errorf("Load(DefaultPath) = file %q, %d TCP ports; want the embedded default", c.File, len(c.TCP.Monitored))
	}
}

func TestLoadMissingExplicitFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portsentry.yaml")
	_, err := Load(path)
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 {
		t.Fatalf("Load(missing) error = %v, want one config.Errors element", err)
	}
	if es[0].File != path || es[0].Line != 0 || !strings.Contains(es[0].Msg, "no such file") {
		t.Errorf("Load(missing) = %+v, want file %s, no position, 'no such file'", es[0], path)
	}
	var e *Error
	if !errors.As(err, &e) || e != es[0] {
		t.Error("errors.As does not find the *Error inside Errors")
	}
}

func TestPortLists(t *testing.T) {
	aware := sortedUnique(Presets["aware"].TCP)
	awareUDP := sortedUnique(Presets["aware"].UDP)
	tests := []struct {
		name    string
		yaml    string
		tcp     []uint16 // nil: not checked
		udp     []uint16
		tcpList string // PortList as written back, "" not checked
	}{
		{"preset comprehensive", "tcp: {ports: [comprehensive]}\nudp: {ports: [comprehensive]}",
			sortedUnique(Presets["comprehensive"].TCP), sortedUnique(Presets["comprehensive"].UDP), "comprehensive"},
		{"preset bare-bones", "tcp: {ports: [bare-bones]}\nudp: {ports: bare-bones}",
			sortedUnique(Presets["bare-bones"].TCP), sortedUnique(Presets["bare-bones"].UDP), "bare-bones"},
		{"preset aware as a scalar", "tcp: {ports: aware}", aware, awareUDP, "aware"},
		{"mixed list", `tcp: {ports: [aware, 8080, "1-5"]}`,
			sortedUnique(append(slices.Clone(aware), 8080, 2, 3, 4, 5)), nil, "aware 8080 1-5"},
		{"comma scalar", `tcp: {ports: "1,11,15"}`, ports(1, 11, 15), nil, "1 11 15"},
		{"commas and spaces inside a list item", `tcp: {ports: ["80, 443", 22]}`, ports(22, 80, 443), nil, "80 443 22"},
		{"duplicates merged and sorted", `tcp: {ports: [443, 80, 80, "79-81", 1, 443]}`, ports(1, 79, 80, 81, 443), nil, "443 80 80 79-81 1 443"},
		{"preset twice", `udp: {ports: [aware, aware, 7]}`, nil, awareUDP, ""},
		{"range edges", `tcp: {ports: ["65534-65535", "1-1"]}`, ports(1, 65534, 65535), nil, "65534-65535 1"},
		{"whole range", `tcp: {ports: ["1-65535"]}`, nil, nil, "1-65535"},
		{"tcp off keeps udp", `tcp: {ports: []}`, []uint16{}, awareUDP, ""},
		{"null list is empty", "tcp:\n  ports:\n", []uint16{}, awareUDP, ""},
		{"only udp given keeps tcp default", `udp: {ports: [53]}`, aware, ports(53), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.yaml)
			if tt.tcp != nil && !slices.Equal(nonNil(c.TCP.Monitored), tt.tcp) {
				t.Errorf("TCP = %v, want %v", c.TCP.Monitored, tt.tcp)
			}
			if tt.udp != nil && !slices.Equal(nonNil(c.UDP.Monitored), tt.udp) {
				t.Errorf("UDP = %v, want %v", c.UDP.Monitored, tt.udp)
			}
			if tt.tcpList != "" {
				var items []string
				for _, p := range c.TCP.Ports {
					items = append(items, p.String())
				}
				if got := strings.Join(items, " "); got != tt.tcpList {
					t.Errorf("TCP port list = %q, want %q", got, tt.tcpList)
				}
			}
			for _, m := range [][]uint16{c.TCP.Monitored, c.UDP.Monitored} {
				if !slices.IsSorted(m) || len(slices.Compact(slices.Clone(m))) != len(m) || slices.Contains(m, 0) {
					t.Errorf("monitored list %v is not sorted, unique and without 0", m)
				}
			}
		})
	}
	if c := mustParse(t, `tcp: {ports: ["1-65535"]}`); len(c.TCP.Monitored) != 65535 {
		t.Errorf("1-65535 gives %d ports, want 65535", len(c.TCP.Monitored))
	}
}

func nonNil(p []uint16) []uint16 {
	if p == nil {
		return []uint16{}
	}
	return p
}

func TestPresets(t *testing.T) {
	if len(PresetNames) != len(Presets) {
		t.Fatalf("PresetNames has %d names, Presets %d", len(PresetNames), len(Presets))
	}
	counts := map[string][2]int{"comprehensive": {45, 32}, "aware": {26, 21}, "bare-bones": {20, 16}}
	for _, name := range PresetNames {
		p, ok := Presets[name]
		if !ok {
			t.Errorf("PresetNames has %q, Presets does not", name)
			continue
		}
		for proto, list := range map[string][]uint16{"tcp": p.TCP, "udp": p.UDP} {
			if u := sortedUnique(list); len(u) != len(list) || u[0] == 0 {
				t.Errorf("%s %s has duplicates or port 0", name, proto)
			}
		}
		if got, want := [2]int{len(p.TCP), len(p.UDP)}, counts[name]; got != want {
			t.Errorf("%s has %d TCP and %d UDP ports, want %v (PortSentry 1.2)", name, got[0], got[1], want)
		}
	}
	// The lists are not nested, as PortSentry shipped them.
	if !slices.Contains(Presets["bare-bones"].TCP, 110) || slices.Contains(Presets["aware"].TCP, 110) {
		t.Error("bare-bones TCP should have 110 and aware should not")
	}
	if !slices.Contains(Presets["aware"].UDP, 37444) || !slices.Contains(Presets["comprehensive"].UDP, 27444) {
		t.Error("aware UDP should have 37444 and comprehensive UDP 27444")
	}
}

func TestParsePortItem(t *testing.T) {
	tests := []struct {
		in      string
		want    PortItem
		wantErr string
	}{
		{"80", PortItem{Lo: 80, Hi: 80}, ""},
		{" 80 ", PortItem{Lo: 80, Hi: 80}, ""},
		{"1-1024", PortItem{Lo: 1, Hi: 1024}, ""},
		{"1 - 1024", PortItem{Lo: 1, Hi: 1024}, ""},
		{"65535", PortItem{Lo: 65535, Hi: 65535}, ""},
		{"aware", PortItem{Preset: "aware"}, ""},
		{"bare-bones", PortItem{Preset: "bare-bones"}, ""},
		{"0", PortItem{}, "port 0 is outside 1-65535"},
		{"70000", PortItem{}, "port 70000 is outside 1-65535"},
		{"-1", PortItem{}, `"" is not a port`},
		{"1024-1", PortItem{}, `range "1024-1" ends before it starts`},
		{"1-", PortItem{}, `"" is not a port`},
		{"1-70000", PortItem{}, "port 70000 is outside 1-65535"},
		{"awar", PortItem{}, `did you mean "aware"?`},
		{"comprehensiv", PortItem{}, `did you mean "comprehensive"?`},
		{"barebones", PortItem{}, `did you mean "bare-bones"?`},
		{"http", PortItem{}, `"http" is not a port, range (1-1024) or preset (comprehensive, aware, bare-bones)`},
		{"", PortItem{}, `"" is not a port`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePortItem(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParsePortItem(%q) = %v, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParsePortItem(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestPortListMarshal(t *testing.T) {
	pl := PortList{{Preset: "aware"}, {Lo: 8080, Hi: 8080}, {Lo: 1, Hi: 5}}
	got, err := pl.MarshalYAML()
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"aware", 8080, "1-5"}
	if !slices.Equal(got.([]any), want) {
		t.Errorf("MarshalYAML = %#v, want %#v", got, want)
	}
}

func TestAdvanced(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		count   int
		has     []uint16
		hasNot  []uint16
		wantErr string
	}{
		{"below 1024 exclude 113 139", "tcp:\n  ports: []\n  advanced: {below: 1024, exclude: [113, 139]}", 1021,
			ports(1, 112, 114, 138, 140, 1023), ports(113, 139, 1024), ""},
		{"below 1024 no exclude", "tcp: {ports: [], advanced: {below: 1024}}", 1023, ports(1, 1023), ports(1024), ""},
		{"exclude a range and a preset", "tcp: {ports: [], advanced: {below: 100, exclude: [\"10-19\", bare-bones]}}",
			99 - 10 - 1, ports(9, 20), ports(10, 19, 1, 11, 15), ""}, // bare-bones below 100 adds port 1 (11, 15 are in 10-19)
		{"ports are added to advanced", "tcp: {ports: [2000, 113], advanced: {below: 1024, exclude: [113]}}", 1023 - 1 + 2,
			ports(113, 2000), nil, ""},
		{"below 2 is port 1", "tcp: {ports: [], advanced: {below: 2}}", 1, ports(1), ports(2), ""},
		{"below 65536 is every port", "tcp: {ports: [], advanced: {below: 65536}}", 65535, ports(1, 65535), nil, ""},
		{"below 0 is off", "tcp: {ports: [80], advanced: {below: 0, exclude: [80]}}", 1, ports(80), nil, ""},
		{"below 1", "tcp: {advanced: {below: 1}}", 0, nil, nil, "want 0 (off) or a port bound from 2 to 65536, got 1"},
		{"below 65537", "udp: {advanced: {below: 65537}}", 0, nil, nil, "udp.advanced.below: want 0 (off)"},
		{"below negative", "tcp: {advanced: {below: -5}}", 0, nil, nil, "got -5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantErr != "" {
				es := parseErrs(t, tt.yaml)
				if !strings.Contains(es.Error(), tt.wantErr) {
					t.Errorf("errors %q, want %q", es, tt.wantErr)
				}
				return
			}
			c := mustParse(t, tt.yaml)
			m := c.TCP.Monitored
			if len(m) != tt.count {
				t.Errorf("%d ports, want %d", len(m), tt.count)
			}
			for _, p := range tt.has {
				if !slices.Contains(m, p) {
					t.Errorf("port %d missing", p)
				}
			}
			for _, p := range tt.hasNot {
				if slices.Contains(m, p) {
					t.Errorf("port %d should not be monitored", p)
				}
			}
		})
	}
}

func TestDuration(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		in      string
		want    time.Duration
		str     string // String() of the result
		wantErr bool
	}{
		{"30d", 30 * day, "30d", false},
		{"1d", day, "1d", false},
		{"1d12h", 36 * time.Hour, "36h0m0s", false},
		{"2d30m", 2*day + 30*time.Minute, "48h30m0s", false},
		{"90s", 90 * time.Second, "1m30s", false},
		{"1h", time.Hour, "1h0m0s", false},
		{"24h", day, "1d", false},
		{"72h", 3 * day, "3d", false},
		{"1h30m", 90 * time.Minute, "1h30m0s", false},
		{"10m", 10 * time.Minute, "10m0s", false},
		{"500ms", 500 * time.Millisecond, "500ms", false},
		{" 5m ", 5 * time.Minute, "5m0s", false},
		{"0", 0, "0s", false},
		{"0d", 0, "0s", false},
		{"365d", 365 * day, "365d", false},
		{"", 0, "", true},
		{"d", 0, "", true},
		{"30", 0, "", true},
		{"1 hour", 0, "", true},
		{"1dx", 0, "", true},
		{"1.5d", 0, "", true},
		{"-1d", 0, "", true},
		{"1d1d", 0, "", true},
		{"12h1d", 0, "", true},
		{"70000d", 0, "", true},
		{"forever", 0, "", true},
		{"1w", 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseDuration(%q) = %v, want an error", tt.in, got)
				}
				if !strings.Contains(err.Error(), "invalid duration") {
					t.Errorf("error %q does not say invalid duration", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			if s := Duration(got).String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
			// String's output reads back to the same value.
			back, err := ParseDuration(Duration(got).String())
			if err != nil || back != got {
				t.Errorf("ParseDuration(String()) = %v, %v; want %v", back, err, got)
			}
			if v, _ := Duration(got).MarshalYAML(); v != tt.str {
				t.Errorf("MarshalYAML = %v, want %q", v, tt.str)
			}
		})
	}
}

// TestDurationErrorQuotesInput: the message names what was written, not
// what was left after the day part.
func TestDurationErrorQuotesInput(t *testing.T) {
	for _, in := range []string{"1dx", "1 hour", "2d 3h"} {
		_, err := ParseDuration(in)
		if err == nil || !strings.Contains(err.Error(), `"`+in+`"`) {
			t.Errorf("ParseDuration(%q) error %v, want it to quote %q", in, err, in)
		}
	}
}

func TestDurationFields(t *testing.T) {
	c := mustParse(t, "detect: {window: 90s}\nblock: {timeout: 30d}\ncommands:\n  - argv: [/bin/true]\n  - argv: [/bin/true]\n    timeout: 1d12h\n")
	if time.Duration(c.Detect.Window) != 90*time.Second || c.BlockTimeout() != 30*24*time.Hour {
		t.Errorf("window %v, timeout %v", c.Detect.Window, c.Block.Timeout)
	}
	if c.Commands[0].Timeout != Duration(30*time.Second) {
		t.Errorf("command timeout 0 should default to 30s, got %v", c.Commands[0].Timeout)
	}
	if c.Commands[1].Timeout != Duration(36*time.Hour) {
		t.Errorf("command timeout = %v, want 36h", c.Commands[1].Timeout)
	}
	for yaml, want := range map[string]string{
		"block: {timeout: 0}":                           "block.timeout: want a duration from 1s to 365d, got 0s",
		"block: {timeout: 366d}":                        "block.timeout: want a duration from 1s to 365d, got 366d",
		"block: {timeout: 500ms}":                       "block.timeout: want at least 1s, got 500ms",
		"block: {timeout: -1h}":                         "block.timeout: want a duration from 1s to 365d, got -1h0m0s",
		"block: {timeout: 3600}":                        `block.timeout: invalid duration "3600"`,
		"block: {timeout: [1h]}":                        "block.timeout: want a duration such as 1h or 30d",
		"detect: {window: -10m}":                        "detect.window: want a positive duration",
		"detect: {window: soon}":                        `detect.window: invalid duration "soon"`,
		"commands: [{argv: [/bin/true], timeout: -1s}]": "commands[0].timeout: want a positive duration",
	} {
		es := parseErrs(t, yaml)
		if !strings.Contains(es[0].Error(), want) {
			t.Errorf("%s: error %q, want %q", yaml, es[0], want)
		}
	}
}

func TestIgnore(t *testing.T) {
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	tests := []struct {
		name    string
		ignore  string
		want    []netip.Prefix
		wantErr string
	}{
		{"IPv4 CIDR", "[10.0.0.0/8]", pfx("10.0.0.0/8"), ""},
		{"IPv6 CIDR", `["2001:db8::/32"]`, pfx("2001:db8::/32"), ""},
		{"bare IPv4 is /32", "[192.0.2.7]", pfx("192.0.2.7/32"), ""},
		{"bare IPv6 is /128", `["2001:db8::7"]`, pfx("2001:db8::7/128"), ""},
		{"spaces trimmed", `[" 10.0.0.0/8 "]`, pfx("10.0.0.0/8"), ""},
		{"duplicates removed, sorted, v4 first", `["::1", 10.0.0.0/8, 192.0.2.1, "::1/128", 10.0.0.0/8, 192.0.2.1/32]`,
			pfx("10.0.0.0/8", "192.0.2.1/32", "::1/128"), ""},
		{"same address, two lengths kept", "[10.0.0.0/8, 10.0.0.0/16]", pfx("10.0.0.0/8", "10.0.0.0/16"), ""},
		{"0.0.0.0/0", `["0.0.0.0/0"]`, pfx("0.0.0.0/0"), ""},
		{"empty list", "[]", nil, ""},
		{"host bits IPv4", "[192.168.1.1/24]", nil, "ignore[0]: 192.168.1.1/24 has host bits set; did you mean 192.168.1.0/24?"},
		{"host bits IPv6", `["2001:db8::1/32"]`, nil, "ignore[0]: 2001:db8::1/32 has host bits set; did you mean 2001:db8::/32?"},
		{"host bits second", "[10.0.0.0/8, 10.1.2.3/16]", nil, "ignore[1]: 10.1.2.3/16 has host bits set; did you mean 10.1.0.0/16?"},
		{"bad prefix length", "[10.0.0.0/33]", nil, `ignore[0]: "10.0.0.0/33" is not an address or CIDR`},
		{"hostname", "[localhost]", nil, `ignore[0]: "localhost" is not an address or CIDR`},
		{"IPv4-mapped CIDR", `["::ffff:10.0.0.0/104"]`, nil, "write IPv4-mapped addresses as plain IPv4"},
		{"IPv4-mapped address", `["::ffff:10.0.0.1"]`, nil, "without zone or IPv4 mapping"},
		{"zone", `["fe80::1%eth0"]`, nil, "without zone or IPv4 mapping"},
		{"mapping item", "[{a: b}]", nil, "ignore[0]: want a string, got a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := "ignore: " + tt.ignore + "\n"
			if tt.wantErr != "" {
				es := parseErrs(t, y)
				if !strings.Contains(es[0].Error(), tt.wantErr) {
					t.Errorf("error %q, want %q", es[0], tt.wantErr)
				}
				if es[0].Line != 1 {
					t.Errorf("error at line %d, want 1", es[0].Line)
				}
				return
			}
			c := mustParse(t, y)
			if !slices.Equal(c.IgnorePrefixes, tt.want) {
				t.Errorf("IgnorePrefixes = %v, want %v", c.IgnorePrefixes, tt.want)
			}
		})
	}
}

func TestParsePrefix(t *testing.T) {
	// ParsePrefix returns what was written; masking is the caller's choice.
	p, err := ParsePrefix("10.1.2.3/8")
	if err != nil || p.String() != "10.1.2.3/8" {
		t.Errorf("ParsePrefix(10.1.2.3/8) = %v, %v", p, err)
	}
}

func TestIgnoreFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write("good.ignore", "# comment\n\n127.0.0.1\r\n10.0.0.0/8 # office\n  2001:db8::/32  \n192.168.7.9/24\n10.0.0.0/8\n")
	second := write("second.ignore", "172.16.0.0/12\n10.0.0.0/8\n")
	bad := write("bad.ignore", "10.0.0.0/8\ngateway.example\n\n10.0.0.300\n192.168.7.9/24\n")
	nul := write("nul.ignore", "10.0.0.0/8\n\x00\n")
	empty := write("empty.ignore", "")

	t.Run("entries, warnings and duplicates", func(t *testing.T) {
		c := mustParse(t, "ignore: [10.0.0.0/8, \"::1\"]\nignore_files: ["+good+", "+second+"]\n")
		want := []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32"),
			netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.7.0/24"),
			netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("2001:db8::/32"),
		}
		if !slices.Equal(c.IgnorePrefixes, want) {
			t.Errorf("IgnorePrefixes = %v, want %v", c.IgnorePrefixes, want)
		}
		if len(c.Warnings) != 1 {
			t.Fatalf("warnings = %v, want one for the host bits", c.Warnings)
		}
		if got, want := c.Warnings[0].Error(), good+":6:1: 192.168.7.9/24 has host bits set; using 192.168.7.0/24"; got != want {
			t.Errorf("warning = %q, want %q", got, want)
		}
	})
	t.Run("empty file", func(t *testing.T) {
		c := mustParse(t, "ignore: []\nignore_files: ["+empty+"]\n")
		if len(c.IgnorePrefixes) != 0 {
			t.Errorf("IgnorePrefixes = %v, want none", c.IgnorePrefixes)
		}
	})
	t.Run("errors with positions in the ignore file", func(t *testing.T) {
		es := parseErrs(t, "ignore_files: ["+bad+"]\n")
		want := []string{
			bad + `:2:1: "gateway.example" is not an address or CIDR`,
			bad + `:4:1: "10.0.0.300" is not an address or CIDR`,
		}
		if len(es) != len(want) {
			t.Fatalf("errors = %q, want %q", es, want)
		}
		for i := range want {
			if es[i].Error() != want[i] {
				t.Errorf("error %d = %q, want %q", i, es[i], want[i])
			}
		}
	})
	t.Run("missing file", func(t *testing.T) {
		missing := filepath.Join(dir, "missing.ignore")
		es := parseErrs(t, "interfaces: [auto]\nignore_files:\n  - "+missing+"\n")
		if want := "test.yaml:3:5: ignore_files[0]: open " + missing + ": no such file or directory"; es[0].Error() != want {
			t.Errorf("error = %q, want %q", es[0], want)
		}
	})
	t.Run("a directory", func(t *testing.T) {
		es := parseErrs(t, "ignore_files: ["+dir+"]\n")
		if !strings.Contains(es[0].Error(), "test.yaml:1:16: ignore_files[0]: read "+dir) {
			t.Errorf("error = %q", es[0])
		}
	})
	t.Run("NUL bytes", func(t *testing.T) {
		es := parseErrs(t, "ignore_files: ["+nul+"]\n")
		if !strings.Contains(es[0].Error(), "test.yaml:1:16: ignore_files[0]: "+nul+": not a text file (contains NUL bytes)") {
			t.Errorf("error = %q", es[0])
		}
	})
	t.Run("a line too long", func(t *testing.T) {
		long := write("long.ignore", "10.0.0.0/8\n"+strings.Repeat("1", 2<<20)+"\n")
		es := parseErrs(t, "ignore_files: ["+long+"]\n")
		if es[0].File != long || es[0].Line != 2 || es[0].Column != 1 || !strings.Contains(es[0].Msg, "too long") {
			t.Errorf("error = %+v, want %s line 2 column 1: token too long", es[0], long)
		}
	})
}

func TestParseIgnoreFile(t *testing.T) {
	ps, warns, err := ParseIgnoreFile("x.ignore", []byte("10.0.0.1/8\n::1\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	if !slices.Equal(ps, want) {
		t.Errorf("prefixes = %v, want %v", ps, want)
	}
	if len(warns) != 1 || warns[0].Line != 1 || warns[0].File != "x.ignore" {
		t.Errorf("warnings = %v", warns)
	}
}

// TestUnknownKeys: an unknown key anywhere is rejected with its position and
// the nearest valid key at that level.
func TestUnknownKeys(t *testing.T) {
	tests := []struct {
		yaml string
		want string // the whole first error
	}{
		{"interface: [eth0]", `test.yaml:1:1: interface: unknown key; did you mean "interfaces"?`},
		{"adresses: []", `test.yaml:1:1: adresses: unknown key; did you mean "addresses"?`},
		{"tcp:\n  respons: block", `test.yaml:2:3: tcp.respons: unknown key; did you mean "response"?`},
		{"tcp:\n  port: [1]", `test.yaml:2:3: tcp.port: unknown key; did you mean "ports"?`},
		{"udp:\n  advanced:\n    bellow: 1024", `test.yaml:3:5: udp.advanced.bellow: unknown key; did you mean "below"?`},
		{"udp:\n  advanced:\n    excludes: [1]", `test.yaml:3:5: udp.advanced.excludes: unknown key; did you mean "exclude"?`},
		{"detect:\n  scan_triger: 2", `test.yaml:2:3: detect.scan_triger: unknown key; did you mean "scan_trigger"?`},
		{"detect:\n  windw: 1m", `test.yaml:2:3: detect.windw: unknown key; did you mean "window"?`},
		{"ignore_file: []", `test.yaml:1:1: ignore_file: unknown key; did you mean "ignore_files"?`},
		{"block:\n  timout: 1h", `test.yaml:2:3: block.timout: unknown key; did you mean "timeout"?`},
		{"block:\n  setsize: 10", `test.yaml:2:3: block.setsize: unknown key; did you mean "set_size"?`},
		{"hosts_deny:\n  tempate: x", `test.yaml:2:3: hosts_deny.tempate: unknown key; did you mean "template"?`},
		{"hostsdeny: {}", `test.yaml:1:1: hostsdeny: unknown key; did you mean "hosts_deny"?`},
		{"commands:\n  - argv: [/bin/true]\n  - arg: [/bin/true]", `test.yaml:3:5: commands[1].arg: unknown key; did you mean "argv"?`},
		{"commands:\n  - argv: [/bin/true]\n    frist: true", `test.yaml:3:5: commands[0].frist: unknown key; did you mean "first"?`},
		{"resolvehost: true", `test.yaml:1:1: resolvehost: unknown key; did you mean "resolve_host"?`},
		{"port_baner: hi", `test.yaml:1:1: port_baner: unknown key; did you mean "port_banner"?`},
		{"state:\n  dirs: /x", `test.yaml:2:3: state.dirs: unknown key; did you mean "dir"?`},
		{"state:\n  histroy_file: /x", `test.yaml:2:3: state.histroy_file: unknown key; did you mean "history_file"?`},
		{"capture:\n  grup: 1", `test.yaml:2:3: capture.grup: unknown key; did you mean "group"?`},
		{"capture:\n  queue_treshold: 1", `test.yaml:2:3: capture.queue_treshold: unknown key; did you mean "queue_threshold"?`},
		{"logging:\n  facilty: auth", `test.yaml:2:3: logging.facilty: unknown key; did you mean "facility"?`},
		{"loging: {}", `test.yaml:1:1: loging: unknown key; did you mean "logging"?`},
		{"TCP: {}", `test.yaml:1:1: TCP: unknown key; did you mean "tcp"?`},
		{"frobnicate: 1", "test.yaml:1:1: frobnicate: unknown key; valid keys here: interfaces, addresses, tcp, udp, detect, ignore, never_block, ignore_files, block, hosts_deny, commands, resolve_host, port_banner, state, capture, logging"},
		{"detect:\n  zzzzzzzz: 1", "test.yaml:2:3: detect.zzzzzzzz: unknown key; valid keys here: scan_trigger, window, max_sources"},
		// Computed fields are not keys.
		{"File: x", "test.yaml:1:1: File: unknown key;"},
		{"tcp:\n  monitored: [1]", "test.yaml:2:3: tcp.monitored: unknown key; valid keys here: ports, advanced, response"},
	}
	for _, tt := range tests {
		t.Run(tt.yaml, func(t *testing.T) {
			es := parseErrs(t, tt.yaml)
			if got := es[0].Error(); !strings.HasPrefix(got, tt.want) {
				t.Errorf("error = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNearest(t *testing.T) {
	cands := []string{"interfaces", "tcp", "udp", "ignore", "ignore_files"}
	for in, want := range map[string]string{
		"interface":   "interfaces",
		"tpc":         "tcp",
		"ucp":         "tcp", // ties go to the first candidate
		"ignor":       "ignore",
		"ignorefiles": "ignore_files",
		"x":           "",
		"":            "",
		"completely":  "",
	} {
		if got := nearest(in, cands); got != want {
			t.Errorf("nearest(%q) = %q, want %q", in, got, want)
		}
	}
	for _, tt := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"abc", "", 3}, {"", "abc", 3}, {"kitten", "sitting", 3}, {"tcp", "tcp", 0}, {"ab", "ba", 2}} {
		if d := EditDistance(tt.a, tt.b); d != tt.d {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", tt.a, tt.b, d, tt.d)
		}
	}
}

// TestErrorFormat: the text an editor jumps to.
func TestErrorFormat(t *testing.T) {
	for _, tt := range []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Line: 3, Column: 5, Key: "tcp.ports[1]", Msg: "bad"}, "a.yaml:3:5: tcp.ports[1]: bad"},
		{Error{File: "a.yaml", Key: "tcp", Msg: "bad"}, "a.yaml: tcp: bad"},
		{Error{File: "a.yaml", Line: 1, Column: 1, Msg: "bad"}, "a.yaml:1:1: bad"},
		{Error{File: "a.yaml", Msg: "bad"}, "a.yaml: bad"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	es := Errors{{File: "a", Line: 1, Column: 1, Msg: "x"}, {File: "a", Line: 2, Column: 1, Msg: "y"}}
	if got := es.Error(); got != "a:1:1: x\na:2:1: y" {
		t.Errorf("Errors.Error() = %q", got)
	}
	if u := es.Unwrap(); len(u) != 2 || u[1] != es[1] {
		t.Errorf("Unwrap = %v", u)
	}
}

// TestMerge: a user file changes only what it names; a list replaces the
// default list, a nested key keeps its siblings.
func TestMerge(t *testing.T) {
	c := mustParse(t, "tcp:\n  response: log\nblock:\n  set_size: 10\nignore: [10.0.0.0/8]\n")
	if c.TCP.Response != ResponseLog || len(c.TCP.Monitored) != 26 || c.UDP.Response != ResponseBlock {
		t.Errorf("tcp response %q with %d ports, udp %q", c.TCP.Response, len(c.TCP.Monitored), c.UDP.Response)
	}
	if c.Block.SetSize != 10 || c.BlockTimeout() != time.Hour {
		t.Errorf("block = %+v", c.Block)
	}
	if len(c.IgnorePrefixes) != 1 {
		t.Errorf("ignore replaces the default list, got %v", c.IgnorePrefixes)
	}
	// "key:" with no value keeps the defaults of a mapping.
	c = mustParse(t, "tcp:\ndetect:\nlogging: ~\n")
	if len(c.TCP.Monitored) != 26 || c.Detect.MaxSources != 100000 || c.Logging.Level != "notice" {
		t.Error("a null mapping should keep the defaults")
	}
	// Anchors and aliases work.
	c = mustParse(t, "tcp: &p\n  ports: [80]\n  response: log\nudp: *p\n")
	if !slices.Equal(c.UDP.Monitored, ports(80)) || c.UDP.Response != ResponseLog {
		t.Errorf("alias: udp = %v %q", c.UDP.Monitored, c.UDP.Response)
	}
	// Parsing twice does not leak state between configs.
	a, b := mustParse(t, "tcp: {ports: [1]}"), mustParse(t, "")
	if len(a.TCP.Monitored) != 1 || len(b.TCP.Monitored) != 26 {
		t.Error("a parse leaked into the next")
	}
}

func TestValues(t *testing.T) {
	c := mustParse(t, `
interfaces: [eth0, wg0, "br-1234567890ab"]
addresses: [10.0.0.1, "2001:db8::1", "::ffff:192.0.2.1"]
hosts_deny: {path: /etc/hosts.deny, template: "ALL: $TARGET$"}
commands:
  - argv: [/usr/bin/logger, "$TARGET$"]
    first: true
resolve_host: yes
port_banner: 12345
state: {dir: /srv/ps, history_file: /log/h}
capture: {group: 65535, queue_threshold: 1000}
logging: {target: syslog, facility: local7, level: debug}
`)
	if c.AllInterfaces || !slices.Equal(c.Interfaces, []string{"eth0", "wg0", "br-1234567890ab"}) {
		t.Errorf("interfaces = %v, all %v", c.Interfaces, c.AllInterfaces)
	}
	wantAddrs := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.1")}
	if !slices.Equal(c.WatchAddrs, wantAddrs) {
		t.Errorf("WatchAddrs = %v, want %v (mapped addresses unmapped)", c.WatchAddrs, wantAddrs)
	}
	if !c.Commands[0].First || c.Commands[0].Argv[1] != "$TARGET$" {
		t.Errorf("commands = %+v", c.Commands)
	}
	if !c.ResolveHost || c.PortBanner != "12345" {
		t.Errorf("resolve_host %v, port_banner %q", c.ResolveHost, c.PortBanner)
	}
	if c.State.HistoryFile != "/log/h" || c.State.BlockedFile != "/srv/ps/portsentry.blocked" {
		t.Errorf("state = %+v", c.State)
	}
	if c.Capture.Group != 65535 || c.Logging.Facility != "local7" {
		t.Errorf("capture %+v logging %+v", c.Capture, c.Logging)
	}
	for _, f := range Facilities {
		mustParse(t, "logging: {facility: "+f+"}")
	}
	for _, l := range Levels {
		mustParse(t, "logging: {level: "+l+"}")
	}
}

// TestErrorOrder: every problem is reported, in file order, and the same
// input always gives the same list.
func TestErrorOrder(t *testing.T) {
	y := "logging: {level: x}\ndetect: {scan_trigger: -1}\nstate: {dir: a, history_file: b, blocked_file: c}\ntcp: {response: x}\n"
	want := []string{"logging.level", "detect.scan_trigger", "state.dir", "state.history_file", "state.blocked_file", "tcp.response"}
	for range 20 {
		es := parseErrs(t, y)
		var keys []string
		for _, e := range es {
			keys = append(keys, e.Key)
		}
		if !slices.Equal(keys, want) {
			t.Fatalf("error keys = %v, want %v", keys, want)
		}
	}
}

// TestSyntaxErrorLines: YAML syntax errors point at the right line, 1-based
// (yaml.v3 gives its parser's errors 0-based).
func TestSyntaxErrorLines(t *testing.T) {
	tests := []struct {
		yaml string
		line int
		msg  string
	}{
		{"tcp:\n  ports: [1, 11, 15\nudp:\n  ports: [aware]\n", 2, "did not find expected ',' or ']'"},
		{"a: 1\nb: 2\nc: {x: 1\n", 3, "did not find expected ',' or '}'"},
		{"a: 1\nb:\n  - 1\n  x: 2\n", 3, "did not find expected '-' indicator"},
		{"detect:\n  scan_trigger: 2\n window: 10m\n", 3, "did not find expected key"},
		{"a: 1\nb: 2\nc:\n  d: 1\n e: 2\n", 5, "did not find expected key"},
		{"a: 1\nb: !x!y 2\n", 2, "found undefined tag handle"},
		{"a: !x!y 2\n", 1, "found undefined tag handle"},
		{"[1, 2", 1, "did not find expected ',' or ']'"},
		{"[1, 2\n", 1, "did not find expected ',' or ']'"},
		{"a: 1\nb: [1, 2\n", 2, "did not find expected ',' or ']'"},
		{"a: 1\n\tb: 2\n", 2, "found a tab character that violates indentation"},
		{"tcp:\n\tports: [aware]\n", 2, "found character that cannot start any token"},
		{"a: 1\nb: c: d\n", 2, "mapping values are not allowed in this context"},
		{"a: 1\nb: \"unterminated\n", 2, "found unexpected end of stream"},
		{"tcp: *nope\n", 0, "unknown anchor 'nope' referenced"},
	}
	for _, tt := range tests {
		t.Run(tt.yaml, func(t *testing.T) {
			es := parseErrs(t, tt.yaml)
			e := es[0]
			if e.Line != tt.line || (e.Line > 0 && e.Column != 1) || e.Msg != "YAML syntax: "+tt.msg || e.File != "test.yaml" {
				t.Errorf("error = %q (%+v), want line %d: YAML syntax: %s", e, e, tt.line, tt.msg)
			}
		})
	}
}

func TestNeverBlock(t *testing.T) {
	c := mustParse(t, `never_block: [192.0.2.1, "2001:db8::/32"]`)
	want := []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("2001:db8::/32")}
	if !slices.Equal(c.NeverBlockPrefixes, want) {
		t.Errorf("NeverBlockPrefixes = %v, want %v", c.NeverBlockPrefixes, want)
	}
	for yaml, want := range map[string]string{
		"never_block: [10.1.2.3/8]":  "test.yaml:1:15: never_block[0]: 10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?",
		"never_block: [router.lan]":  `test.yaml:1:15: never_block[0]: "router.lan" is not an address or CIDR`,
		"never_blok: []":             `test.yaml:1:1: never_blok: unknown key; did you mean "never_block"?`,
		"block: {repeat_factor: 0}":  "test.yaml:1:24: block.repeat_factor: want 1 (off) to 100, got 0",
		"block: {max_per_second: 0}": "test.yaml:1:25: block.max_per_second: want 1 or more, got 0",
		"block: {max_timeout: 400d}": "test.yaml:1:22: block.max_timeout: want a duration up to 365d, got 400d",
		"block: {max_timout: 1d}":    `test.yaml:1:9: block.max_timout: unknown key; did you mean "max_timeout"?`,
	} {
		if es := parseErrs(t, yaml); es[0].Error() != want {
			t.Errorf("%s: error %q, want %q", yaml, es[0], want)
		}
	}
	// A cap below the first timeout means no growth, not an error.
	c = mustParse(t, "block: {timeout: 60d}")
	if c.Block.MaxTimeout.String() != "60d" {
		t.Errorf("max_timeout = %v, want it raised to the timeout, 60d", c.Block.MaxTimeout)
	}
}

func TestValidIfname(t *testing.T) {
	for name, want := range map[string]bool{
		"eth0": true, "wg0": true, "br-1234567890ab": true, "enp0s31f6": true, "veth.100": true, "123456789012345": true,
		"": false, "1234567890123456": false, ".": false, "..": false, "eth0/1": false, "eth0:1": false,
		"eth 0": false, "eth\t0": false, "eth\n0": false, `e"0`: false, `e\\0`: false, "e\x7f": false, "e\u00a00": false,
	} {
		if got := validIfname(name); got != want {
			t.Errorf("validIfname(%q) = %v, want %v", name, got, want)
		}
	}
}
