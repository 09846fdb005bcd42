package config

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/scanner"
)

// neverBlock checks never_block: addresses and CIDRs without host bits.
func (v *validator) neverBlock(list []string) {
	prefixList("never_block", list, v.bad)
}

// block checks the nftables blocking settings: timeouts, set size,
// repeat-offender growth and rate.
func (v *validator) block(b Block) {
	if b.RepeatFactor < 1 || b.RepeatFactor > 100 {
		v.bad("block.repeat_factor", "want 1 (off) to 100, got %d", b.RepeatFactor)
	}
	if time.Duration(b.MaxTimeout) > maxTimeout || b.MaxTimeout <= 0 {
		v.bad("block.max_timeout", "want a duration up to 365d, got %s", b.MaxTimeout)
	}
	if b.MaxPerSecond < 1 {
		v.bad("block.max_per_second", "want 1 or more, got %d", b.MaxPerSecond)
	}
	if b.Timeout <= 0 || time.Duration(b.Timeout) > maxTimeout {
		v.bad("block.timeout", "want a duration from 1s to 365d, got %s", b.Timeout)
	} else if time.Duration(b.Timeout) < time.Second {
		v.bad("block.timeout", "want at least 1s, got %s", b.Timeout)
	}
	if b.SetSize < 1 || b.SetSize > 1<<24 {
		v.bad("block.set_size", "want 1 to %d, got %d", 1<<24, b.SetSize)
	}
	if w := time.Duration(b.PeerWindow); w != 0 && (w < time.Second || w > 24*time.Hour) {
		v.bad("block.peer_window", "want 0 (off) or a duration from 1s to 24h, got %s", b.PeerWindow)
	}
	for _, tool := range slices.Sorted(maps.Keys(b.TimeoutByTool)) {
		key := "block.timeout_by_tool." + tool
		if scanner.Parse(tool) == scanner.Unknown && tool != scanner.Unknown.String() {
			v.bad(key, "want a tool's name (%s), got %q", toolNames(), tool)
		}
		if d := time.Duration(b.TimeoutByTool[tool]); d < time.Second || b.TimeoutByTool[tool] > b.MaxTimeout {
			v.bad(key, "want a duration from 1s to block.max_timeout (%s), got %s", b.MaxTimeout, b.TimeoutByTool[tool])
		}
	}
}

// toolNames lists the names block.timeout_by_tool takes.
func toolNames() string {
	var names []string
	for _, t := range scanner.Tools() {
		names = append(names, t.String())
	}
	return strings.Join(names, ", ")
}

// hostsDeny checks hosts_deny, when a path turns it on.
func (v *validator) hostsDeny(h HostsDeny) {
	if h.Path == "" {
		return
	}
	if !filepath.IsAbs(h.Path) {
		v.bad("hosts_deny.path", "want an absolute path, got %q", h.Path)
	}
	if !strings.Contains(h.Template, "$TARGET$") {
		v.bad("hosts_deny.template", "must contain $TARGET$, got %q", h.Template)
	} else if strings.ContainsAny(h.Template, "\n\r") {
		v.bad("hosts_deny.template", "must be one line, got %q", h.Template)
	}
}

// commands checks each command: an absolute program, a timeout not below 0.
func (v *validator) commands(cmds []Command) {
	for i, cmd := range cmds {
		k := fmt.Sprintf("commands[%d]", i)
		switch {
		case len(cmd.Argv) == 0:
			v.bad(k+".argv", "want the program and its arguments")
		case !filepath.IsAbs(cmd.Argv[0]):
			v.bad(k+".argv[0]", "want an absolute path to the program, got %q", cmd.Argv[0])
		}
		if cmd.Timeout < 0 {
			v.bad(k+".timeout", "want a positive duration")
		}
	}
}
