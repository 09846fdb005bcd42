package config

import (
	"net"
	"net/url"
	"strings"
)

// maxMachineID bounds crowdsec.lapi.machine_id (CrowdSec's machine names
// are short: cscli makes 32 to 48 characters).
const maxMachineID = 128

// lapi checks crowdsec.lapi, when it is there; pw is its password_file as
// readPasswordFile read it.
func (v *validator) lapi(l LAPI, pw passwordFile) {
	if !l.Enabled() {
		for _, k := range []struct{ key, val string }{{"crowdsec.lapi.machine_id", l.MachineID}, {"crowdsec.lapi.password_file", l.PasswordFile}} {
			if k.val != "" {
				v.bad(k.key, "has no effect without crowdsec.lapi.url (the local API, e.g. http://127.0.0.1:8080/)")
			}
		}
		return
	}
	if msg := checkLAPIURL(l.URL); msg != "" {
		v.bad("crowdsec.lapi.url", "%s, got %q", msg, l.URL)
	}
	switch {
	case l.MachineID == "":
		v.badNear("crowdsec.lapi.machine_id", "crowdsec.lapi.url", "the local API needs this host's machine name (cscli machines add NAME --password P)")
	case len(l.MachineID) > maxMachineID || !printable(l.MachineID):
		v.bad("crowdsec.lapi.machine_id", "want a name of at most %d printable characters without blanks", maxMachineID)
	}
	switch {
	case l.PasswordFile == "":
		v.badNear("crowdsec.lapi.password_file", "crowdsec.lapi.url", "the machine's password: an absolute path to a file that holds it alone, on one line")
	case pw.err != nil:
		v.bad("crowdsec.lapi.password_file", "%v", pw.err)
	}
	v.absPath("crowdsec.lapi.password_file", l.PasswordFile)
}

// checkLAPIURL says what is wrong with a local API URL, or "".
func checkLAPIURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Host == "" || u.Hostname() == "":
		return "want the local API's URL, such as http://127.0.0.1:8080/"
	case u.Scheme != "http" && u.Scheme != "https":
		return "want an http:// or https:// URL"
	case u.User != nil:
		return "want the URL without credentials (the password goes in crowdsec.lapi.password_file)"
	case u.RawQuery != "" || u.Fragment != "":
		return "want the URL without a query or fragment"
	}
	return ""
}

// lapiWarnings: the machine's password file readable by others than its
// owner, and the password sent in clear (http:// to a host that is not
// loopback).
func (c *Config) lapiWarnings(v *validator, pw passwordFile) {
	l := c.CrowdSec.LAPI
	if !l.Enabled() {
		return
	}
	if exposed(pw.mode) {
		v.bad("crowdsec.lapi.password_file", "%s is readable by %s (mode %04o): chmod 0600 %[1]s", l.PasswordFile, readers(pw.mode), pw.mode)
	}
	if u, err := url.Parse(l.URL); err == nil && u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		v.bad("crowdsec.lapi.url", "the machine's password goes in clear to %s (http://, not loopback): anyone on the path can read it; use https://", u.Host)
	}
}

// loopbackHost reports whether host (a name or an address) is this host's
// loopback.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
