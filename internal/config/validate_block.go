package config

import (
	"net"
	"path/filepath"
	"time"
)

// validateBlocking checks the repeat-offender, rate and never_block
// settings; bad records an error at a key.
func (c *Config) validateBlocking(bad func(key, format string, args ...any)) {
	if c.Block.RepeatFactor < 1 || c.Block.RepeatFactor > 100 {
		bad("block.repeat_factor", "want 1 (off) to 100, got %d", c.Block.RepeatFactor)
	}
	if time.Duration(c.Block.MaxTimeout) > maxTimeout || c.Block.MaxTimeout <= 0 {
		bad("block.max_timeout", "want a duration up to 365d, got %s", c.Block.MaxTimeout)
	}
	// A cap below the first timeout means no growth.
	c.Block.MaxTimeout = max(c.Block.MaxTimeout, c.Block.Timeout)
	if c.Block.MaxPerSecond < 1 {
		bad("block.max_per_second", "want 1 or more, got %d", c.Block.MaxPerSecond)
	}
	if c.UDP.Verified {
		bad("udp.verified", "verified mode is for TCP only (UDP has no handshake)")
	}
	if !filepath.IsAbs(c.Control.Socket) {
		bad("control.socket", "want an absolute path, got %q", c.Control.Socket)
	}
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			bad("metrics.listen", "want host:port such as 127.0.0.1:9187, got %q", c.Metrics.Listen)
		}
	}
	c.NeverBlockPrefixes = prefixList("never_block", c.NeverBlock, bad)
}
