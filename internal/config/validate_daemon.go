package config

import (
	"net"
	"path/filepath"
	"slices"
	"strings"
)

// control checks the control socket path.
func (v *validator) control(c Control) {
	if !filepath.IsAbs(c.Socket) {
		v.bad("control.socket", "want an absolute path, got %q", c.Socket)
	}
}

// metrics checks the Prometheus listen address, when there is one.
func (v *validator) metrics(m Metrics) {
	if m.Listen == "" {
		return
	}
	if _, _, err := net.SplitHostPort(m.Listen); err != nil {
		v.bad("metrics.listen", "want host:port such as 127.0.0.1:9187, got %q", m.Listen)
	}
}

// state checks the state paths: dir is required, since the history and
// blocked files default to it; they are checked when given.
func (v *validator) state(s State) {
	for _, f := range []struct{ key, path string }{
		{"state.dir", s.Dir}, {"state.history_file", s.HistoryFile}, {"state.blocked_file", s.BlockedFile},
	} {
		if (f.path != "" || f.key == "state.dir") && !filepath.IsAbs(f.path) {
			v.bad(f.key, "want an absolute path, got %q", f.path)
		}
	}
}

// capture checks the capture mode and its NFLOG group or NFQUEUE number.
func (v *validator) capture(c Capture) {
	if c.Mode != "nflog" && c.Mode != "nfqueue" {
		v.bad("capture.mode", "want nflog or nfqueue, got %q", c.Mode)
	}
	if c.Queue < 0 || c.Queue > 65535 {
		v.bad("capture.queue", "want an NFQUEUE number 0-65535, got %d", c.Queue)
	}
	if c.Group < 0 || c.Group > 65535 {
		v.bad("capture.group", "want an NFLOG group 0-65535, got %d", c.Group)
	}
	if c.QueueThreshold < 1 || c.QueueThreshold > 1000 {
		v.bad("capture.queue_threshold", "want 1-1000, got %d", c.QueueThreshold)
	}
	if n := c.FloodRate; n != 0 && (n < 1000 || n > 10000000) {
		v.bad("capture.flood_rate", "want 0 (no bound) or 1000-10000000 probes a second, got %d", n)
	}
}

// logging checks the log target, syslog facility and level.
func (v *validator) logging(l Logging) {
	switch l.Target {
	case "stderr", "syslog":
	default:
		v.bad("logging.target", "want stderr or syslog, got %q", l.Target)
	}
	if !slices.Contains(Facilities, l.Facility) {
		v.bad("logging.facility", "want one of %s, got %q", strings.Join(Facilities, ", "), l.Facility)
	}
	if !slices.Contains(Levels, l.Level) {
		v.bad("logging.level", "want one of %s, got %q", strings.Join(Levels, ", "), l.Level)
	}
}
