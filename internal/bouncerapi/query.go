package bouncerapi

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// The fields every decision served here has (CrowdSec's Decision model,
// pkg/models/localapi_swagger.yaml): this host's blocks are bans of one
// address.
const (
	Origin = "portsentry-nft"
	Type   = "ban"
	Scope  = "Ip"
)

// filter is what a query asks of the decisions, beyond who asks.
type filter struct {
	// scopes, origins: accepted values, lower case; nil accepts any.
	scopes, origins []string
	// containing: the scenario contains one of them (nil: any);
	// notContaining: none of them.
	containing, notContaining []string
	// The /v1/decisions lookups.
	typ      string // "": any
	value    netip.Addr
	hasValue bool
	within   netip.Prefix // valid: the address lies in it (range, contains=false)
	none     bool         // the query asks for what is never here (a range, another scope)
}

// maxList bounds a comma-separated parameter.
const maxList = 64

// list splits a comma-separated parameter, lower case, blanks trimmed.
func list(key, s string) ([]string, error) {
	parts := strings.Split(s, ",")
	if len(parts) > maxList {
		return nil, fmt.Errorf("%s: more than %d values", key, maxList)
	}
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		if p = strings.ToLower(strings.TrimSpace(p)); p != "" {
			out = append(out, p)
		}
	}
	return out, nil
}

// one is the single value of key in q ("" when absent); a key given twice
// is an error.
func one(q url.Values, key string) (string, bool, error) {
	vs, ok := q[key]
	if !ok {
		return "", false, nil
	}
	if len(vs) != 1 {
		return "", true, fmt.Errorf("%s given %d times", key, len(vs))
	}
	return vs[0], true, nil
}

// parseStream reads /v1/decisions/stream's query: startup, and the
// filters (scopes, origins, scenarios_containing,
// scenarios_not_containing). Other parameters are ignored.
func parseStream(q url.Values) (startup bool, f filter, err error) {
	if s, ok, err := one(q, "startup"); err != nil {
		return false, f, err
	} else if ok {
		if startup, err = strconv.ParseBool(s); err != nil {
			return false, f, fmt.Errorf("startup: want true or false, got %q", s)
		}
	}
	err = f.lists(q)
	return startup, f, err
}

// lists reads the comma-separated filters both endpoints take.
func (f *filter) lists(q url.Values) error {
	for _, p := range []struct {
		key string
		to  *[]string
	}{{"scopes", &f.scopes}, {"origins", &f.origins}, {"scenarios_containing", &f.containing}, {"scenarios_not_containing", &f.notContaining}} {
		s, ok, err := one(q, p.key)
		if err != nil {
			return err
		}
		if ok {
			if *p.to, err = list(p.key, s); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseDecisions reads /v1/decisions' query: scope and value, ip, range
// with contains (default true: decisions that contain the range; false:
// those within it), type, and the lists of parseStream.
func parseDecisions(q url.Values) (filter, error) {
	var f filter
	if err := f.lists(q); err != nil {
		return f, err
	}
	var vals [6]string
	for i, key := range []string{"scope", "value", "ip", "range", "contains", "type"} {
		s, _, err := one(q, key)
		if err != nil {
			return f, err
		}
		vals[i] = s
	}
	scope, value, ip, rng, contains, typ := vals[0], vals[1], vals[2], vals[3], vals[4], vals[5]
	f.typ = strings.ToLower(typ)
	if scope != "" {
		f.scopes = []string{strings.ToLower(scope)}
	}
	switch {
	case ip != "":
		value = ip
		f.scopes = []string{"ip"}
	case rng != "":
		return f, f.rangeQuery(rng, contains)
	case scope != "" && !strings.EqualFold(scope, "ip"):
		f.none = true // another scope (a range, a user name): none here
		return f, nil
	}
	if value != "" {
		a, err := netip.ParseAddr(value)
		if err != nil {
			return f, fmt.Errorf("value: want an IP address, got %q", value)
		}
		f.value, f.hasValue = a.Unmap(), true
	}
	return f, nil
}

// rangeQuery reads range= with contains=: a decision of this host (one
// address) contains a range only when the range is that one address;
// with contains=false, decisions within the range are asked.
func (f *filter) rangeQuery(rng, contains string) error {
	p, perr := netip.ParsePrefix(rng)
	if perr != nil {
		return fmt.Errorf("range: want a CIDR, got %q", rng)
	}
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-bitsUnmapped(p)).Masked()
	in := true
	if contains != "" {
		c, cerr := strconv.ParseBool(contains)
		if cerr != nil {
			return fmt.Errorf("contains: want true or false, got %q", contains)
		}
		in = c
	}
	switch {
	case !in:
		f.within = p
	case p.IsSingleIP():
		f.value, f.hasValue = p.Addr(), true
	default:
		f.none = true
	}
	return nil
}

// bitsUnmapped is how many bits a prefix of an IPv4-mapped address
// loses when unmapped.
func bitsUnmapped(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return min(96, p.Bits())
	}
	return 0
}

// match reports whether d passes the filter.
func (f *filter) match(d *dec) bool {
	switch {
	case f.none:
		return false
	case f.typ != "" && f.typ != Type:
		return false
	case f.scopes != nil && !contains(f.scopes, "ip"):
		return false
	case f.origins != nil && !contains(f.origins, Origin):
		return false
	case f.hasValue && d.addr != f.value:
		return false
	case f.within.IsValid() && !f.within.Contains(d.addr):
		return false
	}
	sc := strings.ToLower(d.scenario)
	if f.containing != nil && !anyIn(sc, f.containing) {
		return false
	}
	return !anyIn(sc, f.notContaining)
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func anyIn(s string, words []string) bool {
	for _, w := range words {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}
