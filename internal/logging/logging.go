// Package logging builds the daemon's slog.Logger: plain lines on stderr
// (journald adds time and priority under systemd) or syslog with the
// configured facility and level. Messages keep PortSentry's words
// ("attackalert: ...", "adminalert: ..."), so the log filters people
// already have (fail2ban, logcheck) match them.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// New returns a logger for cfg writing to stderr or syslog, and a function
// that closes it.
func New(cfg config.Logging, stderr io.Writer) (*slog.Logger, func() error, error) {
	if cfg.Target == "syslog" {
		fac := syslog.Priority(slices.Index(facilityNames, cfg.Facility)) << 3
		w, err := syslog.New(fac|syslog.LOG_NOTICE, "portsentry-nft")
		if err != nil {
			return nil, nil, fmt.Errorf("connect to syslog: %w", err)
		}
		return slog.New(&handler{sys: w, level: cfg.Level}), w.Close, nil
	}
	// Under systemd, journald stamps each line; elsewhere we do.
	stamp := os.Getenv("JOURNAL_STREAM") == ""
	return slog.New(&handler{w: stderr, stamp: stamp, mu: &sync.Mutex{}}), func() error { return nil }, nil
}

// facilityNames in syslog(3) numeric order; "security" is an old alias of auth.
var facilityNames = []string{"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "", "", "", "", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"}

func init() {
	for _, f := range config.Facilities {
		if f != "security" && !slices.Contains(facilityNames, f) {
			panic("logging: facility " + f + " unknown")
		}
	}
}

type handler struct {
	mu    *sync.Mutex
	w     io.Writer
	stamp bool
	sys   *syslog.Writer
	level string // syslog level of informational messages
	attrs []slog.Attr
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	write := func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	}
	for _, a := range h.attrs {
		write(a)
	}
	r.Attrs(write)
	line := b.String()
	if h.sys != nil {
		switch {
		case r.Level >= slog.LevelError:
			return h.sys.Err(line)
		case r.Level >= slog.LevelWarn:
			return h.sys.Warning(line)
		}
		return h.info(line)
	}
	if h.stamp {
		line = r.Time.Format(time.RFC3339) + " " + line
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, line+"\n")
	return err
}

func (h *handler) info(line string) error {
	switch h.level {
	case "emerg":
		return h.sys.Emerg(line)
	case "alert":
		return h.sys.Alert(line)
	case "crit":
		return h.sys.Crit(line)
	case "err":
		return h.sys.Err(line)
	case "warning":
		return h.sys.Warning(line)
	case "info":
		return h.sys.Info(line)
	case "debug":
		return h.sys.Debug(line)
	}
	return h.sys.Notice(line)
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append(slices.Clip(h.attrs), as...)
	return &h2
}

func (h *handler) WithGroup(string) slog.Handler { return h }
