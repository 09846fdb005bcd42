package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written as Go writes one ("90s", "1h30m")
// plus a day unit ("30d", "1d12h"), since block timeouts run to days.
type Duration time.Duration

// ParseDuration parses Go duration syntax with an added "d" (24h) unit.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	in := s // errors quote what was written, not what is left after the days
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.ParseUint(s[:i], 10, 16)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q (use e.g. 90s, 10m, 1h, 30d)", in)
		}
		days = time.Duration(n) * 24 * time.Hour
		s = s[i+1:]
		if s == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use e.g. 90s, 10m, 1h, 30d)", in)
	}
	return days + d, nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a duration such as 1h or 30d")
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration back in the form ParseDuration reads.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// String formats like time.Duration but with whole days as "Nd".
func (d Duration) String() string {
	t := time.Duration(d)
	if t >= 24*time.Hour && t%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", t/(24*time.Hour))
	}
	return t.String()
}

// PortItem is one entry of a port list: a single port (Lo == Hi), an
// inclusive range, or a preset name.
type PortItem struct {
	Lo, Hi uint16
	Preset string
}

func (p PortItem) String() string {
	switch {
	case p.Preset != "":
		return p.Preset
	case p.Lo == p.Hi:
		return strconv.Itoa(int(p.Lo))
	default:
		return fmt.Sprintf("%d-%d", p.Lo, p.Hi)
	}
}

// PortList is a YAML port list: a sequence of ports, ranges ("1-1024") and
// preset names, or one such scalar. Commas inside a scalar are accepted too
// ("1,11,15"), as PortSentry wrote them.
type PortList []PortItem

// ParsePortItem parses "80", "1-1024" or a preset name.
func ParsePortItem(s string) (PortItem, error) {
	s = strings.TrimSpace(s)
	if _, ok := Presets[s]; ok {
		return PortItem{Preset: s}, nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := parsePort(lo)
	if err != nil {
		return PortItem{}, err
	}
	if !isRange {
		return PortItem{Lo: a, Hi: a}, nil
	}
	b, err := parsePort(hi)
	if err != nil {
		return PortItem{}, err
	}
	if b < a {
		return PortItem{}, fmt.Errorf("range %q ends before it starts", s)
	}
	return PortItem{Lo: a, Hi: b}, nil
}

func parsePort(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.Atoi(s)
	if err != nil {
		if p := nearest(s, PresetNames); p != "" {
			return 0, fmt.Errorf("%q is not a port, range or preset; did you mean %q?", s, p)
		}
		return 0, fmt.Errorf("%q is not a port, range (1-1024) or preset (%s)", s, strings.Join(PresetNames, ", "))
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %d is outside 1-65535", n)
	}
	return uint16(n), nil
}

// UnmarshalYAML implements yaml.Unmarshaler. Errors carry the position of
// the offending item.
func (pl *PortList) UnmarshalYAML(n *yaml.Node) error {
	var items []*yaml.Node
	switch n.Kind {
	case yaml.ScalarNode:
		items = []*yaml.Node{n}
	case yaml.SequenceNode:
		items = n.Content
	default:
		return fmt.Errorf("want a list of ports, ranges and presets")
	}
	out := PortList{}
	for i, it := range items {
		if it.Kind != yaml.ScalarNode {
			return &itemError{i, it, fmt.Errorf("want a port, range or preset")}
		}
		for _, tok := range strings.Split(it.Value, ",") {
			p, err := ParsePortItem(tok)
			if err != nil {
				return &itemError{i, it, err}
			}
			out = append(out, p)
		}
	}
	*pl = out
	return nil
}

// MarshalYAML writes ports as numbers and ranges/presets as strings.
func (pl PortList) MarshalYAML() (any, error) {
	out := make([]any, len(pl))
	for i, p := range pl {
		if p.Preset == "" && p.Lo == p.Hi {
			out[i] = int(p.Lo)
		} else {
			out[i] = p.String()
		}
	}
	return out, nil
}

// itemError locates an error at one element of a sequence.
type itemError struct {
	index int
	node  *yaml.Node
	err   error
}

func (e *itemError) Error() string { return e.err.Error() }
