package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// secret is a password no other text of a test holds.
const secret = "Zq7-distinctive-Pw-4e1b"

// writeFile writes data to dir/name with mode (chmod: the umask does not
// apply) and returns its path.
func writeFile(t *testing.T, dir, name, data string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// loadWarnings loads yaml written with mode and returns its warnings, one
// per line.
func loadWarnings(t *testing.T, yaml string, mode os.FileMode) string {
	t.Helper()
	c, err := Load(writeFile(t, t.TempDir(), "portsentry.yaml", yaml, mode))
	if err != nil {
		t.Fatalf("%s: %v", yaml, err)
	}
	var ws []string
	for _, w := range c.Warnings {
		ws = append(ws, w.Error())
	}
	return strings.Join(ws, "\n")
}

// TestPasswordFile: fleet.password_file gives the password (one line, its
// newline dropped); a file others may read is a warning, and a missing,
// empty or many-line file an error at the key, which never quotes what
// the file holds.
func TestPasswordFile(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, dir, "fleet.password", secret+"\n", 0o600)
	yaml := "fleet:\n  servers: [tls://n1.example.net:4222]\n  name: h1\n  user: h1\n  password_file: " + pw + "\n"
	c, err := Load(writeFile(t, dir, "portsentry.yaml", yaml, 0o644))
	if err != nil {
		t.Fatal(err)
	}
	if c.Fleet.Password.Reveal() != secret || len(c.Warnings) != 0 {
		t.Errorf("password %q, warnings %v; want the file's line and no warning (the config holds no secret)", c.Fleet.Password.Reveal(), c.Warnings)
	}
	os.Chmod(pw, 0o640)
	if w := loadWarnings(t, yaml, 0o600); !strings.Contains(w, ":5:18: fleet.password_file: "+pw+" is readable by its group (mode 0640): chmod 0600 "+pw) {
		t.Errorf("a password file of mode 0640: warnings %q", w)
	}
	for name, data := range map[string]string{"empty": "\n", "lines": secret + "\nsecond line\n", "big": strings.Repeat(secret, 200)} {
		writeFile(t, dir, "fleet.password", data, 0o600)
		_, err := Load(writeFile(t, dir, "portsentry.yaml", yaml, 0o600))
		if err == nil || !strings.Contains(err.Error(), ":5:18: fleet.password_file: "+pw) || strings.Contains(err.Error(), secret) {
			t.Errorf("a password file %s: %v", name, err)
		}
	}
	os.Remove(pw)
	if _, err := Load(writeFile(t, dir, "portsentry.yaml", yaml, 0o600)); err == nil || !strings.Contains(err.Error(), "fleet.password_file: open "+pw+": no such file") {
		t.Errorf("a missing password file: %v", err)
	}
}

// TestSecretWarnings: a configuration holding a password that others may
// read, a file of credentials others may read and a password sent in
// clear to a host that is not loopback are warnings, each at its key.
func TestSecretWarnings(t *testing.T) {
	dir := t.TempDir()
	creds := writeFile(t, dir, "fleet.creds", "jwt and seed", 0o644)
	nkey := writeFile(t, dir, "fleet.nk", "SU...", 0o604)
	key := writeFile(t, dir, "h1.key", "PEM", 0o600)
	fleet := func(servers, rest string) string {
		return "fleet:\n  servers: [" + servers + "]\n  name: h1\n" + rest
	}
	password := "  user: h1\n  password: " + secret + "\n"
	for _, tc := range []struct {
		yaml string
		mode os.FileMode
		want []string // "" : no warning
	}{
		{fleet("nats://10.0.0.1:4222", password), 0o644, []string{
			":2:13: fleet.servers[0]: the fleet's password goes in clear to 10.0.0.1:4222 (nats://, not loopback)",
			":5:13: fleet.password: this file holds the fleet's password and is readable by group and others (mode 0644): chmod 0600 ",
		}},
		{fleet("nats://127.0.0.1:4222, nats://localhost, \"nats://[::1]:4222\", tls://n2.example.net", password), 0o600, nil},
		{fleet("nats://10.0.0.1:4222, tls://n2.example.net", password), 0o604, []string{
			"fleet.servers[0]: the fleet's password goes in clear",
			"readable by others (mode 0604)",
		}},
		{fleet("nats://10.0.0.1:4222", password+"  tls: {ca: /etc/ssl/ca.pem}\n"), 0o600, nil},
		{fleet("nats://10.0.0.1:4222", "  credentials: "+creds+"\n"), 0o644, []string{
			"fleet.credentials: " + creds + " holds a secret and is readable by group and others (mode 0644)",
		}},
		{fleet("nats://10.0.0.1:4222", "  nkey: "+nkey+"\n  tls: {ca: /etc/ssl/ca.pem, cert: /etc/ssl/h1.pem, key: "+key+"}\n"), 0o644, []string{
			"fleet.nkey: " + nkey + " holds a secret and is readable by others (mode 0604)",
		}},
	} {
		w := loadWarnings(t, tc.yaml, tc.mode)
		if n := strings.Count(w, "\n") + 1; w != "" && n != len(tc.want) || w == "" && len(tc.want) > 0 {
			t.Errorf("%s(mode %04o): warnings\n%s\nwant %d", tc.yaml, tc.mode, w, len(tc.want))
		}
		for _, s := range tc.want {
			if !strings.Contains(w, s) {
				t.Errorf("%s(mode %04o): warnings\n%s\nwant one with %q", tc.yaml, tc.mode, w, s)
			}
		}
		if strings.Contains(w, secret) {
			t.Errorf("a warning shows the password: %s", w)
		}
	}
}

// TestSecretRedacted: the configuration printed whole, with any fmt verb,
// in JSON or as a log attribute, shows no password.
func TestSecretRedacted(t *testing.T) {
	c := mustParse(t, "fleet:\n  servers: [tls://n1.example.net]\n  name: h1\n  user: h1\n  password: "+secret+"\n")
	if c.Fleet.Password.Reveal() != secret {
		t.Fatalf("password %q", c.Fleet.Password.Reveal())
	}
	var out []string
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		out = append(out, fmt.Sprintf(f, c), fmt.Sprintf(f, *c), fmt.Sprintf(f, c.Fleet), fmt.Sprintf(f, c.Fleet.Password))
	}
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "config", c, "fleet", c.Fleet, "password", c.Fleet.Password)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "config", c, "fleet", c.Fleet, "password", c.Fleet.Password)
	out = append(out, string(j), logs.String())
	for _, s := range out {
		if strings.Contains(s, secret) || strings.Contains(s, fmt.Sprintf("%x", secret)) {
			t.Errorf("the password is shown: %.300s", s)
		}
	}
	if !strings.Contains(fmt.Sprint(c.Fleet), Redacted) || !strings.Contains(string(j), `"Password":"[redacted]"`) {
		t.Errorf("no %s in %v or %s", Redacted, c.Fleet, j)
	}
}
