// Package daemon wires the pipeline together and runs it: ruleset install,
// NFLOG capture -> decode -> detect on one goroutine, blocks handed to the
// nftables writer, alerts to the log. It owns the lifecycle (start-up lines,
// shutdown order), not any of the parts.
package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"

	"github.com/portsentry-nft/portsentry-nft/internal/capture"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/detect"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
)

// Options configure one run of the daemon.
type Options struct {
	Config *config.Config
	Logger *slog.Logger
	// NetNS, when set, is the network namespace to protect (tests); nil
	// means the daemon's own.
	NetNS *os.File
	// Ready is called once the ruleset is installed and capture is bound.
	Ready func()
}

// Counters are the daemon's statistics.
type Counters struct {
	Probes        [packet.NumKinds]atomic.Uint64
	Malformed     atomic.Uint64 // packets that did not decode
	NotProbes     atomic.Uint64 // decoded, but ACK/RST traffic (should not reach us)
	Blocks        atomic.Uint64 // elements committed
	BlockFailures atomic.Uint64
	AlreadyBlock  atomic.Uint64
	Capture       capture.Stats
}

// Daemon is one running instance.
type Daemon struct {
	opts Options
	// cfg is read by the capture goroutine and swapped by Reload.
	cfgp     atomic.Pointer[config.Config]
	cfg      *config.Config // the capture goroutine's copy; refreshed from cfgp in handle
	log      *slog.Logger
	det      *detect.Detector
	writer   *nft.Writer
	alerts   *alerter
	Counters Counters
}

// New prepares a daemon; Run starts it.
func New(opts Options) *Daemon {
	cfg := opts.Config
	d := &Daemon{
		opts:   opts,
		cfg:    cfg,
		log:    opts.Logger,
		det:    detect.New(detectConfig(cfg)),
		alerts: newAlerter(opts.Logger),
	}
	d.cfgp.Store(cfg)
	return d
}

// Reload swaps in a new configuration: the ruleset is replaced in one
// transaction that keeps every block, then detection uses the new
// settings. A configuration that cannot be applied leaves everything as
// it was and returns the reason.
func (d *Daemon) Reload(cfg *config.Config) error {
	old := d.cfgp.Load()
	if cfg.Capture != old.Capture {
		return fmt.Errorf("capture settings changed (%+v -> %+v): restart the daemon to apply them", old.Capture, cfg.Capture)
	}
	conn, err := nft.Dial(d.opts.NetNS)
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	if err := nft.Build(cfg).Install(conn); err != nil {
		return err
	}
	d.cfgp.Store(cfg)
	d.logStartup(cfg)
	return nil
}

// Run installs the ruleset, captures and acts until ctx is done. The table
// and its blocks stay in the kernel when it returns: a restart keeps them.
func (d *Daemon) Run(ctx context.Context) error {
	d.logStartup(d.cfg)
	dial := func() (*nftables.Conn, error) { return nft.Dial(d.opts.NetNS) }
	conn, err := dial()
	if err != nil {
		return err
	}
	err = nft.Build(d.cfg).Install(conn)
	conn.CloseLasting()
	if err != nil {
		return err
	}
	d.writer = nft.NewWriter(nft.WriterConfig{
		Dial: dial,
		OnError: func(err error, attempt int) {
			d.log.Warn(fmt.Sprintf("adminalert: nftables write failed (attempt %d), retrying on a new connection: %v", attempt, err))
		},
	})
	reader, err := capture.Open(capture.Config{
		Group:          uint16(d.cfg.Capture.Group),
		QueueThreshold: uint32(d.cfg.Capture.QueueThreshold),
		NetNS:          d.opts.NetNS,
		Logger:         d.log,
	})
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	alertsDone := make(chan struct{})
	wg.Go(func() { d.alerts.run(alertsDone) })
	writerCtx, stopWriter := context.WithCancel(context.Background())
	wg.Go(func() { d.writer.Run(writerCtx) })
	wg.Go(func() { d.report(ctx) })

	d.log.Info("adminalert: PortSentry is initialized and monitoring.")
	if d.opts.Ready != nil {
		d.opts.Ready()
	}
	err = reader.Run(ctx, d.handle, &d.Counters.Capture)
	cancel()
	stopWriter() // the writer commits what is queued, then stops
	close(alertsDone)
	wg.Wait()
	if err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	d.log.Info("adminalert: PortSentry is shutting down; blocks stay in the kernel until they expire.")
	return nil
}

// handle runs on the capture goroutine for every packet: decode, detect,
// hand off. Nothing here waits for I/O.
func (d *Daemon) handle(pkt []byte) {
	if c := d.cfgp.Load(); c != d.cfg {
		d.cfg = c
		d.det.SetConfig(detectConfig(c))
	}
	var p packet.Probe
	if err := packet.Decode(pkt, &p); err != nil {
		d.Counters.Malformed.Add(1)
		return
	}
	if p.Kind == packet.KindNone {
		d.Counters.NotProbes.Add(1)
		return
	}
	d.Counters.Probes[p.Kind].Add(1)
	now := time.Now()
	verdict, _ := d.det.Observe(&p, now)
	if verdict == detect.AlreadyBlocked {
		d.Counters.AlreadyBlock.Add(1)
		d.alerts.send(event{what: evAlreadyBlocked, probe: p})
		return
	}
	d.alerts.send(event{what: evProbe, probe: p})
	if verdict != detect.Trigger {
		return
	}
	resp := d.cfg.TCP.Response
	if p.Proto == packet.UDP {
		resp = d.cfg.UDP.Response
	}
	if resp != config.ResponseBlock {
		d.alerts.send(event{what: evLogOnly, probe: p})
		return
	}
	timeout := d.cfg.BlockTimeout()
	d.det.MarkBlocked(p.Src, now.Add(timeout))
	err := d.writer.Add(nft.Block{Addr: p.Src, Timeout: timeout, Done: func(err error) {
		if err != nil {
			d.Counters.BlockFailures.Add(1)
			d.alerts.send(event{what: evBlockFailed, probe: p, err: err})
			return
		}
		d.Counters.Blocks.Add(1)
		d.alerts.send(event{what: evBlocked, probe: p, timeout: timeout})
	}})
	if err != nil {
		d.det.MarkBlocked(p.Src, time.Time{})
		d.Counters.BlockFailures.Add(1)
		d.alerts.send(event{what: evBlockFailed, probe: p, err: err})
	}
}

func detectConfig(c *config.Config) detect.Config {
	return detect.Config{
		Trigger:    c.Detect.ScanTrigger,
		Window:     time.Duration(c.Detect.Window),
		MaxSources: c.Detect.MaxSources,
	}
}

// report logs losses as they happen (at most every few seconds): kernel
// drops, malformed packets, suppressed alert lines.
func (d *Daemon) report(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	var lost, overruns, malformed, suppressed uint64
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
	for key, set := range map[string]bool{
		"hosts_deny":        c.HostsDeny.Path != "",
		"commands":          len(c.Commands) > 0,
		"response: command": c.TCP.Response == config.ResponseCommand || c.UDP.Response == config.ResponseCommand,
		"resolve_host":      c.ResolveHost,
		"port_banner":       c.PortBanner != "",
	} {
		if set {
			d.log.Warn(fmt.Sprintf("adminalert: %s is configured but not acted on by this version; ignoring it", key))
		}
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
