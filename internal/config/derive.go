package config

import (
	"net/netip"
	"path/filepath"
	"slices"
	"time"
)

// derive fills the fields the rest of the program reads (the ones without
// a yaml tag) and the defaults that depend on other settings. It runs once
// validate has found nothing wrong, so it has no errors of its own; files
// are the ignore files as readIgnoreFiles read them, pw the password file;
// set tells whether the file gives a key (where 0 is a value of its own,
// not the default).
func (c *Config) derive(files []ignoreFile, pw passwordFile, set func(key string) bool) {
	c.AllInterfaces = slices.Contains(c.Interfaces, "auto")
	for _, s := range c.Addresses {
		a, _ := parseWatchAddr(s)
		c.WatchAddrs = append(c.WatchAddrs, a)
	}
	c.TCP.Monitored = monitored(c.TCP, tcpPreset)
	c.UDP.Monitored = monitored(c.UDP, udpPreset)
	c.deriveIgnore(files)
	c.NeverBlockPrefixes = prefixList("never_block", c.NeverBlock, discard)
	// A cap below the first timeout means no growth.
	c.Block.MaxTimeout = max(c.Block.MaxTimeout, c.Block.Timeout)
	for i := range c.Commands {
		if c.Commands[i].Timeout == 0 {
			c.Commands[i].Timeout = Duration(30 * time.Second)
		}
	}
	if c.State.HistoryFile == "" {
		c.State.HistoryFile = filepath.Join(c.State.Dir, "portsentry.history")
	}
	if c.State.BlockedFile == "" {
		c.State.BlockedFile = filepath.Join(c.State.Dir, "portsentry.blocked")
	}
	c.deriveFleet(pw, set)
}

// deriveIgnore sets IgnorePrefixes from ignore and the ignore files, and
// keeps the files' warnings.
func (c *Config) deriveIgnore(files []ignoreFile) {
	ps := prefixList("ignore", c.Ignore, discard)
	for _, f := range files {
		c.Warnings = append(c.Warnings, f.warnings...)
		ps = append(ps, f.prefixes...)
	}
	c.IgnorePrefixes = dedupPrefixes(ps)
}

// discard drops the errors of a list that validate has already checked.
func discard(string, string, ...any) {}

func tcpPreset(name string) []uint16 { return Presets[name].TCP }
func udpPreset(name string) []uint16 { return Presets[name].UDP }

// monitored is the sorted, unique port list of p (Protocol.Monitored).
func monitored(p Protocol, preset func(string) []uint16) []uint16 {
	return expand(p.Ports, p.Advanced, preset)
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
