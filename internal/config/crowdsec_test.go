package config

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// bouncerKey is an API key no other text of a test holds.
const bouncerKey = "Bk9-distinctive-bouncer-key-77"

// TestCrowdSecSection: crowdsec.api_keys_file gives the keys (a name and a
// key, or a key, a line); a keys file others may read and keys sent in
// clear are warnings; a bad line is an error at its file and line that
// never quotes a key.
func TestCrowdSecSection(t *testing.T) {
	dir := t.TempDir()
	keys := writeFile(t, dir, "bouncers.keys", "# this host's bouncers\n\nfirewall "+bouncerKey+"\n  "+bouncerKey+"-2  \n", 0o600)
	section := func(listen, rest string) string {
		return "crowdsec:\n  listen: " + listen + "\n  api_keys_file: " + keys + "\n" + rest
	}
	c, err := Load(writeFile(t, dir, "portsentry.yaml", section("127.0.0.1:8081", ""), 0o644))
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(c.CrowdSec.Keys)
	if want := "[{firewall [redacted]} {line 4 [redacted]}]"; got != want || c.CrowdSec.Keys[1].Key.Reveal() != bouncerKey+"-2" || len(c.Warnings) != 0 {
		t.Errorf("keys %s, warnings %v; want %s and none", got, c.Warnings, want)
	}
	if !c.CrowdSec.Enabled() || Default().CrowdSec.Enabled() {
		t.Error("Enabled: want it with crowdsec.listen only")
	}
	os.Chmod(keys, 0o644)
	if w := loadWarnings(t, section("127.0.0.1:8081", ""), 0o600); !strings.Contains(w, ":3:18: crowdsec.api_keys_file: "+keys+" is readable by group and others (mode 0644): chmod 0600 "+keys) {
		t.Errorf("a keys file of mode 0644: warnings %q", w)
	}
	os.Chmod(keys, 0o600)
	for listen, clear := range map[string]bool{"127.0.0.1:8081": false, "\"[::1]:8081\"": false, "localhost:8081": false, "10.0.0.1:8081": true, "\":8081\"": true} {
		w := loadWarnings(t, section(listen, ""), 0o600)
		if strings.Contains(w, "crowdsec.listen: the bouncers' API keys come in clear") != clear {
			t.Errorf("listen %s: warnings %q", listen, w)
		}
	}
	tlsKey := writeFile(t, dir, "api.key", "PEM", 0o640)
	w := loadWarnings(t, section("10.0.0.1:8081", "  tls_cert: /etc/ssl/api.pem\n  tls_key: "+tlsKey+"\n"), 0o600)
	if strings.Contains(w, "in clear") || !strings.Contains(w, ":5:12: crowdsec.tls_key: "+tlsKey+" holds a secret and is readable by its group") {
		t.Errorf("TLS with a key its group may read: warnings %q", w)
	}
	for name, data := range map[string]string{
		"short":     "web 0123\n",
		"words":     "web a " + bouncerKey + "\n",
		"twice":     bouncerKey + "\n" + bouncerKey + "\n",
		"same name": "a " + bouncerKey + "\na " + bouncerKey + "x\n",
		"empty":     "# none yet\n",
		"control":   "web " + bouncerKey + "\x01\n",
	} {
		writeFile(t, dir, "bouncers.keys", data, 0o600)
		_, err := Load(writeFile(t, dir, "portsentry.yaml", section("127.0.0.1:8081", ""), 0o600))
		if err == nil || !strings.Contains(err.Error(), keys) || strings.Contains(err.Error(), bouncerKey) {
			t.Errorf("a keys file %s: %v", name, err)
		}
	}
	writeFile(t, dir, "bouncers.keys", "web "+bouncerKey+"\nweb2 0123\n", 0o600)
	if _, err := Load(writeFile(t, dir, "portsentry.yaml", section("127.0.0.1:8081", ""), 0o600)); err == nil || !strings.Contains(err.Error(), keys+":2:1: want a key of 16 to 256 printable characters (this one has 4)") {
		t.Errorf("a short key on line 2: %v", err)
	}
}

// FuzzParseAPIKeys: any keys file gives keys that hold their invariants or
// Errors that locate each problem, and never quote a key.
func FuzzParseAPIKeys(f *testing.F) {
	f.Add([]byte("web " + bouncerKey + "\n"))
	f.Add([]byte("# c\n\n" + bouncerKey + "\r\nfw " + bouncerKey + "x\n"))
	f.Add([]byte("a b c\n\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseAPIKeys("k", data)
		if err != nil {
			es, ok := err.(Errors)
			if !ok || len(es) == 0 || keys != nil {
				t.Fatalf("error %T %v with %d keys", err, err, len(keys))
			}
			return
		}
		if len(keys) == 0 || len(keys) > MaxAPIKeys {
			t.Fatalf("%d keys", len(keys))
		}
		seen := map[Secret]bool{}
		for _, k := range keys {
			s := k.Key.Reveal()
			if len(s) < minAPIKeyLen || len(s) > maxAPIKeyLen || !printable(s) || seen[k.Key] || k.Name == "" {
				t.Fatalf("bad key %q (%q)", s, k.Name)
			}
			seen[k.Key] = true
		}
	})
}
