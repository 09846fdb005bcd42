package legacy

import (
	"fmt"
	"slices"
	"strings"
)

// Dialect is one of the PortSentry families whose conf files Parse reads.
type Dialect int

// Dialects. DialectAuto asks Parse to tell them apart from the keys present.
const (
	DialectAuto    Dialect = iota
	Dialect12              // Psionic PortSentry 1.2, as Debian ships it
	Dialect20Beta          // Psionic PortSentry 2.0 beta
	DialectRevived         // the revived PortSentry 2.x (github.com/portsentry/portsentry, 2023 on)
)

// Dialects lists the concrete dialects in --dialect order.
var Dialects = []Dialect{Dialect12, Dialect20Beta, DialectRevived}

// String is the dialect's --dialect name: auto, 1.2, 2.0-beta or 2.x.
func (d Dialect) String() string {
	switch d {
	case Dialect12:
		return "1.2"
	case Dialect20Beta:
		return "2.0-beta"
	case DialectRevived:
		return "2.x"
	}
	return "auto"
}

// Title names the dialect for people, as in the header of the YAML.
func (d Dialect) Title() string {
	switch d {
	case Dialect12:
		return "PortSentry 1.2"
	case Dialect20Beta:
		return "PortSentry 2.0 beta"
	case DialectRevived:
		return "revived PortSentry 2.x"
	}
	return "auto-detected dialect"
}

// ParseDialect reads a --dialect value: auto, 1.2, 2.0-beta or 2.x (a few
// spellings of each are accepted).
func ParseDialect(s string) (Dialect, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return DialectAuto, nil
	case "1.2", "1", "psionic", "debian", "classic":
		return Dialect12, nil
	case "2.0-beta", "2.0beta", "2.0b", "beta", "2.0":
		return Dialect20Beta, nil
	case "2.x", "2", "revived", "2023":
		return DialectRevived, nil
	}
	return DialectAuto, fmt.Errorf("unknown dialect %q (want auto, 1.2, 2.0-beta or 2.x)", s)
}

// Set implements flag.Value.
func (d *Dialect) Set(s string) error {
	v, err := ParseDialect(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// The keys each dialect reads from its conf file. Facts from the three code
// bases: 1.2 reads its keys with ConfigTokenRetrieve and ignores the rest;
// the 2.0 beta adds INTERFACE and INTERFACE_ADDRESS and has no modes (so no
// ADVANCED_* keys); the revived 2.x knows the 14 keys below and exits on any
// other. SYSLOG_FACILITY and SYSLOG_LEVEL are compile-time settings
// (portsentry_config.h) in both Psionic versions; admins still write them
// into the conf, so we read them there and say so.
var (
	keys12 = []string{
		"TCP_PORTS", "UDP_PORTS",
		"ADVANCED_PORTS_TCP", "ADVANCED_PORTS_UDP", "ADVANCED_EXCLUDE_TCP", "ADVANCED_EXCLUDE_UDP",
		"IGNORE_FILE", "HISTORY_FILE", "BLOCKED_FILE", "RESOLVE_HOST",
		"BLOCK_TCP", "BLOCK_UDP", "KILL_ROUTE", "KILL_HOSTS_DENY", "KILL_RUN_CMD", "KILL_RUN_CMD_FIRST",
		"SCAN_TRIGGER", "PORT_BANNER",
		"SYSLOG_FACILITY", "SYSLOG_LEVEL",
	}
	keys20Beta = []string{
		"INTERFACE", "INTERFACE_ADDRESS",
		"TCP_PORTS", "UDP_PORTS",
		"IGNORE_FILE", "HISTORY_FILE", "BLOCKED_FILE", "RESOLVE_HOST",
		"BLOCK_TCP", "BLOCK_UDP", "KILL_ROUTE", "KILL_HOSTS_DENY", "KILL_RUN_CMD", "KILL_RUN_CMD_FIRST",
		"SCAN_TRIGGER", "PORT_BANNER",
		"SYSLOG_FACILITY", "SYSLOG_LEVEL",
	}
	keysRevived = []string{
		"TCP_PORTS", "UDP_PORTS",
		"IGNORE_FILE", "HISTORY_FILE", "BLOCKED_FILE", "RESOLVE_HOST",
		"BLOCK_TCP", "BLOCK_UDP", "KILL_ROUTE", "KILL_HOSTS_DENY", "KILL_RUN_CMD", "KILL_RUN_CMD_FIRST",
		"SCAN_TRIGGER", "PORT_BANNER",
	}
)

// Keys returns the conf keys the dialect reads, in conf-file order.
func (d Dialect) Keys() []string {
	switch d {
	case Dialect12:
		return keys12
	case Dialect20Beta:
		return keys20Beta
	case DialectRevived:
		return keysRevived
	}
	return nil
}

// knows reports whether the dialect reads key.
func (d Dialect) knows(key string) bool { return slices.Contains(d.Keys(), key) }

// whyUnknown explains, for a key some other dialect knows, why this one
// does not; "" for keys no dialect knows.
func (d Dialect) whyUnknown(key string) string {
	switch {
	case strings.HasPrefix(key, "ADVANCED_") && Dialect12.knows(key):
		if d == DialectRevived {
			return "PortSentry 2.x dropped advanced mode (-atcp/-audp) and its ADVANCED_* keys"
		}
		return "PortSentry 2.0 beta has no advanced mode (-atcp/-audp)"
	case key == "INTERFACE" || key == "INTERFACE_ADDRESS":
		return "only the PortSentry 2.0 beta reads it"
	case key == "SYSLOG_FACILITY" || key == "SYSLOG_LEVEL":
		return "PortSentry 2.x has no such setting (it logs to stdout or syslog, chosen on its command line)"
	}
	return ""
}

// winnerIsFirst reports which of two lines setting the same key the dialect uses.
func (d Dialect) winnerIsFirst() bool { return d == Dialect12 }

// dupRule explains the dialect's rule for duplicate keys.
func (d Dialect) dupRule() string {
	switch d {
	case Dialect12:
		return "PortSentry 1.2 reads the first line that sets a key"
	case Dialect20Beta:
		return "the PortSentry 2.0 beta article's own startup log shows the later lines in force"
	default:
		return "PortSentry 2.x keeps the last line that sets a key"
	}
}

// dupShort is dupRule for a YAML comment.
func (d Dialect) dupShort() string {
	switch d {
	case Dialect12:
		return "PortSentry 1.2 reads the first"
	case Dialect20Beta:
		return "the later one is in force in the 2.0 beta"
	default:
		return "PortSentry 2.x keeps the last"
	}
}

// modeWords lists what the dialect substituted for $MODE$.
func (d Dialect) modeWords() string {
	switch d {
	case Dialect12:
		return "tcp, udp, stcp, sudp, atcp or audp"
	case Dialect20Beta:
		return "tcp or udp"
	default:
		return "stealth or connect"
	}
}
