package config

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// lapiPassword is a password no other text of a test holds.
const lapiPassword = "Lp7-distinctive-machine-password"

// TestLAPISection: crowdsec.lapi gives the local API's URL, the machine
// and its password (read from password_file, without the newline); each
// problem is an error at its file, line and key that never quotes the
// password; a password file others may read and a password sent in clear
// are warnings.
func TestLAPISection(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, dir, "lapi.password", lapiPassword+"\n", 0o600)
	section := func(url, machine, file string) string {
		return "crowdsec:\n  lapi:\n    url: " + url + "\n    machine_id: " + machine + "\n    password_file: " + file + "\n"
	}
	c, err := Load(writeFile(t, dir, "portsentry.yaml", section("http://127.0.0.1:8080/", "web-01", pw), 0o600))
	if err != nil {
		t.Fatal(err)
	}
	l := c.CrowdSec.LAPI
	if !l.Enabled() || l.MachineID != "web-01" || l.Password.Reveal() != lapiPassword || len(c.Warnings) != 0 || c.CrowdSec.Enabled() {
		t.Errorf("lapi %+v (password %q), warnings %v; bouncer API on: %t", l, l.Password.Reveal(), c.Warnings, c.CrowdSec.Enabled())
	}
	if Default().CrowdSec.LAPI.Enabled() || strings.Contains(fmt.Sprintf("%v %+v %#v", c, c, c), lapiPassword) {
		t.Error("on by default, or the password printed")
	}
	os.Chmod(pw, 0o640)
	if w := loadWarnings(t, section("http://127.0.0.1:8080/", "web-01", pw), 0o600); !strings.Contains(w, ":5:20: crowdsec.lapi.password_file: "+pw+" is readable by its group (mode 0640): chmod 0600 "+pw) {
		t.Errorf("a password file of mode 0640: warnings %q", w)
	}
	os.Chmod(pw, 0o600)
	for url, clear := range map[string]bool{"http://127.0.0.1:8080/": false, "http://[::1]:8080": false, "http://localhost:8080/": false, "https://lapi.example.net/": false, "http://10.0.0.1:8080/": true} {
		if w := loadWarnings(t, section(url, "web-01", pw), 0o600); strings.Contains(w, ":3:10: crowdsec.lapi.url: the machine's password goes in clear") != clear {
			t.Errorf("url %s: warnings %q", url, w)
		}
	}
	for name, tc := range map[string]struct{ yaml, want string }{
		"scheme":        {section("ftp://127.0.0.1/", "web-01", pw), ":3:10: crowdsec.lapi.url: want an http:// or https:// URL"},
		"no host":       {section("http:///v1", "web-01", pw), ":3:10: crowdsec.lapi.url: want the local API's URL"},
		"user in URL":   {section("http://u:p@127.0.0.1/", "web-01", pw), ":3:10: crowdsec.lapi.url: want the URL without credentials"},
		"no machine":    {section("http://127.0.0.1/", "\"\"", pw), ":4:17: crowdsec.lapi.machine_id: the local API needs this host's machine name"},
		"blank machine": {section("http://127.0.0.1/", "\"a b\"", pw), ":4:17: crowdsec.lapi.machine_id: want a name of at most 128 printable"},
		"relative":      {section("http://127.0.0.1/", "web-01", "lapi.password"), ":5:20: crowdsec.lapi.password_file: want an absolute path"},
		"missing":       {section("http://127.0.0.1/", "web-01", pw+".none"), ":5:20: crowdsec.lapi.password_file: open " + pw + ".none: no such file"},
		"no file":       {"crowdsec:\n  lapi:\n    url: http://127.0.0.1/\n    machine_id: web-01\n", ":3:10: crowdsec.lapi.password_file: the machine's password"},
		"no url":        {"crowdsec:\n  lapi:\n    machine_id: web-01\n", ":3:17: crowdsec.lapi.machine_id: has no effect without crowdsec.lapi.url"},
	} {
		_, err := Load(writeFile(t, dir, "portsentry.yaml", tc.yaml, 0o600))
		if err == nil || !strings.Contains(err.Error(), dir+"/portsentry.yaml"+tc.want) || strings.Contains(err.Error(), lapiPassword) {
			t.Errorf("%s: %v, want %s", name, err, tc.want)
		}
	}
	writeFile(t, dir, "lapi.password", "two\nlines\n", 0o600)
	if _, err := Load(writeFile(t, dir, "portsentry.yaml", section("http://127.0.0.1/", "web-01", pw), 0o600)); err == nil || !strings.Contains(err.Error(), "crowdsec.lapi.password_file: "+pw+" has more than one line") {
		t.Errorf("a password file of two lines: %v", err)
	}
}
