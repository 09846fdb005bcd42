package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestFleetAbsent: without a fleet section (or with "fleet:" alone) the
// fleet is the zero value and off, so the daemon runs as it always has.
func TestFleetAbsent(t *testing.T) {
	for _, y := range []string{"", "tcp: {response: log}\n", "fleet:\n"} {
		c := mustParse(t, y)
		if c.Fleet.Enabled() || !reflect.DeepEqual(c.Fleet, Fleet{}) {
			t.Errorf("%q: Fleet = %+v, want the zero value", y, c.Fleet)
		}
	}
	if Default().Fleet.Enabled() {
		t.Error("the default config has a fleet")
	}
}

// TestFleetDefaults: a section with servers only gets the documented
// defaults; correlate.hosts: 0 stays 0 (off).
func TestFleetDefaults(t *testing.T) {
	c := mustParse(t, "fleet:\n  servers: [nats://10.0.0.1:4222, tls://n2.example.net]\n  name: web-1\n")
	f := c.Fleet
	if !f.Enabled() || f.Name != "web-1" || len(f.Servers) != 2 {
		t.Errorf("Fleet = %+v", f)
	}
	if f.Correlate.Hosts != 3 || time.Duration(f.Correlate.Window) != 10*time.Minute || time.Duration(f.MaxTimeout) != 7*24*time.Hour {
		t.Errorf("defaults: correlate %+v, max_timeout %s", f.Correlate, f.MaxTimeout)
	}
	c = mustParse(t, "fleet:\n  servers: [nats://n1]\n  name: a\n  correlate: {hosts: 0, window: 1h}\n  max_timeout: 2d\n")
	if c.Fleet.Correlate.Hosts != 0 || time.Duration(c.Fleet.Correlate.Window) != time.Hour || time.Duration(c.Fleet.MaxTimeout) != 48*time.Hour {
		t.Errorf("Fleet = %+v", c.Fleet)
	}
}

// TestFleetHosts: fleet.hosts takes addresses and CIDRs, parsed,
// deduplicated and sorted; up to MaxFleetHosts of them.
func TestFleetHosts(t *testing.T) {
	c := mustParse(t, "fleet:\n  servers: [nats://n1]\n  name: a\n  hosts: [10.0.0.3, 2001:db8::/64, 10.0.0.3, 192.0.2.0/28]\n")
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.3/32"), netip.MustParsePrefix("192.0.2.0/28"), netip.MustParsePrefix("2001:db8::/64")}
	if !slices.Equal(c.Fleet.HostPrefixes, want) {
		t.Errorf("HostPrefixes = %v, want %v", c.Fleet.HostPrefixes, want)
	}
	many := "fleet:\n  servers: [nats://n1]\n  name: a\n  hosts:\n"
	for i := range MaxFleetHosts {
		many += fmt.Sprintf("    - 10.1.%d.%d\n", i/256, i%256)
	}
	if c := mustParse(t, many); len(c.Fleet.HostPrefixes) != MaxFleetHosts {
		t.Errorf("%d of %d fleet hosts", len(c.Fleet.HostPrefixes), MaxFleetHosts)
	}
	if c := mustParse(t, "fleet: {servers: [nats://n1], name: a}\n"); c.Fleet.HostPrefixes != nil {
		t.Errorf("HostPrefixes = %v without fleet.hosts", c.Fleet.HostPrefixes)
	}
}

// TestFleetServerHosts: the servers' host parts, for the guard: names and
// literal addresses, without brackets or ports, each once.
func TestFleetServerHosts(t *testing.T) {
	f := Fleet{Servers: []string{"nats://10.16.0.1:4222", "tls://n2.example.net", "nats://[2001:db8::3]:4222", "tls://10.16.0.1:4223"}}
	want := []string{"10.16.0.1", "n2.example.net", "2001:db8::3"}
	if got := f.ServerHosts(); !slices.Equal(got, want) {
		t.Errorf("ServerHosts() = %q, want %q", got, want)
	}
}

// TestFleetDefaultName: an empty name is the host name up to its first
// dot, in lower case (when that is a valid name).
func TestFleetDefaultName(t *testing.T) {
	want := DefaultFleetName()
	if !ValidFleetName(want) {
		t.Skipf("this host's name %q is not a valid fleet name", want)
	}
	c := mustParse(t, "fleet: {servers: [nats://n1:4222]}\n")
	if c.Fleet.Name != want || strings.ContainsAny(want, ".ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
		t.Errorf("Name = %q, want %q", c.Fleet.Name, want)
	}
}

// TestFleetCredentials: each kind alone is accepted.
func TestFleetCredentials(t *testing.T) {
	for _, y := range []string{
		"credentials: /etc/portsentry-nft/fleet.creds",
		"user: h1\n  password: s3cret",
		"nkey: /etc/portsentry-nft/fleet.nk",
		"tls: {ca: /etc/ssl/fleet-ca.pem, cert: /etc/ssl/h1.pem, key: /etc/ssl/h1.key}",
		"tls: {ca: /etc/ssl/fleet-ca.pem}",
	} {
		c := mustParse(t, "fleet:\n  servers: [tls://n1:4222]\n  name: h1\n  "+y+"\n")
		if !c.Fleet.Enabled() {
			t.Errorf("%q: not enabled", y)
		}
	}
}

// TestFleetErrors: every fleet problem names the file, line and key.
func TestFleetErrors(t *testing.T) {
	const head = "fleet:\n  servers: [nats://n1:4222]\n  name: h1\n"
	tests := []struct {
		name, yaml string
		key        string
		line       int
		msg        string
	}{
		{"no servers", "fleet:\n  name: h1\n", "fleet.servers", 2, "want at least one server URL"},
		{"empty servers", "fleet:\n  servers: []\n", "fleet.servers", 2, "want at least one server URL"},
		{"empty mapping", "fleet: {}\n", "fleet.servers", 1, "want at least one server URL"},
		{"scheme", "fleet:\n  servers: [http://n1:4222]\n  name: h1\n", "fleet.servers[0]", 2, "nats:// or tls://"},
		{"no scheme", "fleet:\n  servers: [n1:4222]\n  name: h1\n", "fleet.servers[0]", 2, "nats:// or tls://"},
		{"no host", "fleet:\n  servers: [\"nats://\"]\n  name: h1\n", "fleet.servers[0]", 2, "want a URL"},
		{"path", "fleet:\n  servers: [nats://n1:4222/x]\n  name: h1\n", "fleet.servers[0]", 2, "no path"},
		{"port", "fleet:\n  servers: [nats://n1:0]\n  name: h1\n", "fleet.servers[0]", 2, "port from 1 to 65535"},
		{"user in url", "fleet:\n  servers: [nats://u:p@n1]\n  name: h1\n", "fleet.servers[0]", 2, "no credentials in the URL"},
		{"second server", "fleet:\n  servers:\n    - nats://n1\n    - nats://n2:99999\n  name: h1\n", "fleet.servers[1]", 4, "port from 1 to 65535"},
		{"name dot", "fleet:\n  servers: [nats://n1]\n  name: web.example\n", "fleet.name", 3, "one NATS subject token"},
		{"name wildcard", "fleet:\n  servers: [nats://n1]\n  name: \"h*\"\n", "fleet.name", 3, "one NATS subject token"},
		{"name admin", "fleet:\n  servers: [nats://n1]\n  name: admin\n", "fleet.name", 3, "reserved for the fleet's administrator"},
		{"name too long", "fleet:\n  servers: [nats://n1]\n  name: " + strings.Repeat("a", 65) + "\n", "fleet.name", 3, "1-64"},
		{"two kinds", head + "  credentials: /etc/f.creds\n  nkey: /etc/f.nk\n", "fleet.nkey", 5, "one kind of credentials"},
		{"three kinds", head + "  user: h1\n  password: x\n  credentials: /etc/f.creds\n", "fleet.user", 4, "fleet.credentials is given too"},
		{"user without password", head + "  user: h1\n", "fleet.password", 4, "needs a password"},
		{"password without user", head + "  password: x\n", "fleet.password", 4, "needs fleet.user"},
		{"credentials relative", head + "  credentials: fleet.creds\n", "fleet.credentials", 4, "absolute path"},
		{"nkey relative", head + "  nkey: fleet.nk\n", "fleet.nkey", 4, "absolute path"},
		{"tls ca relative", head + "  tls: {ca: ca.pem}\n", "fleet.tls.ca", 4, "absolute path"},
		{"tls cert relative", head + "  tls: {cert: h1.pem, key: /k}\n", "fleet.tls.cert", 4, "absolute path"},
		{"tls key relative", head + "  tls: {cert: /c, key: h1.key}\n", "fleet.tls.key", 4, "absolute path"},
		{"tls cert without key", head + "  tls:\n    cert: /etc/h1.pem\n", "fleet.tls.key", 5, "needs its key"},
		{"tls key without cert", head + "  tls:\n    key: /etc/h1.key\n", "fleet.tls.key", 5, "needs its client certificate"},
		{"tls unknown key", head + "  tls: {crt: /x}\n", "fleet.tls.crt", 4, "did you mean \"cert\""},
		{"correlate hosts 1", head + "  correlate:\n    hosts: 1\n", "fleet.correlate.hosts", 5, "want 0 (off) or 2 to 1000"},
		{"correlate hosts negative", head + "  correlate: {hosts: -3}\n", "fleet.correlate.hosts", 4, "want 0 (off) or 2 to 1000"},
		{"counters two", head + "  correlate:\n    counters: [h1, h2]\n", "fleet.correlate.counters", 5, "3 to 15 host names"},
		{"counters twice", head + "  correlate:\n    counters:\n      - h1\n      - h2\n      - h1\n", "fleet.correlate.counters[2]", 8, "listed twice"},
		{"counter off", "fleet:\n  servers: [nats://n1]\n  name: h1\n  correlate:\n    hosts: 0\n    counters: [h1, h2, h3]\n", "fleet.correlate.counters[0]", 6, "needs fleet.correlate.hosts"},
		{"counters admin", head + "  correlate:\n    counters: [h1, h2, admin]\n", "fleet.correlate.counters[2]", 5, "a host's fleet name"},
		{"correlate window short", head + "  correlate: {window: 500ms}\n", "fleet.correlate.window", 4, "from 1s to 365d"},
		{"correlate window bad", head + "  correlate: {window: soon}\n", "fleet.correlate.window", 4, "invalid duration"},
		{"max timeout long", head + "  max_timeout: 400d\n", "fleet.max_timeout", 4, "from 1s to 365d"},
		{"max timeout negative", head + "  max_timeout: -1h\n", "fleet.max_timeout", 4, "from 1s to 365d"},
		{"unknown key", head + "  server: [nats://n2]\n", "fleet.server", 4, "did you mean \"servers\""},
		{"hosts name", head + "  hosts: [10.0.0.1, web-2.example.net]\n", "fleet.hosts[1]", 4, "not an address or CIDR"},
		{"hosts host bits", head + "  hosts:\n    - 10.0.0.1/24\n", "fleet.hosts[0]", 5, "did you mean 10.0.0.0/24"},
		{"hosts zone", head + "  hosts: [\"fe80::1%eth0\"]\n", "fleet.hosts[0]", 4, "without zone"},
		{"hosts scalar", head + "  hosts: 10.0.0.1\n", "fleet.hosts", 4, "want a list"},
		{"hosts too many", head + "  hosts:\n" + strings.Repeat("    - 10.0.0.1\n", MaxFleetHosts+1), "fleet.hosts[4096]", 5 + MaxFleetHosts, "at most 4096 fleet hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es := parseErrs(t, tt.yaml)
			e := es[0]
			if e.File != "test.yaml" || e.Key != tt.key || e.Line != tt.line || e.Column < 1 || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("first error %q (key %q, line %d), want key %q at line %d containing %q\nall: %v", e.Error(), e.Key, e.Line, tt.key, tt.line, tt.msg, es)
			}
		})
	}
}

// TestFleetAdminFile: the administrator's file (LoadFleetAdmin) needs a
// fleet section named admin, the name no host's file may take.
func TestFleetAdminFile(t *testing.T) {
	const y = "fleet:\n  servers: [tls://n1:4222]\n  name: admin\n  user: admin\n  password_file: /etc/portsentry-nft/admin.password\n"
	pw := filepath.Join(t.TempDir(), "admin.password")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := ParseFleetAdmin("admin.yaml", []byte(strings.Replace(y, "/etc/portsentry-nft/admin.password", pw, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Fleet.Name != FleetAdminName || c.Fleet.User != "admin" || c.Fleet.Password.Reveal() != "s3cret" {
		t.Errorf("fleet %+v", c.Fleet)
	}
	for _, tt := range []struct {
		yaml, key string
		line      int
		msg       string
	}{
		{"fleet:\n  servers: [nats://n1]\n  name: h1\n", "fleet.name", 3, "needs name: admin"},
		{"fleet:\n  servers: [nats://n1]\n", "fleet.name", 2, "needs name: admin"},
		{"block: {timeout: 2h}\n", "fleet", 0, "needs a fleet section"},
	} {
		_, err := ParseFleetAdmin("admin.yaml", []byte(tt.yaml))
		var es Errors
		if !errors.As(err, &es) || es[0].Key != tt.key || es[0].Line != tt.line || !strings.Contains(es[0].Msg, tt.msg) {
			t.Errorf("ParseFleetAdmin(%q) = %v, want %s at line %d: %q", tt.yaml, err, tt.key, tt.line, tt.msg)
		}
	}
}

func TestValidFleetName(t *testing.T) {
	for _, ok := range []string{"h1", "web-01", "DB_2", strings.Repeat("x", 64)} {
		if !ValidFleetName(ok) {
			t.Errorf("ValidFleetName(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", "a.b", "h*", "h>", "a b", "h/1", "é", strings.Repeat("x", 65)} {
		if ValidFleetName(bad) {
			t.Errorf("ValidFleetName(%q) = true", bad)
		}
	}
}
