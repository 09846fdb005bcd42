package config

import "regexp"

// A JetStream domain name: one subject token the servers accept
// (nats-server refuses spaces, dots and wildcards in a domain).
var domainRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// fleetDomains checks fleet.domain and fleet.local_domain: each a domain
// name, and a local domain only with the hub's domain, different from it
// (the host would watch the buckets it writes: set neither, or only
// fleet.domain).
func (v *validator) fleetDomains(f Fleet) {
	for _, k := range []struct{ key, d string }{{"fleet.domain", f.Domain}, {"fleet.local_domain", f.LocalDomain}} {
		if k.d != "" && !domainRe.MatchString(k.d) {
			v.bad(k.key, "want a JetStream domain name (letters, digits, '-', '_'), got %q", k.d)
		}
	}
	switch {
	case f.LocalDomain != "" && f.Domain == "":
		v.bad("fleet.local_domain", "needs fleet.domain, the hub's domain that holds the buckets")
	case f.LocalDomain != "" && f.LocalDomain == f.Domain:
		v.bad("fleet.local_domain", "is fleet.domain (%q): the site's leaf needs a domain of its own", f.Domain)
	}
}
