package bouncerapi

import (
	"net/netip"
	"net/url"
	"testing"
	"time"
)

// FuzzQuery: any query string parses without a panic, and a filter it
// gives matches a decision or not, never panics either.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{
		"", "startup=true", "startup=false&scopes=ip,range", "startup=1&origins=crowdsec,cscli,portsentry-nft",
		"scenarios_containing=syn&scenarios_not_containing=udp", "ip=10.0.0.1", "ip=::ffff:1.2.3.4",
		"scope=ip&value=fd00::1", "scope=range&value=10.0.0.0/8", "range=10.0.0.0/8&contains=false",
		"range=::ffff:10.0.0.0/104", "range=1.2.3.4/32", "type=ban", "scopes=,", "startup=true&startup=true", "%zz",
	} {
		f.Add(s)
	}
	d := &dec{id: 1, addr: netip.MustParseAddr("10.0.0.1"), expires: time.Now().Add(time.Hour), scenario: "portsentry-nft/tcp-syn-scan"}
	d6 := &dec{id: 2, addr: netip.MustParseAddr("fd00::1"), expires: time.Now().Add(time.Hour), scenario: "portsentry-nft/manual", remote: true}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := url.ParseQuery(s)
		if err != nil {
			return
		}
		if _, fl, err := parseStream(q); err == nil {
			fl.match(d)
			fl.match(d6)
		}
		if fl, err := parseDecisions(q); err == nil {
			m := fl.match(d)
			if fl.hasValue && fl.value != d.addr && m {
				t.Errorf("%q: a decision of %s matches a query for %s", s, d.addr, fl.value)
			}
			fl.match(d6)
		}
	})
}
