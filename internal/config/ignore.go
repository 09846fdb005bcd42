package config

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"strings"
)

// ParsePrefix parses an ignore entry: an IPv4 or IPv6 address (a host) or
// a CIDR. It returns the prefix as written; the caller decides what to do
// when host bits are set (p != p.Masked()).
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR", s)
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%q: write IPv4-mapped addresses as plain IPv4", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR", s)
	}
	if a.Zone() != "" || a.Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q: write a plain address without zone or IPv4 mapping", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParseIgnoreFile reads a PortSentry ignore file: one address or CIDR per
// line, IPv4 or IPv6, "#" comments and blank lines allowed, CRLF tolerated.
// A CIDR with host bits set is masked and reported in warnings; anything
// else that is not an address (a hostname, say) is an error with its line.
func ParseIgnoreFile(name string, data []byte) (prefixes []netip.Prefix, warnings []*Error, err error) {
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, nil, &Error{File: name, Msg: "not a text file (contains NUL bytes)"}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	var errs Errors
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		p, perr := ParsePrefix(text)
		if perr != nil {
			errs = append(errs, &Error{File: name, Line: line, Column: 1, Msg: perr.Error()})
			continue
		}
		if m := p.Masked(); m != p {
			warnings = append(warnings, &Error{File: name, Line: line, Column: 1,
				Msg: fmt.Sprintf("%s has host bits set; using %s", p, m)})
			p = m
		}
		prefixes = append(prefixes, p)
	}
	if serr := sc.Err(); serr != nil {
		errs = append(errs, &Error{File: name, Line: line + 1, Column: 1, Msg: serr.Error()})
	}
	if len(errs) > 0 {
		return nil, warnings, errs
	}
	return prefixes, warnings, nil
}
