package follow

import (
	"context"
	"net/netip"
	"strconv"
	"sync/atomic"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/hostsdeny"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
)

// HostsDeny writes a block's line to hosts.deny (hosts_deny.path, with its
// template) and removes it when the block is lifted. It belongs in
// ledger.Config.Followers: the line goes into the record before it is
// journaled, so a lift after a restart removes the same line.
type HostsDeny struct {
	Settings func() *config.Config
	Log      *alert.Log
	// Errors counts the lines that could not be written or removed.
	Errors atomic.Uint64
}

// Blocked writes e's line and keeps it in the record.
func (h *HostsDeny) Blocked(_ context.Context, e *ledger.Entry) {
	cfg := h.Settings()
	if cfg.HostsDeny.Path == "" {
		return
	}
	p := e.Evidence.Probe
	line := hostsdeny.Line(cfg.HostsDeny.Template, WrapTarget(e.Decision.Addr), strconv.Itoa(int(p.DstPort)), Mode(p.Proto))
	if _, err := (&hostsdeny.File{Path: cfg.HostsDeny.Path}).Add(line); err != nil {
		h.Errors.Add(1)
		h.Log.Errorf("could not write %s for host %s: %v", cfg.HostsDeny.Path, e.Decision.Addr, err)
		return
	}
	e.Record.HostsDeny = line
}

// Lifted removes the line the record kept.
func (h *HostsDeny) Lifted(_ context.Context, l ledger.Lift) {
	cfg := h.Settings()
	if !l.Held || l.Record.HostsDeny == "" || cfg.HostsDeny.Path == "" {
		return
	}
	if _, err := (&hostsdeny.File{Path: cfg.HostsDeny.Path}).Remove(l.Record.HostsDeny); err != nil {
		h.Errors.Add(1)
		h.Log.Errorf("could not remove %s from %s: %v", l.Addr, cfg.HostsDeny.Path, err)
	}
}

// WrapTarget writes an address as TCP wrappers expects it ([v6]).
func WrapTarget(a netip.Addr) string {
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}

// Mode is $MODE$ for a probe of protocol p.
func Mode(p packet.Proto) string {
	if p == packet.UDP {
		return "udp"
	}
	return "tcp"
}
