package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Fleet shares blocks between hosts through a NATS JetStream cluster (see
// internal/fleet). With no fleet section it is the zero value and the
// daemon runs alone (Enabled is false).
type Fleet struct {
	// Servers are the cluster's URLs, nats://host:port or tls://host:port.
	Servers []string `yaml:"servers"`
	// Name is this host in the fleet, a NATS subject token; empty: the
	// host name up to its first dot, in lower case.
	Name string `yaml:"name"`
	// At most one kind of credentials: a .creds file (JWT and seed), a
	// user and password, or an nkey seed file. The password is given in
	// the file or, better, read from PasswordFile (one line), not both;
	// once loaded, Password holds it either way.
	Credentials  string `yaml:"credentials"`
	User         string `yaml:"user"`
	Password     Secret `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	NKey         string `yaml:"nkey"`
	// TLS: the CA that signed the servers' certificates, and this host's
	// client certificate and key when the servers ask for one.
	TLS       FleetTLS       `yaml:"tls"`
	Correlate FleetCorrelate `yaml:"correlate"`
	// MaxTimeout caps any timeout read from the fleet (a host's block, a
	// correlated block); 0 in the file means the default, 7d.
	MaxTimeout Duration `yaml:"max_timeout"`
	// Hosts are the addresses (or CIDRs) of the fleet's hosts, as the
	// administrator knows them: never blocked here, by any origin. What a
	// host publishes about itself protects nothing (a compromised host
	// could make any address immune); at most MaxFleetHosts entries.
	Hosts []string `yaml:"hosts"`
	// ShareForgeable publishes blocks that rest on forgeable evidence
	// (probes seen by this host alone), and applies the others' as weak
	// (evictable, never an offence, within their host's share). Off: such
	// a block stays on the host that saw the probes, and only corroborated
	// (fleet.correlate), handshake and administrators' blocks travel.
	ShareForgeable bool `yaml:"share_forgeable"`
	// HostShare is the part of block.set_size, and of
	// block.max_per_second, that one fleet host's blocks may take here
	// (the fleet administrator's are exempt); 0 in the file means the
	// default, a quarter.
	HostShare float64 `yaml:"host_share"`
	// Domain and LocalDomain place the host in a topology of leaf nodes
	// (fleetdomain.go, deploy/nats/leaf): Domain is the JetStream domain
	// of the hub cluster that holds the buckets (writes, binding),
	// LocalDomain that of the site's leaf server, whose copies
	// of the buckets the host watches. Both empty: a plain cluster.
	Domain      string `yaml:"domain"`
	LocalDomain string `yaml:"local_domain"`

	// HostPrefixes are the parsed Hosts.
	HostPrefixes []netip.Prefix `yaml:"-"`
}

// MaxFleetHosts caps fleet.hosts: each entry is a guard rail every
// decision and the kernel's protected sets carry.
const MaxFleetHosts = 4096

// ServerHosts are the host parts of Servers (a name or a literal address,
// without brackets or port), each once, in order: the addresses of the
// fleet's servers are never blocked.
func (f Fleet) ServerHosts() []string {
	var out []string
	for _, s := range f.Servers {
		u, err := url.Parse(s)
		if err != nil || u.Hostname() == "" || slices.Contains(out, u.Hostname()) {
			continue
		}
		out = append(out, u.Hostname())
	}
	return out
}

// FleetTLS holds the PEM files of a TLS connection to the fleet's servers.
type FleetTLS struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// FleetCorrelate blocks an address fleet-wide once Hosts distinct hosts
// have seen it probe a tripwire within Window, although none of them saw
// enough to block it alone.
type FleetCorrelate struct {
	// Hosts is K; 0 turns correlation off. Default 3.
	Hosts int `yaml:"hosts"`
	// Window defaults to 10m.
	Window Duration `yaml:"window"`
	// Counters name the hosts that count the sightings, for a large
	// fleet (each sighting reaches every counting host). Empty: every
	// host with correlation on counts them itself, and enforces its own
	// count. Named (at least MinFleetCounters): only they count, each
	// publishes a correlated block of what it counted, and a host
	// enforces a correlated block once a majority of them did.
	Counters []string `yaml:"counters"`
}

// MinFleetCounters and MaxFleetCounters bound fleet.correlate.counters:
// a majority of at least 3 is at least 2, so no single counter, however
// compromised, makes a correlated block alone.
const (
	MinFleetCounters = 3
	MaxFleetCounters = 15
)

// CounterQuorum is how many of n named counters must have published a
// correlated block of an address for a host to enforce it: a majority.
func CounterQuorum(n int) int { return n/2 + 1 }

// Enabled reports whether this host is part of a fleet: a fleet section
// with at least one server.
func (f Fleet) Enabled() bool { return len(f.Servers) > 0 }

// The fleet's defaults, applied by derive when the section is present.
const (
	DefaultFleetCorrelateHosts  = 3
	DefaultFleetCorrelateWindow = 10 * time.Minute
	DefaultFleetMaxTimeout      = 7 * 24 * time.Hour
	DefaultFleetHostShare       = 0.25
)

// FleetAdminName is the fleet administrator's name: the key host of the
// records only the administrator's NATS user may write (a fleet-wide lift,
// an administrator's block), which every host trusts as such. No host may
// take it; the administrator's own file (LoadFleetAdmin) must.
const FleetAdminName = "admin"

// fleetNameRe is what a fleet name may be: one NATS subject token that is
// also a JetStream key token and a user name in the servers' permissions.
var fleetNameRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidFleetName reports whether name can name a host of the fleet.
func ValidFleetName(name string) bool { return fleetNameRe.MatchString(name) }

// DefaultFleetName is the fleet name a host gets when fleet.name is
// empty: its host name up to the first dot, in lower case ("" when the
// host name cannot be read).
func DefaultFleetName() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	h, _, _ = strings.Cut(h, ".")
	return strings.ToLower(h)
}

// fleet checks the fleet section, when there is one (a section without
// servers is a mistake, not a way to turn the fleet off: leave it out);
// pw is fleet.password_file as readPasswordFile read it.
func (v *validator) fleet(f Fleet, pw passwordFile) {
	n := v.pos["fleet"]
	if n == nil || n.Tag == "!!null" {
		if v.fleetAdmin {
			v.bad("fleet", "the fleet administrator's file needs a fleet section: the servers, name: %s and the administrator's credentials", FleetAdminName)
		}
		return // no section, or "fleet:" alone: no fleet
	}
	if !f.Enabled() {
		v.badNear("fleet.servers", "fleet", "want at least one server URL (nats://host:4222 or tls://host:4222) in a fleet section")
	}
	for i, s := range f.Servers {
		if msg := checkServerURL(s); msg != "" {
			v.bad(keyIndex("fleet.servers", i), "%s, got %q", msg, s)
		}
	}
	v.fleetName(f)
	v.fleetCredentials(f, pw)
	v.fleetTLS(f.TLS)
	if k := f.Correlate.Hosts; k != 0 && (k < 2 || k > 1000) {
		v.bad("fleet.correlate.hosts", "want 0 (off) or 2 to 1000 hosts, got %d", k)
	}
	v.fleetCounters(f)
	if w := time.Duration(f.Correlate.Window); w != 0 && (w < time.Second || w > maxTimeout) {
		v.bad("fleet.correlate.window", "want a duration from 1s to 365d, got %s", f.Correlate.Window)
	}
	if m := time.Duration(f.MaxTimeout); m != 0 && (m < time.Second || m > maxTimeout) {
		v.bad("fleet.max_timeout", "want a duration from 1s to 365d, got %s", f.MaxTimeout)
	}
	if h := f.HostShare; h < 0 || h > 0.75 {
		v.bad("fleet.host_share", "want a part of block.set_size above 0 and at most 0.75 (a quarter is kept for local detection), got %g", h)
	}
	v.fleetHosts(f.Hosts)
	v.fleetDomains(f)
}

// fleetName checks fleet.name: a NATS subject token, and FleetAdminName
// in the administrator's file and nowhere else (the records under that
// name are the administrator's, which every host trusts).
func (v *validator) fleetName(f Fleet) {
	switch {
	case v.fleetAdmin && f.Name != FleetAdminName:
		v.badNear("fleet.name", "fleet", "the fleet administrator's file needs name: %s (the identity whose records every host trusts), got %q", FleetAdminName, f.Name)
	case f.Name == FleetAdminName && !v.fleetAdmin:
		v.bad("fleet.name", "%q is reserved for the fleet's administrator (portsentry-nft fleet --config ADMIN.yaml); give this host a name of its own", f.Name)
	case f.Name != "" && !ValidFleetName(f.Name):
		v.bad("fleet.name", "want 1-64 letters, digits, '-' or '_' (one NATS subject token), got %q", f.Name)
	case f.Name == "" && f.Enabled() && !ValidFleetName(DefaultFleetName()):
		v.badNear("fleet.name", "fleet", "the host name %q is not a valid fleet name (1-64 letters, digits, '-' or '_'); set fleet.name", DefaultFleetName())
	case f.Name == "" && f.Enabled() && DefaultFleetName() == FleetAdminName:
		v.badNear("fleet.name", "fleet", "the host name %q is reserved for the fleet's administrator; set fleet.name", FleetAdminName)
	}
}

// fleetCounters checks fleet.correlate.counters: none, or from
// MinFleetCounters to MaxFleetCounters distinct host names.
func (v *validator) fleetCounters(f Fleet) {
	cs := f.Correlate.Counters
	const key = "fleet.correlate.counters"
	if n := len(cs); n > 0 && (n < MinFleetCounters || n > MaxFleetCounters) {
		v.bad(key, "want none (every host counts) or %d to %d host names (a majority of them must agree, so no single one suffices), got %d",
			MinFleetCounters, MaxFleetCounters, n)
	}
	for i, c := range cs {
		switch {
		case c == f.Name && f.Correlate.Hosts == 0 && v.pos["fleet.correlate.hosts"] != nil:
			v.bad(keyIndex(key, i), "%q, this host, counts the sightings for the others: it needs fleet.correlate.hosts (2 to 1000), got 0", c)
		case !ValidFleetName(c) || c == FleetAdminName:
			v.bad(keyIndex(key, i), "want a host's fleet name (1-64 letters, digits, '-' or '_'; not %s), got %q", FleetAdminName, c)
		case slices.Contains(cs[:i], c):
			v.bad(keyIndex(key, i), "%q is listed twice", c)
		}
	}
}

// fleetHosts checks fleet.hosts: addresses and CIDRs without host bits, at
// most MaxFleetHosts (the entries beyond are not read).
func (v *validator) fleetHosts(hosts []string) {
	if len(hosts) > MaxFleetHosts {
		v.badNear(keyIndex("fleet.hosts", MaxFleetHosts), "fleet.hosts", "want at most %d fleet hosts (addresses or CIDRs; list a fleet's subnet as one CIDR), got %d",
			MaxFleetHosts, len(hosts))
		hosts = hosts[:MaxFleetHosts]
	}
	prefixList("fleet.hosts", hosts, v.bad)
}

// fleetCredentials checks that at most one kind of credentials is given,
// a password (once: inline or in a file) with its user, and absolute paths.
func (v *validator) fleetCredentials(f Fleet, pw passwordFile) {
	password := f.Password != "" || f.PasswordFile != ""
	var kinds []string
	if f.Credentials != "" {
		kinds = append(kinds, "fleet.credentials")
	}
	if f.User != "" || password {
		k := "fleet.user"
		if f.User == "" {
			k = passwordKey(f)
		}
		kinds = append(kinds, k)
	}
	if f.NKey != "" {
		kinds = append(kinds, "fleet.nkey")
	}
	if len(kinds) > 1 {
		v.bad(kinds[1], "use one kind of credentials: credentials (a .creds file), user and password, or nkey (a seed file); %s is given too", kinds[0])
	}
	switch {
	case f.User != "" && !password:
		v.badNear("fleet.password", "fleet.user", "user %q needs a password (fleet.password_file, or fleet.password)", f.User)
	case f.User == "" && password:
		v.bad(passwordKey(f), "a password needs fleet.user")
	}
	if f.Password != "" && f.PasswordFile != "" {
		line := 0
		if n := v.pos["fleet.password"]; n != nil {
			line = n.Line
		}
		v.bad("fleet.password_file", "the password is given twice: fleet.password (line %d) and fleet.password_file; keep one (the file is better: chmod 0600 it)", line)
	}
	v.absPath("fleet.credentials", f.Credentials)
	v.absPath("fleet.nkey", f.NKey)
	v.absPath("fleet.password_file", f.PasswordFile)
	if pw.err != nil && f.Password == "" {
		v.bad("fleet.password_file", "%v", pw.err)
	}
}

// passwordKey is the key that gives the password: fleet.password_file
// when only the file is named, else fleet.password.
func passwordKey(f Fleet) string {
	if f.PasswordFile != "" && f.Password == "" {
		return "fleet.password_file"
	}
	return "fleet.password"
}

// fleetTLS checks the TLS files: absolute paths, a certificate with its key.
func (v *validator) fleetTLS(t FleetTLS) {
	v.absPath("fleet.tls.ca", t.CA)
	v.absPath("fleet.tls.cert", t.Cert)
	v.absPath("fleet.tls.key", t.Key)
	switch {
	case t.Cert != "" && t.Key == "":
		v.badNear("fleet.tls.key", "fleet.tls.cert", "a client certificate needs its key (fleet.tls.key)")
	case t.Cert == "" && t.Key != "":
		v.bad("fleet.tls.key", "a key needs its client certificate (fleet.tls.cert)")
	}
}

// absPath checks an optional file path.
func (v *validator) absPath(key, path string) {
	if path != "" && !strings.HasPrefix(path, "/") {
		v.bad(key, "want an absolute path, got %q", path)
	}
}

// checkServerURL returns what is wrong with a fleet server URL, or "".
func checkServerURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case err == nil && u.Scheme != "nats" && u.Scheme != "tls" || err != nil && !strings.Contains(s, "://"):
		return "want the scheme nats:// or tls:// (nats://host:4222)"
	case err != nil || u.Host == "" || u.Opaque != "":
		return "want a URL such as nats://host:4222"
	case u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "":
		return "want no path, query or fragment"
	case u.User != nil:
		return "want no credentials in the URL (use fleet.user and fleet.password, fleet.credentials or fleet.nkey)"
	case u.Port() != "" && !validPort(u.Port()):
		return "want a port from 1 to 65535"
	}
	return ""
}

func validPort(s string) bool {
	_, err := parsePort(s)
	return err == nil && !strings.HasPrefix(s, "+")
}

func keyIndex(key string, i int) string { return fmt.Sprintf("%s[%d]", key, i) }

// deriveFleet fills the fleet's defaults, when the section is present,
// and the password read from fleet.password_file (pw): set tells whether
// the file gives a key.
func (c *Config) deriveFleet(pw passwordFile, set func(key string) bool) {
	f := &c.Fleet
	if !f.Enabled() {
		return
	}
	if f.Name == "" {
		f.Name = DefaultFleetName()
	}
	if f.PasswordFile != "" {
		f.Password = pw.secret
	}
	if !set("fleet.correlate.hosts") {
		f.Correlate.Hosts = DefaultFleetCorrelateHosts
	}
	if f.Correlate.Window == 0 {
		f.Correlate.Window = Duration(DefaultFleetCorrelateWindow)
	}
	if f.MaxTimeout == 0 {
		f.MaxTimeout = Duration(DefaultFleetMaxTimeout)
	}
	if f.HostShare == 0 {
		f.HostShare = DefaultFleetHostShare
	}
	f.HostPrefixes = dedupPrefixes(prefixList("fleet.hosts", f.Hosts, discard))
}
