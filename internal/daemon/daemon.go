// Package daemon wires the pipeline together and runs it: state restore,
// ruleset install, NFLOG capture -> decode -> detect on one goroutine,
// reactions handed to the responder, alerts to the log, and a watchdog
// that puts the ruleset and blocks back when something outside removes
// them. It owns the lifecycle (start-up lines, reload, shutdown order),
// not any of the parts.
package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"

	"github.com/portsentry-nft/portsentry-nft/internal/capture"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/control"
	"github.com/portsentry-nft/portsentry-nft/internal/detect"
	"github.com/portsentry-nft/portsentry-nft/internal/guard"
	"github.com/portsentry-nft/portsentry-nft/internal/listeners"
	"github.com/portsentry-nft/portsentry-nft/internal/metrics"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
	"github.com/portsentry-nft/portsentry-nft/internal/respond"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// Options configure one run of the daemon.
type Options struct {
	Config *config.Config
	Logger *slog.Logger
	// NetNS, when set, is the network namespace to protect (tests); nil
	// means the daemon's own.
	NetNS *os.File
	// Ready is called once the ruleset is installed, blocks are restored
	// and capture is bound.
	Ready func()
	// Version is reported by status.
	Version string
}

// Counters are the daemon's statistics.
type Counters struct {
	Probes       [packet.NumKinds]atomic.Uint64
	Malformed    atomic.Uint64 // packets that did not decode
	NotProbes    atomic.Uint64 // decoded, but ACK/RST traffic (should not reach us)
	AlreadyBlock atomic.Uint64
	Protected    atomic.Uint64 // triggers from protected addresses, not blocked
	RateLimited  atomic.Uint64 // triggers over block.max_per_second, not blocked
	Dropped      atomic.Uint64 // triggers lost because the responder queue was full
	Restored     atomic.Uint64 // blocks put back at start or by the watchdog
	InUse        atomic.Uint64 // probes of ports a service listens on, ignored
	Reinstalls   atomic.Uint64 // times the watchdog reinstalled the ruleset
	Capture      capture.Stats
}

// Daemon is one running instance.
type Daemon struct {
	opts  Options
	log   *slog.Logger
	start time.Time
	// cfgp is swapped by Reload; cfg is the capture goroutine's copy.
	cfgp    atomic.Pointer[config.Config]
	cfg     *config.Config
	det     *detect.Detector
	forget  chan netip.Addr // to the capture goroutine, which owns det
	limiter tokenBucket
	// probeLines caps the alert lines of a flood (see alertCapped; a line
	// for a block is always written).
	probeLines tokenBucket
	guard      *guard.Guard
	store      *state.Store
	writer     *nft.Writer
	resp       *respond.Responder
	alerts     *alerter
	names      *resolver
	watcher    *listeners.Watcher
	ownPorts   atomic.Pointer[map[uint16]bool] // verified mode's own listening ports
	queue      *capture.Queue                  // NFQUEUE mode
	// compatQueue: this kernel queues through the xtables target (see install).
	compatQueue atomic.Bool
	// flood: the log rules let NFLOG batch (see adaptBatching).
	flood atomic.Bool
	// trackedSources mirrors det.Len() for status (det is the capture goroutine's).
	trackedSources atomic.Int64
	Counters       Counters
}

// New prepares a daemon; Run starts it.
func New(opts Options) *Daemon {
	cfg := opts.Config
	d := &Daemon{
		opts:   opts,
		log:    opts.Logger,
		cfg:    cfg,
		det:    detect.New(detectConfig(cfg)),
		forget: make(chan netip.Addr, 64),
		guard:  guard.New(guard.Sources{}, cfg.NeverBlockPrefixes),
		names:  newResolver(),
	}
	d.limiter.set(cfg.Block.MaxPerSecond)
	d.probeLines.set(probeLinesPerSecond)
	d.cfgp.Store(cfg)
	d.alerts = newAlerter(opts.Logger, d.hostField)
	return d
}

func detectConfig(c *config.Config) detect.Config {
	return detect.Config{
		Trigger:    c.Detect.ScanTrigger,
		Window:     time.Duration(c.Detect.Window),
		MaxSources: c.Detect.MaxSources,
	}
}

// dial opens a lasting connection for writes; query one for reads.
func (d *Daemon) dial() (*nftables.Conn, error)  { return nft.Dial(d.opts.NetNS) }
func (d *Daemon) query() (*nftables.Conn, error) { return nft.DialQuery(d.opts.NetNS) }

// Run restores state, installs the ruleset, then captures and acts until
// ctx is done. The table and its blocks stay in the kernel when it
// returns: a restart keeps them, and the state restores them after a reboot.
func (d *Daemon) Run(ctx context.Context) error {
	d.start = time.Now()
	cfg := d.cfg
	d.logStartup(cfg)
	if err := d.guard.Refresh(); err != nil {
		d.log.Warn("adminalert: " + err.Error())
	}
	st, err := state.Open(state.Paths{Dir: cfg.State.Dir, History: cfg.State.HistoryFile, Blocked: cfg.State.BlockedFile}, d.start)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, w := range st.Warnings {
		d.log.Warn("adminalert: " + w)
	}
	d.store = st
	d.watcher = &listeners.Watcher{
		NetNS:    d.opts.NetNS,
		OnError:  func(err error) { d.log.Warn("adminalert: listening sockets: " + err.Error()) },
		Interval: listeners.DefaultInterval,
	}
	if _, _, err := d.watcher.Update(); err != nil {
		d.log.Warn("adminalert: could not read the listening sockets (sock_diag): " + err.Error())
	}
	d.logInUse(cfg)
	if err := d.install(cfg); err != nil {
		return err
	}
	d.writer = nft.NewWriter(nft.WriterConfig{
		Dial: d.dial,
		OnError: func(err error, attempt int) {
			d.log.Warn(fmt.Sprintf("adminalert: nftables write failed (attempt %d), retrying on a new connection: %v", attempt, err))
		},
	})
	var reader *capture.Reader
	if cfg.Capture.Mode == "nfqueue" {
		d.queue, err = capture.OpenQueue(capture.QueueConfig{Num: uint16(cfg.Capture.Queue), NetNS: d.opts.NetNS, Logger: d.log})
	} else {
		reader, err = capture.Open(capture.Config{
			Group:          uint16(cfg.Capture.Group),
			QueueThreshold: uint32(cfg.Capture.QueueThreshold),
			NetNS:          d.opts.NetNS,
			Logger:         d.log,
		})
	}
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	alertsDone := make(chan struct{})
	wg.Go(func() { d.alerts.run(alertsDone) })
	// The writer and responder outlive capture a little: what is queued
	// when capture stops still gets committed.
	backCtx, stopBack := context.WithCancel(context.Background())
	wg.Go(func() { d.writer.Run(backCtx) })
	if n, err := d.restore(backCtx, "start"); err != nil {
		d.log.Error(fmt.Sprintf("adminalert: ERROR: could not restore blocks: %v", err))
	} else if n > 0 {
		d.log.Info(fmt.Sprintf("adminalert: Restored %d blocks from %s with their remaining time.", n, cfg.State.Dir))
	}
	d.resp = respond.New(cfg, d.log, d.writer, st, d.nameFor)
	if cfg.Metrics.Listen != "" {
		m := metrics.New(d.Status)
		d.resp.OnBlock = m.ObserveBlock
		wg.Go(func() {
			if err := m.Serve(ctx, cfg.Metrics.Listen); err != nil {
				d.log.Error("adminalert: ERROR: " + err.Error())
			}
		})
	}
	wg.Go(func() { d.resp.Run(backCtx) })
	wg.Go(func() { d.report(ctx) })
	wg.Go(func() { d.watchdog(ctx) })
	d.watcher.OnChange = func(added, removed []listeners.Socket) { d.listenersChanged(ctx, added, removed) }
	wg.Go(func() { d.watcher.Run(ctx) })
	if cfg.TCP.Verified {
		wg.Go(func() { d.runVerified(ctx, cfg) })
	}
	if d.queue == nil {
		wg.Go(func() { d.adaptBatching(ctx) })
	}
	ctl, err := control.Listen(cfg.Control.Socket)
	if err != nil {
		d.log.Error(fmt.Sprintf("adminalert: ERROR: %v; status, list, block and unblock are unavailable", err))
	} else {
		wg.Go(func() { control.Serve(ctx, ctl, d) })
		defer os.Remove(cfg.Control.Socket)
	}

	d.log.Info("adminalert: PortSentry is initialized and monitoring.")
	if d.opts.Ready != nil {
		d.opts.Ready()
	}
	if d.queue != nil {
		err = d.queue.Run(ctx, d.handleQueued, &d.Counters.Capture)
	} else {
		err = reader.Run(ctx, d.handle, &d.Counters.Capture)
	}
	cancel()
	stopBack()
	close(alertsDone)
	wg.Wait()
	if err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	d.log.Info("adminalert: PortSentry is shutting down; blocks stay in the kernel until they expire.")
	return nil
}

func (d *Daemon) install(cfg *config.Config) error {
	rs := d.ruleset(cfg)
	err := d.installRuleset(rs)
	if err != nil && rs.Queued() && !d.compatQueue.Load() {
		// No nft_queue in this kernel (the queue statement fails with
		// ENOENT): queue through the xtables NFQUEUE target instead.
		s := rs.Shape()
		s.CompatQueue = true
		if err2 := d.installRuleset(nft.Build(cfg, s)); err2 == nil {
			d.compatQueue.Store(true)
			d.log.Info("adminalert: this kernel has no nft_queue; queueing through the xtables NFQUEUE target (nft_compat)")
			return nil
		}
	}
	return err
}

func (d *Daemon) installRuleset(rs *nft.Ruleset) error { return rs.InstallIn(d.opts.NetNS) }

// restore puts every unexpired block of the state into the kernel with
// its remaining time, in as few transactions as the writer allows.
func (d *Daemon) restore(ctx context.Context, why string) (int, error) {
	now := time.Now()
	var blocks []nft.Block
	for _, b := range d.store.Active(now) {
		left := b.Expires.Sub(now).Round(time.Second)
		if left < time.Second {
			continue
		}
		blocks = append(blocks, nft.Block{Addr: b.Addr, Timeout: left})
	}
	if err := d.writer.Commit(ctx, blocks); err != nil {
		return 0, fmt.Errorf("restore %d blocks (%s): %w", len(blocks), why, err)
	}
	d.Counters.Restored.Add(uint64(len(blocks)))
	return len(blocks), nil
}

// Reload swaps in a new configuration: the ruleset is replaced in one
// transaction that keeps every block, then detection and reactions use the
// new settings. A configuration that cannot be applied leaves everything
// as it was and returns the reason.
func (d *Daemon) Reload(cfg *config.Config) error {
	old := d.cfgp.Load()
	if cfg.Capture != old.Capture {
		return fmt.Errorf("capture settings changed (%+v -> %+v): restart the daemon to apply them", old.Capture, cfg.Capture)
	}
	if cfg.TCP.Verified != old.TCP.Verified || (cfg.TCP.Verified && !slices.Equal(cfg.TCP.Monitored, old.TCP.Monitored)) {
		return fmt.Errorf("verified mode or its ports changed: restart the daemon to apply them")
	}
	if cfg.State != old.State {
		return fmt.Errorf("state settings changed: restart the daemon to apply them")
	}
	if err := d.install(cfg); err != nil {
		return err
	}
	if err := d.guard.SetNeverBlock(cfg.NeverBlockPrefixes); err != nil {
		d.log.Warn("adminalert: " + err.Error())
	}
	d.resp.SetConfig(cfg)
	d.cfgp.Store(cfg)
	d.logStartup(cfg)
	return nil
}

// handle runs on the capture goroutine for every packet (NFLOG: a copy).
func (d *Daemon) handle(pkt []byte) { d.process(pkt, nil) }

// handleQueued runs for every packet held in NFQUEUE and returns its
// verdict: Pending when the responder releases it once the block is in.
func (d *Daemon) handleQueued(pkt []byte, id uint32) capture.Verdict {
	return d.process(pkt, func() func(bool) {
		return func(drop bool) {
			if err := d.queue.SetVerdict(id, drop); err != nil {
				d.log.Warn(fmt.Sprintf("adminalert: NFQUEUE verdict: %v", err))
			}
		}
	})
}

// process decodes, detects and hands off; nothing here waits for I/O or
// allocates for a known source. release, for queued packets, makes the
// function that gives a held probe its verdict later (called only when a
// trigger is handed to the responder).
func (d *Daemon) process(pkt []byte, release func() func(bool)) capture.Verdict {
	if c := d.cfgp.Load(); c != d.cfg {
		d.cfg = c
		d.det.SetConfig(detectConfig(c))
		d.limiter.set(c.Block.MaxPerSecond)
	}
	for len(d.forget) > 0 {
		d.det.Forget(<-d.forget)
	}
	var p packet.Probe
	if err := packet.Decode(pkt, &p); err != nil {
		d.Counters.Malformed.Add(1)
		return capture.Accept
	}
	if p.Kind == packet.KindNone {
		d.Counters.NotProbes.Add(1)
		return capture.Accept
	}
	d.Counters.Probes[p.Kind].Add(1)
	if p.Proto == packet.TCP && d.cfg.TCP.Verified {
		// Verified mode: only completed connections count (runVerified).
		d.alertCapped(event{what: evProbe, probe: p}, time.Now())
		return capture.Accept
	}
	if d.watcher.Snapshot().InUse(uint8(p.Proto), p.Dst, p.DstPort) {
		// A service listens there (it just started: the kernel set lags by
		// up to one poll). Never a tripwire.
		d.Counters.InUse.Add(1)
		return capture.Accept
	}
	now := time.Now()
	verdict, src := d.det.Observe(&p, now)
	d.trackedSources.Store(int64(d.det.Len()))
	if verdict == detect.AlreadyBlocked {
		d.Counters.AlreadyBlock.Add(1)
		d.alertCapped(event{what: evAlreadyBlocked, probe: p}, now)
		return capture.Drop
	}
	if verdict != detect.Trigger {
		d.alertCapped(event{what: evProbe, probe: p}, now)
		return capture.Accept
	}
	var rel func(bool)
	if release != nil {
		rel = release()
	}
	if d.act(p, src, now, d.det, rel) {
		return capture.Pending
	}
	return capture.Accept
}

// act runs the safety checks that come before any action (protected
// addresses, then the rate cap) and hands the trigger to the responder;
// it reports whether it did (then release, if set, will be called).
// det is the detector that triggered (the capture goroutine's, or verified
// mode's), owned by the calling goroutine.
//
// The probe's attackalert line is written for every block (their number is
// capped by block.max_per_second); a trigger that is refused shares the
// per-probe line cap, or a spoofed flood would cost a few lines per packet.
func (d *Daemon) act(p packet.Probe, src detect.Source, now time.Time, det *detect.Detector, release func(bool)) bool {
	if why, ok := d.guard.Protected(p.Src); ok {
		d.Counters.Protected.Add(1)
		det.Forget(p.Src)
		d.alertCapped(event{what: evProbe, probe: p}, now)
		d.alertCapped(event{what: evProtected, probe: p, reason: why}, now)
		return false
	}
	if !d.limiter.allow(now) {
		d.Counters.RateLimited.Add(1)
		det.Forget(p.Src)
		d.alertCapped(event{what: evProbe, probe: p}, now)
		d.alertCapped(event{what: evRateLimited, probe: p}, now)
		return false
	}
	d.alerts.send(event{what: evProbe, probe: p})
	det.MarkBlocked(p.Src, now.Add(d.cfgp.Load().BlockTimeout()))
	t := respond.Trigger{Probe: p, Time: now, First: src.First, Last: src.Last, Release: release}
	if src.NPorts > 0 {
		t.Ports = append([]uint16(nil), src.Ports[:src.NPorts]...)
	}
	if !d.resp.Trigger(t) {
		d.Counters.Dropped.Add(1)
		det.Forget(p.Src)
		return false
	}
	return true
}

// watchdog notices when the table, a set, the chain or blocks were removed
// outside the daemon (nft flush ruleset, nft delete table, nft flush set)
// and puts them back.
func (d *Daemon) watchdog(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n++
		// Listing the sets costs in proportion to the blocks: every 5 s,
		// every minute once there are many.
		checkElements := n%5 == 0 && (d.store.Len() < 10000 || n%60 == 0)
		if err := d.heal(ctx, checkElements); err != nil {
			d.log.Error(fmt.Sprintf("adminalert: ERROR: self-check of table inet %s failed: %v", nft.TableName, err))
		}
		if n%30 == 0 {
			if err := d.guard.Refresh(); err != nil {
				d.log.Warn("adminalert: " + err.Error())
			}
		}
	}
}

func (d *Daemon) heal(ctx context.Context, checkElements bool) error {
	cfg := d.cfgp.Load()
	conn, err := d.query()
	if err != nil {
		return err
	}
	rs := d.ruleset(cfg)
	probs, err := rs.Problems(conn)
	if err != nil {
		return err
	}
	if len(probs) > 0 {
		if err := d.installRuleset(rs); err != nil {
			return fmt.Errorf("reinstall after %s: %w", strings.Join(probs, ", "), err)
		}
		d.Counters.Reinstalls.Add(1)
		n, err := d.restore(ctx, "self-heal")
		if err != nil {
			return err
		}
		d.log.Warn(fmt.Sprintf("adminalert: table inet %s was changed outside portsentry-nft (%s); reinstalled it and restored %d blocks.", nft.TableName, strings.Join(probs, ", "), n))
		return nil
	}
	if !checkElements {
		return nil
	}
	inKernel, err := nft.Blocked(d.opts.NetNS)
	if err != nil {
		return err
	}
	now := time.Now()
	var missing []nft.Block
	for _, b := range d.store.Active(now) {
		left := b.Expires.Sub(now).Round(time.Second)
		if _, ok := inKernel[b.Addr]; !ok && left > 2*time.Second {
			missing = append(missing, nft.Block{Addr: b.Addr, Timeout: left})
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := d.writer.Commit(ctx, missing); err != nil {
		return err
	}
	d.Counters.Restored.Add(uint64(len(missing)))
	d.log.Warn(fmt.Sprintf("adminalert: %d blocks were missing from the sets (flushed or deleted outside portsentry-nft); restored them. Use 'portsentry-nft unblock' to lift a block.", len(missing)))
	return nil
}

// NFLOG sends each probe at once (lowest latency) until the probe rate
// says flood; then the log rules let the kernel batch up to
// capture.queue_threshold messages, or NFLOG drops them (measured here: 35%
// lost at 66k probes/s unbatched, none batched). calmSeconds of calm switch
// back.
const (
	floodRate   = 5000 // probes per second
	calmSeconds = 10
	floodTick   = 250 * time.Millisecond // a flood is noticed within a quarter second
)

func (d *Daemon) adaptBatching(ctx context.Context) {
	if d.cfgp.Load().Capture.QueueThreshold <= 1 {
		return // configured never to batch
	}
	tick := time.NewTicker(floodTick)
	defer tick.Stop()
	last := d.Counters.Capture.Packets.Load() + d.Counters.Capture.Lost.Load()
	calm := 0
	perSecond := uint64(time.Second / floodTick)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cur := d.Counters.Capture.Packets.Load() + d.Counters.Capture.Lost.Load()
		rate := (cur - last) * perSecond
		last = cur
		switch flood := d.flood.Load(); {
		case !flood && rate > floodRate:
			d.setFlood(true, fmt.Sprintf("%d probes/s: a flood; NFLOG now batches up to %d messages", rate, d.cfgp.Load().Capture.QueueThreshold))
			calm = 0
		case flood && rate < floodRate/10:
			if calm++; calm >= calmSeconds*int(perSecond) {
				d.setFlood(false, fmt.Sprintf("%d probes/s: NFLOG sends each probe at once again", rate))
			}
		default:
			calm = 0
		}
	}
}

func (d *Daemon) setFlood(on bool, why string) {
	d.flood.Store(on)
	if err := d.install(d.cfgp.Load()); err != nil {
		d.flood.Store(!on)
		d.log.Error(fmt.Sprintf("adminalert: ERROR: %s, but the ruleset could not be updated: %v", why, err))
		return
	}
	d.log.Warn("adminalert: " + why)
}

// report logs losses as they happen (at most every few seconds): kernel
// drops, malformed packets, suppressed alert lines.
func (d *Daemon) report(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	var lost, overruns, malformed, suppressed, limited uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		check := func(cur uint64, last *uint64, format string) {
			if cur != *last {
				d.log.Warn(fmt.Sprintf(format, cur-*last, cur))
				*last = cur
			}
		}
		check(d.Counters.Capture.Lost.Load(), &lost, "adminalert: the kernel dropped %d log messages (NFLOG queue overrun; %d in all)")
		check(d.Counters.Capture.Overruns.Load(), &overruns, "adminalert: NFLOG receive buffer overran %d times (ENOBUFS; %d in all)")
		check(d.Counters.Malformed.Load(), &malformed, "adminalert: skipped %d malformed packets (%d in all)")
		check(d.alerts.suppressed.Load(), &suppressed, "adminalert: %d alert lines suppressed to keep up with a flood (%d in all)")
		check(d.Counters.RateLimited.Load(), &limited, "adminalert: %d triggers over block.max_per_second were not blocked (%d in all)")
	}
}

func (d *Daemon) logStartup(c *config.Config) {
	addrs := "all"
	if len(c.WatchAddrs) > 0 {
		var s []string
		for _, a := range c.WatchAddrs {
			s = append(s, a.String())
		}
		addrs = strings.Join(s, ", ")
	}
	ifaces := strings.Join(c.Interfaces, ", ")
	if c.AllInterfaces {
		ifaces = "all but loopback"
		if names := upInterfaces(); names != "" {
			ifaces = names
		}
	}
	d.log.Info(fmt.Sprintf("adminalert: PortSentry (portsentry-nft) is starting with %s", c.File))
	d.log.Info(fmt.Sprintf("adminalert: Monitoring interface %s and address: %s", ifaces, addrs))
	d.log.Info("adminalert: Monitoring TCP ports: " + joinPorts(c.TCP.Monitored))
	d.log.Info("adminalert: Monitoring UDP ports: " + joinPorts(c.UDP.Monitored))
	if c.PortBanner != "" {
		d.log.Warn("adminalert: port_banner is configured but not used by this version (it needs verified mode); ignoring it")
	}
}

func upInterfaces() string {
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	var names []string
	for _, i := range ifs {
		if i.Flags&net.FlagUp != 0 && i.Flags&net.FlagLoopback == 0 {
			names = append(names, i.Name)
		}
	}
	return strings.Join(names, ", ")
}

// alertCapped writes a line that is not about a block: within
// probeLinesPerSecond it is written, past that it is counted as suppressed.
func (d *Daemon) alertCapped(e event, now time.Time) {
	if d.probeLines.allow(now) {
		d.alerts.send(e)
	} else {
		d.alerts.suppressed.Add(1)
	}
}

// probeLinesPerSecond bounds the attackalert lines for probes that do not
// trigger anything: a scan of every port is logged in full (the bucket holds
// a second's worth), a spoofed flood is summarised by the "suppressed" line.
const probeLinesPerSecond = 2000

// tokenBucket caps blocks per second; capture and verified mode share it.
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func (b *tokenBucket) set(perSecond int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rate = float64(perSecond)
	b.tokens = min(b.tokens, b.rate)
	if b.last.IsZero() {
		b.tokens = b.rate
	}
}

func (b *tokenBucket) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}
