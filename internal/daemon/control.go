package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/control"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/guard"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/metrics"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
	"github.com/portsentry-nft/portsentry-nft/internal/scanner"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// The daemon is the control socket's Handler.
var _ control.Handler = (*Daemon)(nil)

// snapshot reads the counters and the ledger's count: what status and a
// metrics scrape report, without a look at the kernel.
func (d *Daemon) snapshot() metrics.Snapshot {
	p, l := d.pipe, &d.ledger.Stats
	s := metrics.Snapshot{
		Start:  d.start,
		Blocks: map[string]uint64{},
		Refused: map[string]uint64{
			"protected":    p.Protected.Load(),
			"rate_limited": p.RateLimited.Load(),
			"set_full":     p.SetFull.Load(),
			"queue_full":   l.Dropped.Load(),
			"peer":         p.Peers.Load(),
		},
		Tracked: p.Tracked(),
	}
	s.JournalDurable = d.store.Fault() == nil
	for o, n := range l.Blocks {
		s.Blocks[string(o)] = n.Load()
	}
	// IPv6 /64s (blocked6_64): posted to the ledger, not recorded there.
	s.Blocks["prefix64"] = p.Prefixes.Load()
	if d.fleet != nil {
		f := d.fleet.Client().Stats()
		s.Fleet = &metrics.Fleet{Connected: f.Connected, Outbox: f.OutboxDepth, OutboxDropped: f.OutboxDropped, OutboxExpired: f.OutboxExpired,
			Published: f.Published, Mirrored: f.Mirrored, Lifted: f.Lifted, Refused: f.Refused, Correlated: f.Correlated,
			Reconnects: f.Reconnects, Blocks: f.Blocks, MirrorLag: f.MirrorLag, Live: f.Live, LiveGaps: f.LiveGaps}
	}
	for k := packet.KindSYN; int(k) < packet.NumKinds; k++ {
		proto := "tcp"
		if k == packet.KindUDP {
			proto = "udp"
		}
		s.Probes = append(s.Probes, metrics.Probes{Proto: proto, ScanType: k.String(), N: p.Probes[k].Load()})
	}
	s.Tools = make(map[string]uint64, scanner.NumTools)
	for _, t := range scanner.Tools() {
		s.Tools[t.String()] = p.Tools[t].Load()
	}
	s.Blocked4, s.Blocked6 = d.ledger.Count()
	return s
}

// Status reports version, configuration and counters, and the kernel's
// count of elements (status is asked by a person; a scrape reads snapshot).
func (d *Daemon) Status() control.Status {
	cfg := d.cfgp.Load()
	m := d.snapshot()
	st := control.Status{
		Version:     d.opts.Version,
		PID:         os.Getpid(),
		StartedAt:   d.start,
		Uptime:      time.Since(d.start).Round(time.Second).String(),
		ConfigFile:  cfg.File,
		CaptureMode: cfg.Capture.Mode,
		NFLOGGroup:  cfg.Capture.Group,
		SetCap:      cfg.Block.SetSize,
		Counters:    d.counters(m),
		Probes:      map[string]uint64{},
		Tools:       m.Tools,
		SetSizes:    map[string]int{},
		Protected:   d.guard.List(),
	}
	var blocks uint64
	for o, n := range m.Blocks {
		st.Counters["blocks_"+o] = n
		blocks += n
	}
	st.Counters["blocks"] = blocks
	for _, p := range m.Probes {
		st.Probes[p.ScanType] = p.N
	}
	if v4, v6 := d.ledger.Count(); v4+v6 > nft.CheapDump {
		// The ledger's count: a dump of the sets would take seconds.
		st.SetSizes[nft.SetBlocked], st.SetSizes[nft.SetBlocked6] = v4, v6
	} else if v4, v6, err := nft.CountBlocked(d.opts.NetNS); err == nil {
		st.SetSizes[nft.SetBlocked], st.SetSizes[nft.SetBlocked6] = v4, v6
	}
	if f := m.Fleet; f != nil {
		for k, v := range map[string]uint64{
			"fleet_connected": oneIf(f.Connected), "fleet_reconnects": f.Reconnects, "fleet_outbox": uint64(f.Outbox),
			"fleet_outbox_dropped": f.OutboxDropped, "fleet_outbox_expired": f.OutboxExpired, "fleet_published": f.Published,
			"fleet_mirrored": f.Mirrored, "fleet_lifted": f.Lifted, "fleet_refused": f.Refused, "fleet_correlated": f.Correlated,
			"fleet_blocks": uint64(f.Blocks), "fleet_mirror_lag_us": uint64(f.MirrorLag.Microseconds()),
			"fleet_live_buckets": uint64(f.Live), "fleet_live_gaps": f.LiveGaps,
		} {
			st.Counters[k] = v
		}
	}
	return st
}

// counters are status's counters: the snapshot's, and the process's.
func (d *Daemon) counters(m metrics.Snapshot) map[string]uint64 {
	out := map[string]uint64{
		"protected":        m.Refused["protected"],
		"rate_limited":     m.Refused["rate_limited"],
		"set_full":         m.Refused["set_full"],
		"dropped_triggers": m.Refused["queue_full"],
		"sources_tracked":  uint64(m.Tracked),
		"journal_durable":  oneIf(m.JournalDurable),
		"goroutines":       uint64(runtime.NumGoroutine()),
		"open_files":       openFiles(),
		"heap_bytes":       heapBytes(),
	}
	for _, c := range counters {
		out[c.Status] = c.value(d)
	}
	return out
}

// metricCounters are the counters as the metrics endpoint reads them.
func (d *Daemon) metricCounters() []metrics.Counter {
	out := make([]metrics.Counter, len(counters))
	for i, c := range counters {
		out[i] = metrics.Counter{Name: c.Metric, Help: c.Help, Value: func() uint64 { return c.value(d) }}
	}
	return out
}

func oneIf(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func openFiles() uint64 {
	fds, _ := os.ReadDir("/proc/self/fd")
	return uint64(len(fds))
}

// heapBytes is the Go heap that was live at the end of the last garbage
// collection: what a leak would grow (the heap in use at any moment also
// holds garbage not yet collected, up to GOGC percent more).
func heapBytes() uint64 {
	s := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	rtmetrics.Read(s)
	if s[0].Value.Kind() != rtmetrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// List gives every blocked address: from the kernel joined with what the
// ledger knows of it, soonest expiry first; past nft.CheapDump blocks,
// from the ledger alone, streamed in no order (a dump of the sets would
// take the kernel most of a minute at 1M, and the whole list would be in
// memory).
func (d *Daemon) List(ctx context.Context, each func(control.Block) error) error {
	if v4, v6 := d.ledger.Count(); v4+v6 > nft.CheapDump {
		now := time.Now()
		err := d.ledger.Walk(now, func(st state.Block) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return each(listed(st.Addr, st.Expires.Sub(now), &st))
		})
		if err != nil {
			return err
		}
		return d.listPrefixes(each)
	}
	els, err := nft.Blocked(d.opts.NetNS)
	if err != nil {
		return err
	}
	out := make([]control.Block, 0, len(els))
	for a, left := range els {
		var known *state.Block
		if st, ok := d.ledger.Get(a); ok {
			known = &st
		}
		out = append(out, listed(a, left, known))
	}
	if err := d.listPrefixes(func(b control.Block) error { out = append(out, b); return nil }); err != nil {
		return err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RemainingSeconds < out[j].RemainingSeconds })
	for _, b := range out {
		if err := each(b); err != nil {
			return err
		}
	}
	return nil
}

// listed is how list shows a's element with left to go, and the ledger's
// record of it (nil: none).
func listed(a netip.Addr, left time.Duration, st *state.Block) control.Block {
	b := control.Block{Addr: a.String(), Set: nft.SetBlocked, Remaining: left.Round(time.Second).String(), RemainingSeconds: left.Seconds()}
	if a.Is6() {
		b.Set = nft.SetBlocked6
	}
	if st == nil {
		b.ScanType = "unknown (added outside portsentry-nft)"
		return b
	}
	b.Timeout = st.Timeout.String()
	b.ScanType, b.Proto, b.Ports = st.Kind, st.Proto, st.Ports
	b.FirstSeen, b.LastSeen, b.TimesBlocked, b.Host = st.First, st.Last, st.Times, st.Host
	b.Origin, b.Tool = string(st.Origin), st.Tool
	return b
}

// listPrefixes gives the /64s of blocked6_64.
func (d *Daemon) listPrefixes(each func(control.Block) error) error {
	prefixes, err := nft.BlockedPrefixes(d.opts.NetNS)
	if err != nil {
		return err
	}
	for p, left := range prefixes {
		err := each(control.Block{Addr: p.String(), Set: nft.SetBlocked64, Remaining: left.Round(time.Second).String(),
			RemainingSeconds: left.Seconds(), ScanType: "IPv6 /64: " + strconv.Itoa(d.cfgp.Load().Detect.Prefix6Sources) + " or more of its addresses probed"})
		if err != nil {
			return err
		}
	}
	return nil
}

// Block blocks addrs by hand, all in one transaction, or none; timeout ""
// means block.timeout. The same decision and ledger as a detected scan:
// the guard rails and the set's capacity hold, and hosts.deny and the
// commands follow.
func (d *Daemon) Block(ctx context.Context, addrs []string, timeout string) (int, error) {
	as, err := parseAddrs(addrs)
	if err != nil {
		return 0, err
	}
	var t time.Duration
	if timeout != "" {
		if t, err = config.ParseDuration(timeout); err != nil {
			return 0, fmt.Errorf("timeout: %w", err)
		}
		if t < time.Second {
			return 0, fmt.Errorf("timeout %q: want a duration of at least 1s, such as 90s, 1h or 7d", timeout)
		}
	}
	now := time.Now()
	reqs := make([]decide.Request, len(as))
	for i, a := range as {
		reqs[i] = decide.Request{Addr: a, Origin: state.OriginManual, Timeout: t, Now: now}
	}
	decs := d.decider.DecideAll(reqs)
	var refused []error
	for _, dec := range decs {
		if dec.Action != decide.Block {
			refused = append(refused, fmt.Errorf("%s refused: %s", dec.Addr, dec))
		}
	}
	if len(refused) > 0 {
		return 0, fmt.Errorf("nothing blocked: %w", errors.Join(refused...))
	}
	ops := make([]ledger.Op, len(decs))
	for i, dec := range decs {
		ops[i] = ledger.Act{Decision: dec, At: now}
	}
	return durable(d.ledger.Apply(ctx, ops...))
}

// Unblock lifts the blocks of addrs, or every block (element, hosts.deny
// line, record), and lets the detector start over for them.
func (d *Daemon) Unblock(ctx context.Context, addrs []string, all bool) (int, error) {
	if all {
		if len(addrs) > 0 {
			return 0, errors.New("unblock: addresses and --all together")
		}
		return durable(d.ledger.Apply(ctx, ledger.UnblockAll{}))
	}
	prefixes, rest, err := parsePrefixes(addrs)
	if err != nil {
		return 0, err
	}
	as, err := parseAddrs(rest)
	if err != nil {
		return 0, err
	}
	return durable(d.ledger.Apply(ctx, ledger.Unblock{Addrs: as, Prefixes: prefixes, Cause: ledger.Unblocked}))
}

// durable passes on what the ledger applied; when it is not on disk
// (ledger.ErrNotDurable) the control socket answers with a warning
// (control.ErrNotDurable) instead of a plain acknowledgement.
func durable(n int, err error) (int, error) {
	if errors.Is(err, ledger.ErrNotDurable) {
		return n, fmt.Errorf("%w (%w)", control.ErrNotDurable, err)
	}
	return n, err
}

// parsePrefixes takes the IPv6 /64s (as blocked6_64 holds them) out of
// ss, and returns the rest.
func parsePrefixes(ss []string) (prefixes []netip.Prefix, rest []string, err error) {
	for _, s := range ss {
		if !strings.Contains(s, "/") {
			rest = append(rest, s)
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil || !nft.IsPrefix64(p) {
			return nil, nil, fmt.Errorf("%q is not an IPv6 /64 (a prefix is unblocked only as blocked6_64 holds it)", s)
		}
		prefixes = append(prefixes, p)
	}
	return prefixes, rest, nil
}

// parseAddrs reads addresses, each once, in order; the first bad one is
// the error.
func parseAddrs(ss []string) ([]netip.Addr, error) {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, s := range ss {
		a, err := parseAddr(s)
		if err != nil {
			return nil, err
		}
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out, nil
}

func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IPv4 or IPv6 address", s)
	}
	// fe80::1%eth0 is fe80::1: a set element has no zone, and the guard
	// knows addresses without one.
	return guard.Canonical(a), nil
}
