package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/metrics"
	"sort"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/control"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
)

// The daemon is the control socket's Handler.
var _ control.Handler = (*Daemon)(nil)

// Status reports version, configuration and counters.
func (d *Daemon) Status() control.Status {
	cfg := d.cfgp.Load()
	c := &d.Counters
	s := control.Status{
		Version:     d.opts.Version,
		PID:         os.Getpid(),
		StartedAt:   d.start,
		Uptime:      time.Since(d.start).Round(time.Second).String(),
		ConfigFile:  cfg.File,
		CaptureMode: cfg.Capture.Mode,
		NFLOGGroup:  cfg.Capture.Group,
		SetCap:      cfg.Block.SetSize,
		Counters: map[string]uint64{
			"packets":             c.Capture.Packets.Load(),
			"malformed":           c.Malformed.Load(),
			"not_probes":          c.NotProbes.Load(),
			"nflog_lost":          c.Capture.Lost.Load(),
			"nflog_enobufs":       c.Capture.Overruns.Load(),
			"already_blocked":     c.AlreadyBlock.Load(),
			"protected":           c.Protected.Load(),
			"rate_limited":        c.RateLimited.Load(),
			"dropped_triggers":    c.Dropped.Load(),
			"restored":            c.Restored.Load(),
			"in_use_probes":       c.InUse.Load(),
			"reinstalls":          c.Reinstalls.Load(),
			"alerts_suppressed":   d.alerts.suppressed.Load(),
			"sources_tracked":     uint64(d.trackedSources.Load()),
			"blocks":              d.resp.Stats.Blocks.Load(),
			"block_failures":      d.resp.Stats.BlockFailures.Load(),
			"set_full":            d.resp.Stats.SetFull.Load(),
			"expired":             d.resp.Stats.Expired.Load(),
			"unblocked":           d.resp.Stats.Unblocked.Load(),
			"commands_run":        d.resp.Stats.CommandsRun.Load(),
			"command_failures":    d.resp.Stats.CommandFailures.Load(),
			"hosts_deny_failures": d.resp.Stats.HostsDenyErrors.Load(),
			"goroutines":          uint64(runtime.NumGoroutine()),
			"open_files":          openFiles(),
			"heap_bytes":          heapBytes(),
		},
		Probes:    map[string]uint64{},
		SetSizes:  map[string]int{},
		Protected: d.guard.List(),
	}
	for k := packet.KindSYN; int(k) < packet.NumKinds; k++ {
		s.Probes[k.String()] = c.Probes[k].Load()
	}
	if v4, v6, err := nft.CountBlocked(d.opts.NetNS); err == nil {
		s.SetSizes[nft.SetBlocked], s.SetSizes[nft.SetBlocked6] = v4, v6
	}
	return s
}

func openFiles() uint64 {
	fds, _ := os.ReadDir("/proc/self/fd")
	return uint64(len(fds))
}

// heapBytes is the Go heap that was live at the end of the last garbage
// collection: what a leak would grow (the heap in use at any moment also
// holds garbage not yet collected, up to GOGC percent more).
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// List returns every blocked address, from the kernel (the source of
// truth) joined with what the state knows of it.
func (d *Daemon) List(ctx context.Context) ([]control.Block, error) {
	els, err := nft.Blocked(d.opts.NetNS)
	if err != nil {
		return nil, err
	}
	out := make([]control.Block, 0, len(els))
	for a, left := range els {
		b := control.Block{Addr: a.String(), Set: nft.SetBlocked, Remaining: left.Round(time.Second).String(), RemainingSeconds: left.Seconds()}
		if a.Is6() {
			b.Set = nft.SetBlocked6
		}
		if st, ok := d.store.Get(a); ok {
			b.Timeout = st.Timeout.String()
			b.ScanType, b.Proto, b.Ports = st.Kind, st.Proto, st.Ports
			b.FirstSeen, b.LastSeen, b.TimesBlocked, b.Host = st.First, st.Last, st.Times, st.Host
		} else {
			b.ScanType = "unknown (added outside portsentry-nft)"
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RemainingSeconds < out[j].RemainingSeconds })
	return out, nil
}

// Block blocks addr by hand; timeout "" means block.timeout.
func (d *Daemon) Block(ctx context.Context, addr, timeout string) error {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return fmt.Errorf("%q is not an IPv4 or IPv6 address", addr)
	}
	a = a.Unmap()
	cfg := d.cfgp.Load()
	t := cfg.BlockTimeout()
	if timeout != "" {
		if t, err = config.ParseDuration(timeout); err != nil || t < time.Second {
			return fmt.Errorf("timeout %q: want a duration of at least 1s, such as 90s, 1h or 7d", timeout)
		}
	}
	if why, ok := d.guard.Protected(a); ok {
		return fmt.Errorf("%s is protected (%s) and is never blocked", a, why)
	}
	return d.resp.Manual(ctx, a, t)
}

// Unblock lifts the block of addr (element, hosts.deny line, record) and
// lets the detector start over for it.
func (d *Daemon) Unblock(ctx context.Context, addr string) error {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return fmt.Errorf("%q is not an IPv4 or IPv6 address", addr)
	}
	a = a.Unmap()
	if err := d.resp.Unblock(ctx, a); err != nil {
		return err
	}
	select {
	case d.forget <- a:
	default:
	}
	return nil
}
