package config

import (
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// maxPasswordBytes bounds fleet.password_file: a password, not a file of
// anything.
const maxPasswordBytes = 4096

// passwordFile is fleet.password_file, read.
type passwordFile struct {
	secret Secret
	mode   fs.FileMode // its permission bits, for secretWarnings
	err    error       // reading it; never quotes what it holds
}

// readPasswordFile reads the one line of path ("" or a relative path,
// which validate reports: nothing). A trailing newline is not part of it.
func readPasswordFile(path string) passwordFile {
	if path == "" || !filepath.IsAbs(path) {
		return passwordFile{}
	}
	f, err := os.Open(path)
	if err != nil {
		return passwordFile{err: err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return passwordFile{err: err}
	}
	if !fi.Mode().IsRegular() {
		return passwordFile{err: fmt.Errorf("%s is not a regular file", path)}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPasswordBytes+1))
	if err != nil {
		return passwordFile{err: fmt.Errorf("read %s: %w", path, err)}
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	switch {
	case len(data) > maxPasswordBytes:
		err = fmt.Errorf("%s is larger than %d bytes: want the password alone, on one line", path, maxPasswordBytes)
	case s == "":
		err = fmt.Errorf("%s is empty: want the password, on one line", path)
	case strings.ContainsAny(s, "\r\n"):
		err = fmt.Errorf("%s has more than one line: want the password alone, on one line", path)
	}
	if err != nil {
		return passwordFile{err: err}
	}
	return passwordFile{secret: Secret(s), mode: fi.Mode().Perm()}
}

// secretWarnings are the ways the fleet's secrets may leak that do not
// stop loading (check prints them, the daemon logs them at start): a file
// holding a secret that others than its owner may read (the configuration
// itself, of mode mode, 0 when unknown; fleet.password_file; the
// credentials, nkey and TLS key files), and a password sent in clear;
// and the same of the bouncers' API keys and the CrowdSec machine's
// password (crowdsecWarnings).
func (c *Config) secretWarnings(d *decoder, mode fs.FileMode, pw passwordFile, cs crowdsecFiles) []*Error {
	v := &validator{file: d.file, pos: d.pos, sortAt: map[*Error][2]int{}}
	c.crowdsecWarnings(v, cs)
	f := c.Fleet
	if !f.Enabled() {
		return v.sorted()
	}
	if f.Password != "" && f.PasswordFile == "" && exposed(mode) {
		v.bad("fleet.password", "this file holds the fleet's password and is readable by %s (mode %04o): chmod 0600 %s, or move the password to fleet.password_file", readers(mode), mode, d.file)
	}
	if f.PasswordFile != "" && exposed(pw.mode) {
		v.bad("fleet.password_file", "%s is readable by %s (mode %04o): chmod 0600 %[1]s", f.PasswordFile, readers(pw.mode), pw.mode)
	}
	for _, k := range []struct{ key, path string }{{"fleet.credentials", f.Credentials}, {"fleet.nkey", f.NKey}, {"fleet.tls.key", f.TLS.Key}} {
		if k.path == "" {
			continue
		}
		if fi, err := os.Stat(k.path); err == nil && exposed(fi.Mode().Perm()) {
			v.bad(k.key, "%s holds a secret and is readable by %s (mode %04o): chmod 0600 %[1]s", k.path, readers(fi.Mode().Perm()), fi.Mode().Perm())
		}
	}
	if f.Password != "" && f.TLS.CA == "" && f.TLS.Cert == "" {
		for i, s := range f.Servers {
			if host, clear := inClear(s); clear {
				v.bad(keyIndex("fleet.servers", i), "the fleet's password goes in clear to %s (nats://, not loopback): anyone on the path can read it; use tls:// with fleet.tls.ca, or fleet.credentials or fleet.nkey, which send no secret", host)
			}
		}
	}
	return v.sorted()
}

// exposed reports whether permission bits let group or others read.
func exposed(perm fs.FileMode) bool { return perm&0o044 != 0 }

// readers names who besides the owner may read a file of mode perm.
func readers(perm fs.FileMode) string {
	switch perm & 0o044 {
	case 0o044:
		return "group and others"
	case 0o040:
		return "its group"
	}
	return "others"
}

// inClear reports whether a password would be sent in clear to server (a
// valid URL): nats:// to a host that is not loopback. A nats:// URL is
// upgraded to TLS when the server asks for it, but whoever answers on the
// way may not ask: only tls:// or fleet.tls settings make the client
// insist.
func inClear(server string) (host string, clear bool) {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "nats" {
		return "", false
	}
	host = u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return host, false
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return host, false
	}
	return u.Host, true
}

// readConfigFile reads the configuration at path and its permission bits.
func readConfigFile(path string) ([]byte, fs.FileMode, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", path, err)
	}
	return data, fi.Mode().Perm(), nil
}
