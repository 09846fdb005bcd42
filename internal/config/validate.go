package config

import (
	"cmp"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"
)

// Syslog facilities and levels accepted in logging.facility / logging.level.
var (
	Facilities = []string{"auth", "authpriv", "daemon", "kern", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7", "security", "syslog", "user"}
	Levels     = []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}
)

// maxTimeout keeps element timeouts well inside what nftables accepts.
const maxTimeout = 365 * 24 * time.Hour

func (c *Config) validate(d *decoder) Errors {
	var errs Errors
	bad := func(key, format string, args ...any) {
		e := &Error{File: d.file, Key: key, Msg: fmt.Sprintf(format, args...)}
		if n := d.pos[key]; n != nil {
			e.Line, e.Column = n.Line, n.Column
		}
		errs = append(errs, e)
	}
	// Errors sort by position; one inside an ignore file sorts at the
	// position of its ignore_files entry (its own line is in another file).
	sortAt := map[*Error][2]int{}

	// interfaces and addresses
	if len(c.Interfaces) == 0 {
		bad("interfaces", "want [auto] or at least one interface name")
	}
	for i, name := range c.Interfaces {
		k := fmt.Sprintf("interfaces[%d]", i)
		switch {
		case name == "auto" && len(c.Interfaces) > 1:
			bad(k, `"auto" means every interface; list names or auto, not both`)
		case name == "auto":
			c.AllInterfaces = true
		case !validIfname(name):
			bad(k, "%q is not a valid interface name (1-15 characters, no '/', ':', spaces, quotes or control characters)", name)
		case slices.Contains(c.Interfaces[:i], name):
			bad(k, "%q is listed twice", name)
		}
	}
	c.WatchAddrs = nil
	for i, s := range c.Addresses {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			bad(fmt.Sprintf("addresses[%d]", i), "%q is not an IPv4 or IPv6 address", s)
			continue
		}
		c.WatchAddrs = append(c.WatchAddrs, a.Unmap())
	}

	// ports and responses
	for _, p := range []struct {
		name   string
		proto  *Protocol
		preset func(string) []uint16
	}{
		{"tcp", &c.TCP, func(n string) []uint16 { return Presets[n].TCP }},
		{"udp", &c.UDP, func(n string) []uint16 { return Presets[n].UDP }},
	} {
		pr := p.proto
		if pr.Advanced.Below != 0 && (pr.Advanced.Below < 2 || pr.Advanced.Below > 65536) {
			bad(p.name+".advanced.below", "want 0 (off) or a port bound from 2 to 65536, got %d", pr.Advanced.Below)
		}
		pr.Monitored = expand(pr.Ports, pr.Advanced, p.preset)
		switch pr.Response {
		case ResponseLog, ResponseBlock:
		case ResponseCommand:
			if len(c.Commands) == 0 {
				bad(p.name+".response", "response command needs at least one entry in commands")
			}
		default:
			bad(p.name+".response", "want log, block or command, got %q", pr.Response)
		}
	}
	if len(c.TCP.Monitored) == 0 && len(c.UDP.Monitored) == 0 {
		bad("tcp.ports", "no TCP or UDP port to monitor")
	}

	// detection
	if c.Detect.ScanTrigger < 0 {
		bad("detect.scan_trigger", "want 0 or more, got %d", c.Detect.ScanTrigger)
	}
	if c.Detect.Window < 0 {
		bad("detect.window", "want a positive duration")
	}
	if c.Detect.MaxSources < 1 {
		bad("detect.max_sources", "want 1 or more, got %d", c.Detect.MaxSources)
	}

	// ignore list
	c.IgnorePrefixes = prefixList("ignore", c.Ignore, bad)
	for i, f := range c.IgnoreFiles {
		k := fmt.Sprintf("ignore_files[%d]", i)
		if !filepath.IsAbs(f) && d.file != EmbeddedName {
			// Relative to the config file, not to the daemon's working directory (/ under systemd).
			f = filepath.Join(filepath.Dir(d.file), f)
		}
		data, err := os.ReadFile(f)
		if err != nil {
			bad(k, "%v", err)
			continue
		}
		ps, warns, err := ParseIgnoreFile(f, data)
		c.Warnings = append(c.Warnings, warns...)
		if err != nil {
			if es, ok := err.(Errors); ok {
				var at [2]int
				if n := d.pos[k]; n != nil {
					at = [2]int{n.Line, n.Column}
				}
				for _, e := range es {
					sortAt[e] = at
				}
				errs = append(errs, es...)
			} else {
				bad(k, "%v", err)
			}
			continue
		}
		c.IgnorePrefixes = append(c.IgnorePrefixes, ps...)
	}
	c.IgnorePrefixes = dedupPrefixes(c.IgnorePrefixes)

	// blocking and actions
	c.validateBlocking(bad)
	if c.Block.Timeout <= 0 || time.Duration(c.Block.Timeout) > maxTimeout {
		bad("block.timeout", "want a duration from 1s to 365d, got %s", c.Block.Timeout)
	} else if time.Duration(c.Block.Timeout) < time.Second {
		bad("block.timeout", "want at least 1s, got %s", c.Block.Timeout)
	}
	if c.Block.SetSize < 1 || c.Block.SetSize > 1<<24 {
		bad("block.set_size", "want 1 to %d, got %d", 1<<24, c.Block.SetSize)
	}
	if c.HostsDeny.Path != "" {
		if !filepath.IsAbs(c.HostsDeny.Path) {
			bad("hosts_deny.path", "want an absolute path, got %q", c.HostsDeny.Path)
		}
		if !strings.Contains(c.HostsDeny.Template, "$TARGET$") {
			bad("hosts_deny.template", "must contain $TARGET$, got %q", c.HostsDeny.Template)
		} else if strings.ContainsAny(c.HostsDeny.Template, "\n\r") {
			bad("hosts_deny.template", "must be one line, got %q", c.HostsDeny.Template)
		}
	}
	for i := range c.Commands {
		cmd := &c.Commands[i]
		k := fmt.Sprintf("commands[%d]", i)
		switch {
		case len(cmd.Argv) == 0:
			bad(k+".argv", "want the program and its arguments")
		case !filepath.IsAbs(cmd.Argv[0]):
			bad(k+".argv[0]", "want an absolute path to the program, got %q", cmd.Argv[0])
		}
		if cmd.Timeout < 0 {
			bad(k+".timeout", "want a positive duration")
		}
		if cmd.Timeout == 0 {
			cmd.Timeout = Duration(30 * time.Second)
		}
	}
	for _, f := range []struct {
		key string
		p   *string
	}{{"state.dir", &c.State.Dir}, {"state.history_file", &c.State.HistoryFile}, {"state.blocked_file", &c.State.BlockedFile}} {
		// state.dir is required: the history and blocked files default to it.
		if (*f.p != "" || f.key == "state.dir") && !filepath.IsAbs(*f.p) {
			bad(f.key, "want an absolute path, got %q", *f.p)
		}
	}
	if c.State.HistoryFile == "" {
		c.State.HistoryFile = filepath.Join(c.State.Dir, "portsentry.history")
	}
	if c.State.BlockedFile == "" {
		c.State.BlockedFile = filepath.Join(c.State.Dir, "portsentry.blocked")
	}

	// capture and logging
	if c.Capture.Mode != "nflog" && c.Capture.Mode != "nfqueue" {
		bad("capture.mode", "want nflog or nfqueue, got %q", c.Capture.Mode)
	}
	if c.Capture.Queue < 0 || c.Capture.Queue > 65535 {
		bad("capture.queue", "want an NFQUEUE number 0-65535, got %d", c.Capture.Queue)
	}
	if c.Capture.Group < 0 || c.Capture.Group > 65535 {
		bad("capture.group", "want an NFLOG group 0-65535, got %d", c.Capture.Group)
	}
	if c.Capture.QueueThreshold < 1 || c.Capture.QueueThreshold > 1000 {
		bad("capture.queue_threshold", "want 1-1000, got %d", c.Capture.QueueThreshold)
	}
	switch c.Logging.Target {
	case "stderr", "syslog":
	default:
		bad("logging.target", "want stderr or syslog, got %q", c.Logging.Target)
	}
	if !slices.Contains(Facilities, c.Logging.Facility) {
		bad("logging.facility", "want one of %s, got %q", strings.Join(Facilities, ", "), c.Logging.Facility)
	}
	if !slices.Contains(Levels, c.Logging.Level) {
		bad("logging.level", "want one of %s, got %q", strings.Join(Levels, ", "), c.Logging.Level)
	}
	at := func(e *Error) [2]int {
		if p, ok := sortAt[e]; ok {
			return p
		}
		return [2]int{e.Line, e.Column}
	}
	slices.SortStableFunc(errs, func(a, b *Error) int {
		pa, pb := at(a), at(b)
		return cmp.Or(cmp.Compare(pa[0], pb[0]), cmp.Compare(pa[1], pb[1]))
	})
	return errs
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

// expand turns a port list plus advanced mode into sorted unique ports.
func expand(items PortList, adv Advanced, preset func(string) []uint16) []uint16 {
	var set [65536]bool
	for _, it := range items {
		if it.Preset != "" {
			for _, p := range preset(it.Preset) {
				set[p] = true
			}
			continue
		}
		for p := int(it.Lo); p <= int(it.Hi); p++ {
			set[p] = true
		}
	}
	if adv.Below > 1 {
		excluded := expand(adv.Exclude, Advanced{}, preset)
		for p := 1; p < adv.Below && p < 65536; p++ {
			if _, ex := slices.BinarySearch(excluded, uint16(p)); !ex {
				set[p] = true
			}
		}
	}
	var out []uint16
	for p := 1; p < 65536; p++ {
		if set[p] {
			out = append(out, uint16(p))
		}
	}
	return out
}

func dedupPrefixes(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(ps)
}

// prefixList parses a YAML list of addresses and CIDRs (ignore,
// never_block); a CIDR with host bits set is an error that names the
// masked one.
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
