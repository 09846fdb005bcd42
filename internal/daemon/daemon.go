// Package daemon wires the parts together and runs them in order. It owns
// the lifecycle (start-up lines, reload, shutdown order), not any part:
//
//	capture -> pipeline (decode, detect) -> decide -> ledger -> writer (kernel sets),
//	                                                         -> hosts.deny, commands, lines
//	keeper: the ruleset, the in-use ports, the flood switch, the watchdog
//	control socket: status, list, block, unblock (decide and ledger again)
//
// New builds every part (opening the state and the capture socket); Run
// installs the ruleset, restores the ledger's blocks, starts the parts,
// and stops them in order when its context ends.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/bouncerapi"
	"github.com/portsentry-nft/portsentry-nft/internal/capture"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/control"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/fleetlink"
	"github.com/portsentry-nft/portsentry-nft/internal/follow"
	"github.com/portsentry-nft/portsentry-nft/internal/guard"
	"github.com/portsentry-nft/portsentry-nft/internal/keeper"
	"github.com/portsentry-nft/portsentry-nft/internal/lapi"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/listeners"
	"github.com/portsentry-nft/portsentry-nft/internal/metrics"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
	"github.com/portsentry-nft/portsentry-nft/internal/pipeline"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
	"github.com/portsentry-nft/portsentry-nft/internal/verified"
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

// Daemon is one running instance.
type Daemon struct {
	opts    Options
	cfgp    atomic.Pointer[config.Config]
	start   time.Time
	log     *alert.Log
	names   *alert.Resolver
	alerts  *alert.Queue
	guard   *guard.Guard
	store   *state.Store
	watcher *listeners.Watcher
	writer  *nft.Writer
	ledger  *ledger.Ledger
	decider *decide.Decider
	peers   *nft.PeerLookup // this host's peers, for what carries no peer rule
	pipe    *pipeline.Pipeline
	keeper  *keeper.Keeper
	verify  *verified.Mode // nil unless tcp.verified
	metrics *metrics.Metrics
	fleet   *fleetlink.Link    // nil without a fleet section
	bouncer *bouncerapi.Server // nil without crowdsec.listen
	lapi    *lapi.Pusher       // nil without crowdsec.lapi
	follow  *follow.Set        // the ledger's followers (but the fleet's)
	reader  *capture.Reader    // NFLOG mode
	queue   *capture.Queue     // NFQUEUE mode
	capture capture.Stats
}

// New builds the daemon's parts: it prepares the state (the ledger's
// journal, which Run reads) and binds the capture socket, and starts
// nothing. Run uses and closes them.
func New(opts Options) (*Daemon, error) {
	cfg := opts.Config
	d := &Daemon{opts: opts, names: alert.NewResolver()}
	d.cfgp.Store(cfg)
	d.log = alert.New(opts.Logger, d.nameWithin)
	d.alerts = alert.NewQueue(d.log)
	d.guard = guard.New(guard.Sources{}, cfg.NeverBlockPrefixes)
	// The journal is read in Run, while its blocks go into the kernel.
	st, err := state.Prepare(state.Paths{Dir: cfg.State.Dir, History: cfg.State.HistoryFile, Blocked: cfg.State.BlockedFile})
	if err != nil {
		return nil, err
	}
	d.store = st
	d.watcher = &listeners.Watcher{
		NetNS:    opts.NetNS,
		OnError:  func(err error) { d.log.Warn("listening sockets: " + err.Error()) },
		Interval: listeners.DefaultInterval,
	}
	d.writer = nft.NewWriter(nft.WriterConfig{
		Dial:     func() (*nftables.Conn, error) { return nft.Dial(opts.NetNS) },
		DialLink: func() (*nftables.Conn, *netlink.Conn, error) { return nft.DialLink(opts.NetNS) },
		OnError: func(err error, attempt int) {
			d.log.Warnf("nftables write failed (attempt %d), retrying on a new connection: %v", attempt, err)
		},
	})
	if err := d.openCapture(cfg); err != nil {
		st.Close()
		return nil, err
	}
	if err := d.newLedger(cfg); err != nil {
		d.closeCapture()
		st.Close()
		return nil, err
	}
	d.decider = decide.New(cfg, d.guard, d.ledger)
	// The fleet's blocks and NFQUEUE's held probes are checked against the
	// kernel's peers sets; NFLOG copies say it by their rule.
	d.peers = nft.NewPeerLookup(opts.NetNS)
	d.decider.SetPeers(d.peers)
	pc := pipeline.Config{Settings: cfg, Decider: d.decider, Ledger: d.ledger, Alerts: d.alerts, Peers: d.peers,
		Ports: func() pipeline.Ports { return d.watcher.Snapshot() }}
	if d.fleet != nil {
		pc.OnProbe = d.fleet.Client().Sighting
	}
	d.pipe = pipeline.New(pc)
	var own func(uint16) bool
	if cfg.TCP.Verified {
		d.verify = verified.New(verified.Config{Settings: cfg, Log: d.log, Alerts: d.alerts, Detect: pipeline.DetectConfig(cfg), Act: d.pipe.Act})
		own = d.verify.Own
	}
	d.keeper = keeper.New(keeper.Config{Settings: cfg, NetNS: opts.NetNS, Log: d.log, Ledger: d.ledger, Decider: d.decider,
		Guard: d.guard, Watcher: d.watcher, Capture: &d.capture, Own: own})
	return d, nil
}

// newLedger builds the ledger with its followers: the standard ones, the
// fleet's when the configuration has a fleet, the CrowdSec bouncer API's
// when it is served and the CrowdSec LAPI pusher's when it is configured,
// the metrics' latency.
func (d *Daemon) newLedger(cfg *config.Config) error {
	lc := ledger.Config{Store: d.store, Kernel: d.writer, Log: d.log, Settings: cfg, Name: d.nameFor, NameWithin: d.nameWithin,
		OnLift: func(a netip.Addr) { d.pipe.Forget(a) }}
	d.follow = follow.NewSet(d.cfgp.Load, d.log)
	d.follow.Wire(&lc)
	if d.queue != nil {
		lc.Verdicts = d.queue
	}
	if cfg.Metrics.Listen != "" {
		d.metrics = metrics.New(d.snapshot, d.metricCounters())
		lc.OnBlock = d.metrics.ObserveBlock
	}
	var err error
	if d.fleet, err = fleetlink.New(fleetlink.Config{Settings: d.cfgp.Load, Guard: d.guard, Log: d.log, Logger: d.opts.Logger}); err != nil {
		return err
	}
	if d.fleet != nil {
		lc.Followers = append(lc.Followers, d.fleet)
	}
	if cfg.CrowdSec.Enabled() {
		d.bouncer = bouncerapi.New(bouncerapi.Config{Settings: d.cfgp.Load, Logger: d.opts.Logger})
		lc.Followers = append(lc.Followers, d.bouncer)
	}
	if cfg.CrowdSec.LAPI.Enabled() {
		d.lapi = lapi.New(lapi.Config{Settings: d.cfgp.Load, Version: d.opts.Version, Warn: d.log.Warn, Info: d.log.Info})
		lc.Followers = append(lc.Followers, d.lapi)
	}
	d.ledger = ledger.New(lc)
	// A name found after its block was recorded goes into the record.
	d.names.OnName = d.ledger.SetHost
	return nil
}

func (d *Daemon) openCapture(cfg *config.Config) error {
	var err error
	if cfg.Capture.Mode == "nfqueue" {
		d.queue, err = capture.OpenQueue(capture.QueueConfig{Num: uint16(cfg.Capture.Queue), NetNS: d.opts.NetNS, Logger: d.opts.Logger})
	} else {
		d.reader, err = capture.Open(capture.Config{
			Group:          uint16(cfg.Capture.Group),
			QueueThreshold: uint32(cfg.Capture.QueueThreshold),
			NetNS:          d.opts.NetNS,
			Logger:         d.opts.Logger,
		})
	}
	return err
}

// nameFor is the name of a when resolve_host is on and the name is known
// now, else "" (and the lookup is queued): the ledger never waits for DNS.
func (d *Daemon) nameFor(a netip.Addr) string {
	if !d.cfgp.Load().ResolveHost {
		return ""
	}
	return d.names.Name(a)
}

// nameWithin is nameFor, waiting up to wait for the lookup (an alert
// line; see alert.Resolver.NameWithin for when it does not wait).
func (d *Daemon) nameWithin(a netip.Addr, wait time.Duration) string {
	if !d.cfgp.Load().ResolveHost {
		return ""
	}
	return d.names.NameWithin(a, wait)
}

// Run installs the ruleset, restores the blocks, then captures and acts
// until ctx is done. The table and its blocks stay in the kernel when it
// returns: a restart keeps them, and the ledger restores them after a
// reboot.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.store.Close()
	defer d.peers.Close()
	d.start = time.Now()
	if err := d.install(ctx); err != nil {
		d.closeCapture()
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	alertsDone := make(chan struct{})
	wg.Go(func() { d.alerts.Run(alertsDone) })
	wg.Go(func() { d.names.Run(ctx) })
	// The writer and the ledger outlive capture a little: what is queued
	// when capture stops still gets committed.
	backCtx, stopBack := context.WithCancel(context.Background())
	if err := d.startLedger(backCtx, &wg); err != nil {
		cancel()
		stopBack()
		close(alertsDone)
		wg.Wait()
		d.closeCapture()
		return err
	}
	d.startFleet(ctx, &wg)
	if bound := d.startServices(ctx, &wg); bound != nil {
		defer bound.Remove()
	}

	d.log.Initialized()
	if d.opts.Ready != nil {
		d.opts.Ready()
	}
	var err error
	if d.queue != nil {
		err = d.queue.Run(ctx, d.pipe.HandleQueued, &d.capture)
	} else {
		err = d.reader.Run(ctx, d.pipe.Handle, &d.capture)
	}
	cancel()
	stopBack()
	close(alertsDone)
	wg.Wait()
	if err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	d.log.ShuttingDown()
	return nil
}

// install logs the start, reads the guard rails and the listening
// sockets, and installs the ruleset.
func (d *Daemon) install(ctx context.Context) error {
	cfg := d.cfgp.Load()
	d.logStartup(cfg)
	if err := d.guard.SetFleet(ctx, cfg.Fleet.HostPrefixes, cfg.Fleet.ServerHosts()); err != nil {
		d.log.Warn(err.Error())
	}
	if err := d.guard.Refresh(); err != nil {
		d.log.Warn(err.Error())
	}
	if _, _, err := d.watcher.Update(); err != nil {
		d.log.Warn("could not read the listening sockets (sock_diag): " + err.Error())
	}
	d.keeper.LogInUse(cfg)
	return d.keeper.Install(cfg)
}

// startLedger starts the writer, reads the journal into the ledger while
// its blocks go into the kernel, starts the ledger and adopts what the
// kernel struck while no daemon followed it. An error is the journal's.
func (d *Daemon) startLedger(ctx context.Context, wg *sync.WaitGroup) error {
	cfg := d.cfgp.Load()
	wg.Go(func() { d.writer.Run(ctx) })
	// What the kernel holds before the restore: elements the ledger may
	// not know (see Adopt below). Past nft.CheapDump lines of journal (an
	// upper bound of its blocks), reading the sets back would cost more
	// than the rest of the start: the watchdog's next element check
	// adopts them.
	var before map[netip.Addr]time.Duration
	if n := d.store.Lines(); n <= nft.CheapDump {
		var berr error
		if before, berr = nft.Blocked(d.opts.NetNS); berr != nil {
			d.log.Errorf("could not read the sets: %v", berr)
		}
	} else {
		d.log.Infof("%d lines in the journal: the sets are not read back at start (the watchdog adopts what the kernel added meanwhile within %d s).", n, nft.ElementCheckEvery(n))
	}
	res, err := d.ledger.Load(ctx, time.Now())
	for _, w := range d.store.Warnings {
		d.log.Warn(w)
	}
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	d.logRestore(cfg, res)
	if d.bouncer != nil {
		// Before the ledger runs: what it records from now on follows.
		d.bouncer.Seed(d.ledger.Active(time.Now()))
	}
	wg.Go(func() { d.ledger.Run(ctx); d.follow.Commands.Wait() })
	if _, err := d.keeper.Adopt(ctx, before); err != nil {
		d.log.Error(err.Error())
	}
	return nil
}

// logRestore says what the restore at start did, and gives its garbage
// back to the system.
func (d *Daemon) logRestore(cfg *config.Config, res ledger.Loaded) {
	if res.Err != nil {
		d.log.Errorf("could not restore blocks: %v", res.Err)
	}
	if res.Restored == 0 {
		return
	}
	d.log.Infof("Restored %d blocks from %s with their remaining time (journal read in %s, into the kernel in %s, the two at once).", res.Restored, cfg.State.Dir,
		res.Read.Round(time.Millisecond), res.Took.Round(time.Millisecond))
	if res.Restored > nft.CheapDump/2 {
		// The journal's lines and the restore's parts are garbage by
		// now: give it back at once rather than as the scavenger gets to
		// it (at 1M blocks, ~60 MiB of RSS).
		debug.FreeOSMemory()
	}
}

// startFleet starts the fleet's client and intake, and waits a bounded
// time for the fleet's current blocks: they enter before ready.
func (d *Daemon) startFleet(ctx context.Context, wg *sync.WaitGroup) {
	if d.fleet == nil {
		return
	}
	d.fleet.Start(ctx)
	wg.Go(func() { d.fleet.Intake(ctx, d.decider, d.ledger) })
	wg.Go(func() { d.fleet.Run(ctx) })
	select {
	case <-d.fleet.Client().Ready():
		d.log.Infof("fleet: %d blocks of other hosts in force", d.fleet.Client().Stats().Blocks)
	case <-time.After(fleetlink.ReadyWait):
		d.log.Warnf("fleet: the servers did not answer within %s; blocking locally, the fleet's blocks follow when they do", fleetlink.ReadyWait)
	}
}

// startServices starts the metrics endpoint, the loss report, the guard's
// watcher, the keeper, verified mode and the control socket; it returns
// the socket's binding to remove at the end (nil without one).
func (d *Daemon) startServices(ctx context.Context, wg *sync.WaitGroup) *control.Bound {
	cfg := d.cfgp.Load()
	if d.metrics != nil {
		wg.Go(func() {
			if err := d.metrics.Serve(ctx, cfg.Metrics.Listen); err != nil {
				d.log.Error(err.Error())
			}
		})
	}
	wg.Go(func() { d.report(ctx) })
	d.startBouncerAPI(ctx, wg)
	if d.lapi != nil {
		d.log.Infof("Pushing alerts to the CrowdSec local API at %s as machine %s", cfg.CrowdSec.LAPI.URL, cfg.CrowdSec.LAPI.MachineID)
		wg.Go(func() { d.lapi.Run(ctx) })
	}
	wg.Go(func() {
		d.guard.Watch(ctx, d.opts.NetNS, d.nowProtected(ctx), func(err error) { d.log.Warn(err.Error()) })
	})
	wg.Go(func() { d.keeper.Run(ctx) })
	if d.verify != nil {
		wg.Go(func() { d.verify.Run(ctx) })
	}
	ctl, err := control.Listen(cfg.Control.Socket)
	if err != nil {
		d.log.Errorf("%v; status, list, block and unblock are unavailable", err)
		return nil
	}
	bound := control.Bind(cfg.Control.Socket)
	wg.Go(func() { control.Serve(ctx, ctl, d) })
	return &bound
}

// startBouncerAPI listens for CrowdSec's bouncers, when crowdsec.listen
// says so; a listener that cannot be made is logged, and blocking goes on.
func (d *Daemon) startBouncerAPI(ctx context.Context, wg *sync.WaitGroup) {
	if d.bouncer == nil {
		return
	}
	cs := d.cfgp.Load().CrowdSec
	wg.Go(func() { d.bouncer.Run(ctx) })
	ln, err := net.Listen("tcp", cs.Listen)
	if err != nil {
		d.log.Errorf("crowdsec.listen: %v; the CrowdSec bouncer API is not served", err)
		return
	}
	d.log.Infof("Serving the CrowdSec bouncer API on %s (%d API keys)", ln.Addr(), len(cs.Keys))
	wg.Go(func() {
		if err := d.bouncer.ServeListener(ctx, ln, cs.TLSCert, cs.TLSKey); err != nil {
			d.log.Errorf("%v; the CrowdSec bouncer API is not served", err)
		}
	})
}

func (d *Daemon) closeCapture() {
	if d.reader != nil {
		d.reader.Close()
	}
	if d.queue != nil {
		d.queue.Close()
	}
}

// Reload swaps in a new configuration: the ruleset is replaced in one
// transaction that keeps every block, then every part uses the new
// settings. A configuration that cannot be applied leaves everything as it
// was and returns the reason.
func (d *Daemon) Reload(cfg *config.Config) error {
	old := d.cfgp.Load()
	if cfg.Capture != old.Capture {
		return fmt.Errorf("capture settings changed (%+v -> %+v): restart the daemon to apply them", old.Capture, cfg.Capture)
	}
	if cfg.TCP.Verified != old.TCP.Verified || (cfg.TCP.Verified && !slices.Equal(cfg.TCP.Monitored, old.TCP.Monitored)) {
		return errors.New("verified mode or its ports changed: restart the daemon to apply them")
	}
	if cfg.State != old.State {
		return errors.New("state settings changed: restart the daemon to apply them")
	}
	if err := d.keeper.Install(cfg); err != nil {
		return err
	}
	if err := d.guard.SetFleet(context.Background(), cfg.Fleet.HostPrefixes, cfg.Fleet.ServerHosts()); err != nil {
		d.log.Warn(err.Error())
	}
	if err := d.guard.SetNeverBlock(cfg.NeverBlockPrefixes); err != nil {
		d.log.Warn(err.Error())
	}
	d.decider.SetConfig(cfg)
	d.ledger.SetConfig(cfg)
	d.pipe.SetConfig(cfg)
	d.cfgp.Store(cfg)
	d.logStartup(cfg)
	if o, n := old.CrowdSec, cfg.CrowdSec; o.Listen != n.Listen || o.TLSCert != n.TLSCert || o.TLSKey != n.TLSKey {
		// The API keys are the new configuration's now (bouncerapi reads them as it goes).
		d.log.Warn("crowdsec.listen or its TLS files changed: a restart applies them")
	}
	if old.CrowdSec.LAPI.Enabled() != cfg.CrowdSec.LAPI.Enabled() {
		// The URL and credentials are the new configuration's now (the pusher reads them at each send).
		d.log.Warn("crowdsec.lapi turned on or off: a restart applies it")
	}
	return nil
}

// nowProtected lifts the blocks of addresses that became protected (a new
// default gateway, local address or nameserver; at start, a restored block
// of one): a spoofed probe may have blocked the gateway a DHCP renewal or
// a failover then made the host's own.
func (d *Daemon) nowProtected(ctx context.Context) func([]netip.Addr) {
	return func(added []netip.Addr) {
		var held []netip.Addr
		for _, a := range added {
			if d.ledger.Holds(a) {
				held = append(held, a)
			}
		}
		if len(held) == 0 {
			return
		}
		// Not on disk (ErrNotDurable): lifted all the same, and the ledger
		// says so once.
		if _, err := d.ledger.Apply(ctx, ledger.Unblock{Addrs: held, Cause: ledger.Protected}); err != nil && !errors.Is(err, ledger.ErrNotDurable) {
			if ctx.Err() == nil {
				d.log.Errorf("could not lift the blocks of newly protected %v: %v", held, err)
			}
			return
		}
		for _, a := range held {
			why, _ := d.guard.Protected(a)
			d.log.Warnf("%s is now protected (%s); its block is lifted", a, why)
		}
	}
}

// report logs losses as they happen (at most every few seconds): kernel
// drops, malformed packets, suppressed alert lines.
func (d *Daemon) report(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	var lost, overruns, malformed, suppressed, limited, lookups uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		check := func(cur uint64, last *uint64, format string) {
			if cur != *last {
				d.log.Warnf(format, cur-*last, cur)
				*last = cur
			}
		}
		check(d.capture.Lost.Load(), &lost, "the kernel dropped %d log messages (NFLOG queue overrun; %d in all)")
		check(d.capture.Overruns.Load(), &overruns, "NFLOG receive buffer overran %d times (ENOBUFS; %d in all)")
		check(d.pipe.Malformed.Load(), &malformed, "skipped %d malformed packets (%d in all)")
		check(d.alerts.Suppressed(), &suppressed, "%d alert lines suppressed to keep up with a flood (%d in all)")
		check(d.names.Stats.Dropped.Load(), &lookups, "%d name lookups (resolve_host) not made: DNS does not keep up (%d in all)")
		check(d.pipe.RateLimited.Load(), &limited, "%d triggers over block.max_per_second were not blocked (%d in all)")
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
	d.log.Starting(c.File)
	d.log.Monitoring(ifaces, addrs, c.TCP.Monitored, c.UDP.Monitored)
	if c.PortBanner != "" {
		d.log.Warn("port_banner is configured but not used by this version (it needs verified mode); ignoring it")
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
