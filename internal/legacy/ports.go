package legacy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// parsePorts reads a PortSentry port list: ports separated by commas and,
// when ranges is true (the revived 2.x), inclusive ranges such as 1-1024.
// Empty items are skipped as strtok did; white space around items is
// tolerated as atoi did. The error names the offending item.
func parsePorts(value string, ranges bool) ([]config.PortItem, error) {
	var out []config.PortItem
	for tok := range strings.SplitSeq(value, ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(tok, "-")
		if isRange && !ranges {
			return nil, fmt.Errorf("%q is a port range, which only PortSentry 2.x understands (1.2 read it as port %s); use --dialect 2.x if this file is for 2.x", tok, leadingDigits(tok))
		}
		a, err := parsePort(tok, lo)
		if err != nil {
			return nil, err
		}
		if !isRange {
			out = append(out, config.PortItem{Lo: a, Hi: a})
			continue
		}
		b, err := parsePort(tok, hi)
		if err != nil {
			return nil, err
		}
		if b < a {
			return nil, fmt.Errorf("range %q ends before it starts", tok)
		}
		out = append(out, config.PortItem{Lo: a, Hi: b})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no ports in %q", value)
	}
	return out, nil
}

func parsePort(tok, s string) (uint16, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a port number", tok)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %s in %q is outside 1-65535", s, tok)
	}
	return uint16(n), nil
}

func leadingDigits(s string) string {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return "0"
	}
	return s[:i]
}

// portSet expands items into a sorted, duplicate-free list.
func portSet(items []config.PortItem) []uint16 {
	var seen [65536]bool
	for _, it := range items {
		for p := int(it.Lo); p <= int(it.Hi); p++ {
			seen[p] = true
		}
	}
	var out []uint16
	for p, ok := range seen {
		if ok {
			out = append(out, uint16(p))
		}
	}
	return out
}

// matchPreset returns the name of the preset whose TCP (tcp true) or UDP
// list equals items as a set, or "".
func matchPreset(items []config.PortItem, tcp bool) string {
	got := portSet(items)
	for _, name := range config.PresetNames {
		p := config.Presets[name]
		want := p.UDP
		if tcp {
			want = p.TCP
		}
		w := slices.Clone(want)
		slices.Sort(w)
		if slices.Equal(got, slices.Compact(w)) {
			return name
		}
	}
	return ""
}
