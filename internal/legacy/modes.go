package legacy

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// Modes is how PortSentry 1.2 was started: one process per protocol, each
// with its mode flag. TCP is "tcp", "stcp", "atcp" or "" (not run); UDP is
// "udp", "sudp", "audp" or "".
type Modes struct {
	TCP, UDP string
}

func (m Modes) String() string {
	var s []string
	if m.TCP != "" {
		s = append(s, "-"+m.TCP)
	}
	if m.UDP != "" {
		s = append(s, "-"+m.UDP)
	}
	if len(s) == 0 {
		return "no mode"
	}
	return strings.Join(s, " ")
}

// DefaultModes is what Import assumes without --mode or --defaults: classic
// TCP and UDP, the modes Debian's package configures on a fresh install.
var DefaultModes = Modes{TCP: "tcp", UDP: "udp"}

// ParseModes reads --mode values: tcp, stcp, atcp, udp, sudp, audp, each
// possibly written with PortSentry's leading dash, repeated or
// comma-separated ("atcp,sudp"). A protocol left out is not monitored.
func ParseModes(values []string) (Modes, error) {
	var m Modes
	for _, v := range values {
		for w := range strings.SplitSeq(v, ",") {
			w = strings.TrimLeft(strings.ToLower(strings.TrimSpace(w)), "-")
			if w == "" {
				continue
			}
			slot, name := &m.TCP, "TCP"
			switch w {
			case "tcp", "stcp", "atcp":
			case "udp", "sudp", "audp":
				slot, name = &m.UDP, "UDP"
			default:
				return Modes{}, fmt.Errorf("unknown mode %q (want tcp, stcp, atcp, udp, sudp or audp)", w)
			}
			if *slot != "" && *slot != w {
				return Modes{}, fmt.Errorf("two %s modes, %s and %s: PortSentry runs one mode per protocol", name, *slot, w)
			}
			*slot = w
		}
	}
	if m.TCP == "" && m.UDP == "" {
		return Modes{}, fmt.Errorf("no mode given (want tcp, stcp, atcp, udp, sudp or audp)")
	}
	return m, nil
}

// ParseDefaults reads the TCP_MODE and UDP_MODE lines of a Debian
// /etc/default/portsentry (a shell fragment the init script sources:
// TCP_MODE="tcp", UDP_MODE="udp"). An empty or missing mode means the init
// script did not start that protocol. Problems come back as Diags.
func ParseDefaults(name string, data []byte) (Modes, Diags, error) {
	d := &diags{file: name}
	var m Modes
	seen := map[string]int{}
	if bytes.IndexByte(data, 0) >= 0 {
		d.errorf(0, "binary data (a NUL byte): not a /etc/default/portsentry file")
		return Modes{}, nil, d.list
	}
	for n, raw := range bytes.Split(data, []byte{'\n'}) {
		num := n + 1
		text := strings.TrimSpace(strings.TrimSuffix(string(raw), "\r"))
		text = strings.TrimPrefix(text, "export ")
		key, val, ok := strings.Cut(text, "=")
		if !ok || (key != "TCP_MODE" && key != "UDP_MODE") {
			continue // comments and other variables
		}
		toks, use, err := lexShell(val)
		if err != nil || use != "" || len(toks) > 1 {
			d.errorf(num, "%s: cannot read the value %s (want e.g. %s=\"tcp\")", key, quoteShort(val), key)
			continue
		}
		v := ""
		if len(toks) == 1 {
			v = strings.ToLower(toks[0].word)
		}
		if prev, dup := seen[key]; dup {
			d.warnf(num, "%s is also set on line %d; the shell keeps this later one", key, prev)
		}
		seen[key] = num
		valid := []string{"tcp", "stcp", "atcp"}
		slot := &m.TCP
		if key == "UDP_MODE" {
			valid, slot = []string{"udp", "sudp", "audp"}, &m.UDP
		}
		if v != "" && !slices.Contains(valid, v) {
			d.errorf(num, "%s=%q is not a valid mode (want %s, or empty for none); the init script refuses it", key, v, strings.Join(valid, ", "))
			continue
		}
		*slot = v
	}
	if d.list.HasErrors() {
		return Modes{}, nil, d.list
	}
	if m.TCP == "" && m.UDP == "" {
		d.errorf(0, "neither TCP_MODE nor UDP_MODE is set: the init script does not start PortSentry, so there is nothing to import")
		return Modes{}, nil, d.list
	}
	return m, d.list, nil
}
