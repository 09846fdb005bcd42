package config

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"
)

// Syslog facilities and levels accepted in logging.facility / logging.level.
var (
	Facilities = []string{"auth", "authpriv", "daemon", "kern", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7", "security", "syslog", "user"}
	Levels     = []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}
)

// maxTimeout keeps element timeouts well inside what nftables accepts.
const maxTimeout = 365 * 24 * time.Hour

// validate checks c, as decoded by d, with the ignore files and the
// password files and the API keys file already read (readIgnoreFiles, readPasswordFile, readKeysFile), and returns every problem sorted by position. It
// changes nothing in c: derive fills the derived fields once c is valid.
//
// Each section has its own check. Problems sort by position, so their
// order matters only where two share one: lists that alias one anchor
// (interfaces, addresses, ignore, ignore_files, never_block, a command's
// argv) and tcp and udp aliasing one mapping. The checks run in the order
// that keeps those ties as they have always come out.
func (c *Config) validate(d *decoder, files []ignoreFile, pw passwordFile, cs crowdsecFiles, admin bool) Errors {
	v := &validator{file: d.file, pos: d.pos, sortAt: map[*Error][2]int{}, fleetAdmin: admin}
	v.interfaces(c.Interfaces)
	v.addresses(c.Addresses)
	v.protocol("tcp", c.TCP, len(c.Commands))
	v.protocol("udp", c.UDP, len(c.Commands))
	v.anyPort(c.TCP, c.UDP)
	v.detect(c.Detect)
	v.ignore(c.Ignore, files)
	v.neverBlock(c.NeverBlock)
	v.block(c.Block)
	v.control(c.Control)
	v.metrics(c.Metrics)
	v.hostsDeny(c.HostsDeny)
	v.commands(c.Commands)
	v.state(c.State)
	v.capture(c.Capture)
	v.logging(c.Logging)
	v.fleet(c.Fleet, pw)
	v.crowdsec(c.CrowdSec, cs)
	return v.sorted()
}

// validator collects the problems of one file, each at the position of its
// key.
type validator struct {
	file string
	pos  map[string]*yaml.Node
	errs Errors
	// sortAt is where an error inside an ignore file sorts: at the position
	// of its ignore_files entry (its own line is in another file).
	sortAt map[*Error][2]int
	// fleetAdmin: the file is the fleet administrator's (LoadFleetAdmin).
	fleetAdmin bool
}

// bad records a problem at key.
func (v *validator) bad(key, format string, args ...any) {
	e := &Error{File: v.file, Key: key, Msg: fmt.Sprintf(format, args...)}
	if n := v.pos[key]; n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	v.errs = append(v.errs, e)
}

// badNear records a problem at key, located at the position of near when
// key itself is not in the file (a missing key of a section).
func (v *validator) badNear(key, near, format string, args ...any) {
	v.bad(key, format, args...)
	e := v.errs[len(v.errs)-1]
	if e.Line == 0 {
		if n := v.pos[near]; n != nil {
			e.Line, e.Column = n.Line, n.Column
		}
	}
}

// badIn records problems located in another file, sorted at key.
func (v *validator) badIn(key string, es Errors) {
	var at [2]int
	if n := v.pos[key]; n != nil {
		at = [2]int{n.Line, n.Column}
	}
	for _, e := range es {
		v.sortAt[e] = at
	}
	v.errs = append(v.errs, es...)
}

// sorted returns the problems by position, in the order found at equal
// positions.
func (v *validator) sorted() Errors {
	at := func(e *Error) [2]int {
		if p, ok := v.sortAt[e]; ok {
			return p
		}
		return [2]int{e.Line, e.Column}
	}
	slices.SortStableFunc(v.errs, func(a, b *Error) int {
		pa, pb := at(a), at(b)
		return cmp.Or(cmp.Compare(pa[0], pb[0]), cmp.Compare(pa[1], pb[1]))
	})
	return v.errs
}

// interfaces checks interfaces: [auto] or distinct valid names.
func (v *validator) interfaces(names []string) {
	if len(names) == 0 {
		v.bad("interfaces", "want [auto] or at least one interface name")
	}
	for i, name := range names {
		k := fmt.Sprintf("interfaces[%d]", i)
		switch {
		case name == "auto" && len(names) > 1:
			v.bad(k, `"auto" means every interface; list names or auto, not both`)
		case name == "auto":
		case !validIfname(name):
			v.bad(k, "%q is not a valid interface name (1-15 characters, no '/', ':', spaces, quotes or control characters)", name)
		case slices.Contains(names[:i], name):
			v.bad(k, "%q is listed twice", name)
		}
	}
}

// addresses checks addresses: plain IPv4 or IPv6 addresses, no zone.
func (v *validator) addresses(addrs []string) {
	for i, s := range addrs {
		if _, ok := parseWatchAddr(s); !ok {
			v.bad(fmt.Sprintf("addresses[%d]", i), "%q is not an IPv4 or IPv6 address", s)
		}
	}
}

// parseWatchAddr parses one entry of addresses.
func parseWatchAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// protocol checks tcp or udp (name); commands is how many commands there
// are for response command.
func (v *validator) protocol(name string, p Protocol, commands int) {
	if p.Advanced.Below != 0 && (p.Advanced.Below < 2 || p.Advanced.Below > 65536) {
		v.bad(name+".advanced.below", "want 0 (off) or a port bound from 2 to 65536, got %d", p.Advanced.Below)
	}
	switch p.Response {
	case ResponseLog, ResponseBlock:
	case ResponseCommand:
		if commands == 0 {
			v.bad(name+".response", "response command needs at least one entry in commands")
		}
	default:
		v.bad(name+".response", "want log, block or command, got %q", p.Response)
	}
	if name == "udp" && p.Verified {
		v.bad("udp.verified", "verified mode is for TCP only (UDP has no handshake)")
	}
}

// anyPort checks that tcp and udp together monitor at least one port.
func (v *validator) anyPort(tcp, udp Protocol) {
	if len(monitored(tcp, tcpPreset)) == 0 && len(monitored(udp, udpPreset)) == 0 {
		v.bad("tcp.ports", "no TCP or UDP port to monitor")
	}
}

// detect checks the detector's settings.
func (v *validator) detect(d Detect) {
	if d.ScanTrigger < 0 {
		v.bad("detect.scan_trigger", "want 0 or more, got %d", d.ScanTrigger)
	}
	if d.Window < 0 {
		v.bad("detect.window", "want a positive duration")
	}
	if d.MaxSources < 1 {
		v.bad("detect.max_sources", "want 1 or more, got %d", d.MaxSources)
	}
	if n := d.Prefix6Sources; n != 0 && (n < 2 || n > MaxPrefix6Sources) {
		v.bad("detect.prefix6_sources", "want 0 (off) or 2 to %d, got %d", MaxPrefix6Sources, n)
	}
}

// MaxPrefix6Sources bounds detect.prefix6_sources: the detector keeps that
// many addresses for each /64 it follows.
const MaxPrefix6Sources = 16

// ignore checks the ignore list and the ignore files, as readIgnoreFiles
// read them.
func (v *validator) ignore(list []string, files []ignoreFile) {
	prefixList("ignore", list, v.bad)
	for _, f := range files {
		if f.err == nil {
			continue
		}
		if es, ok := f.err.(Errors); ok {
			v.badIn(f.key, es)
		} else {
			v.bad(f.key, "%v", f.err)
		}
	}
}

// validIfname reports whether the kernel accepts name as an interface name
// (dev_valid_name) and nft(8) can write it between double quotes.
func validIfname(name string) bool {
	if len(name) == 0 || len(name) > 15 || name == "." || name == ".." {
		return false
	}
	for _, r := range name {
		if r <= ' ' || r == 0x7f || r == '/' || r == ':' || r == '"' || r == '\\' || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

// prefixList parses a YAML list of addresses and CIDRs (ignore,
// never_block); a CIDR with host bits set is an error that names the
// masked one. bad records the errors (discard, once the list is valid).
func prefixList(key string, list []string, bad func(key, format string, args ...any)) []netip.Prefix {
	var out []netip.Prefix
	for i, s := range list {
		k := fmt.Sprintf("%s[%d]", key, i)
		p, err := ParsePrefix(s)
		if err != nil {
			bad(k, "%v", err)
			continue
		}
		if m := p.Masked(); m != p {
			bad(k, "%s has host bits set; did you mean %s?", p, m)
			continue
		}
		out = append(out, p)
	}
	return out
}
