// Package respond carries out PortSentry's reactions once a source has
// tripped the trigger, off the capture path and in PortSentry's order:
// the commands marked first, the nftables block, the hosts.deny line, then
// the other commands. It also owns the life of a block after it lands:
// recording it in the state, lifting it (hosts.deny line removed) when it
// expires or an admin unblocks it, and the repeat-offender timeouts.
//
// The safety checks that must happen before any action (protected
// addresses, the block rate cap) are made by the caller on the capture
// path; the set size cap is checked here, where the count of active blocks
// is known.
package respond

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/hostsdeny"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// Trigger is one source that reached the trigger.
type Trigger struct {
	Probe       packet.Probe
	Time        time.Time
	First, Last time.Time
	Ports       []uint16 // ports probed, if known
	// Release, when set (NFQUEUE mode), gives the held probe its verdict:
	// drop once the block is committed, accept when no block is made.
	Release func(drop bool)
}

func (t *Trigger) release(drop bool) {
	if t.Release != nil {
		t.Release(drop)
		t.Release = nil
	}
}

// Stats are the responder's counters.
type Stats struct {
	Blocks          atomic.Uint64 // elements committed
	BlockFailures   atomic.Uint64
	SetFull         atomic.Uint64 // triggers not blocked because the set was full
	Expired         atomic.Uint64
	Unblocked       atomic.Uint64
	CommandsRun     atomic.Uint64
	CommandFailures atomic.Uint64
	HostsDenyErrors atomic.Uint64
}

// Namer resolves an address to a name for logs ("" when unknown).
type Namer func(netip.Addr) string

// Responder reacts to triggers. Create with New, then Run.
type Responder struct {
	log    *slog.Logger
	writer *nft.Writer
	store  *state.Store
	name   Namer
	cfg    atomic.Pointer[config.Config]
	in     chan Trigger
	done   chan committed
	cmds   chan struct{} // bounds concurrent commands
	wg     sync.WaitGroup
	// pending counts blocks queued in the writer, for the set size cap.
	pending  atomic.Int64
	fullWarn atomic.Int64 // unix time of the last "set full" warning
	Stats    Stats
	// OnBlock, when set before Run, is told the probe-to-commit latency of
	// each block.
	OnBlock func(time.Duration)
}

type committed struct {
	t       Trigger
	timeout time.Duration
	times   int
	err     error
}

// MaxConcurrentCommands bounds the external commands running at once.
const MaxConcurrentCommands = 8

// New makes a responder.
func New(cfg *config.Config, log *slog.Logger, w *nft.Writer, st *state.Store, name Namer) *Responder {
	if name == nil {
		name = func(netip.Addr) string { return "" }
	}
	r := &Responder{log: log, writer: w, store: st, name: name,
		in: make(chan Trigger, 4096), done: make(chan committed, 4096),
		cmds: make(chan struct{}, MaxConcurrentCommands)}
	r.cfg.Store(cfg)
	return r
}

// SetConfig swaps the configuration (reload).
func (r *Responder) SetConfig(cfg *config.Config) { r.cfg.Store(cfg) }

// Trigger queues a reaction without waiting; false when the queue is full.
func (r *Responder) Trigger(t Trigger) bool {
	select {
	case r.in <- t:
		return true
	default:
		return false
	}
}

// Run reacts to triggers and expires blocks until ctx is done, then waits
// for running commands.
func (r *Responder) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	defer r.wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-r.in:
			r.react(ctx, t)
		case c := <-r.done:
			r.landed(ctx, c)
		case now := <-tick.C:
			r.expire(now)
		}
	}
}

func mode(p packet.Proto) string {
	if p == packet.UDP {
		return "udp"
	}
	return "tcp"
}

func (r *Responder) react(ctx context.Context, t Trigger) {
	cfg := r.cfg.Load()
	resp := cfg.TCP.Response
	if t.Probe.Proto == packet.UDP {
		resp = cfg.UDP.Response
	}
	switch resp {
	case config.ResponseLog:
		t.release(false)
		r.log.Info(fmt.Sprintf("attackalert: Ignoring %s response per configuration file setting.", t.Probe.Proto))
		return
	case config.ResponseCommand:
		t.release(false)
		r.runCommands(ctx, cfg, t, func(c config.Command) bool { return true }, nil)
		return
	}
	if _, ok := r.store.Get(t.Probe.Src); ok {
		t.release(true)
		return // a manual or earlier block is in force
	}
	if limit := cfg.Block.SetSize; r.store.Len()+int(r.pending.Load()) >= limit {
		t.release(false)
		r.Stats.SetFull.Add(1)
		if now := time.Now().Unix(); r.fullWarn.Load() < now-60 {
			r.fullWarn.Store(now)
			r.log.Warn(fmt.Sprintf("adminalert: WARNING: the blocked sets are full (block.set_size %d); not blocking %s and further hosts until blocks expire (%d refused so far)", limit, t.Probe.Src, r.Stats.SetFull.Load()))
		}
		return
	}
	times := r.store.TimesBlocked(t.Probe.Src) + 1
	timeout := repeatTimeout(cfg, times)
	block := func() { r.block(t, timeout, times) }
	if hasFirst(cfg) {
		r.runCommands(ctx, cfg, t, func(c config.Command) bool { return c.First }, block)
		return
	}
	block()
}

// repeatTimeout is block.timeout times repeat_factor^(times-1), capped.
func repeatTimeout(cfg *config.Config, times int) time.Duration {
	d := time.Duration(cfg.Block.Timeout)
	max := time.Duration(cfg.Block.MaxTimeout)
	for i := 1; i < times && d < max; i++ {
		d *= time.Duration(cfg.Block.RepeatFactor)
	}
	return min(d, max)
}

func hasFirst(cfg *config.Config) bool {
	for _, c := range cfg.Commands {
		if c.First {
			return true
		}
	}
	return false
}

func (r *Responder) block(t Trigger, timeout time.Duration, times int) {
	r.pending.Add(1)
	err := r.writer.Add(nft.Block{Addr: t.Probe.Src, Timeout: timeout, Done: func(err error) {
		// On the writer goroutine: hand back, never wait.
		select {
		case r.done <- committed{t, timeout, times, err}:
		default:
			go func() { r.done <- committed{t, timeout, times, err} }()
		}
	}})
	if err != nil {
		t.release(false)
		r.pending.Add(-1)
		r.Stats.BlockFailures.Add(1)
		r.log.Error(fmt.Sprintf("adminalert: ERROR: could not block host %s: %v", t.Probe.Src, err))
	}
}

// landed runs once the element is in the kernel (or could not be added).
func (r *Responder) landed(ctx context.Context, c committed) {
	r.pending.Add(-1)
	c.t.release(c.err == nil)
	p := c.t.Probe
	if c.err != nil {
		r.Stats.BlockFailures.Add(1)
		r.log.Error(fmt.Sprintf("adminalert: ERROR: could not block host %s: %v", p.Src, c.err))
		return
	}
	r.Stats.Blocks.Add(1)
	if r.OnBlock != nil {
		r.OnBlock(time.Since(c.t.Time))
	}
	cfg := r.cfg.Load()
	set := nft.SetBlocked
	if p.Src.Is6() {
		set = nft.SetBlocked6
	}
	extra := ""
	if c.times > 1 {
		extra = fmt.Sprintf(", block %d of this host", c.times)
	}
	r.log.Info(fmt.Sprintf("attackalert: Host %s has been blocked via nftables set inet %s %s (timeout %s%s)", p.Src, nft.TableName, set, c.timeout, extra))
	b := state.Block{
		Addr: p.Src, Timeout: c.timeout, Expires: c.t.Time.Add(c.timeout),
		Kind: p.Kind.String(), Proto: p.Proto.String(), Port: p.DstPort, Ports: c.t.Ports,
		First: c.t.First, Last: c.t.Last, Times: c.times, Host: r.name(p.Src),
	}
	if cfg.HostsDeny.Path != "" {
		line := hostsdeny.Line(cfg.HostsDeny.Template, wrapTarget(p.Src), strconv.Itoa(int(p.DstPort)), mode(p.Proto))
		if _, err := (&hostsdeny.File{Path: cfg.HostsDeny.Path}).Add(line); err != nil {
			r.Stats.HostsDenyErrors.Add(1)
			r.log.Error(fmt.Sprintf("adminalert: ERROR: could not write %s for host %s: %v", cfg.HostsDeny.Path, p.Src, err))
		} else {
			b.HostsDeny = line
			r.log.Info(fmt.Sprintf("attackalert: Host %s has been blocked via wrappers with string: \"%s\"", p.Src, line))
		}
	}
	if err := r.store.Add(b); err != nil {
		r.log.Error(fmt.Sprintf("adminalert: ERROR: could not record the block of %s: %v", p.Src, err))
	}
	r.runCommands(ctx, cfg, c.t, func(c config.Command) bool { return !c.First }, nil)
}

// wrapTarget writes an address as TCP wrappers expects it ([v6]).
func wrapTarget(a netip.Addr) string {
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}

// Manual blocks a host from the control socket, with the same follow-up
// as a detected scan.
func (r *Responder) Manual(ctx context.Context, a netip.Addr, timeout time.Duration) error {
	a = a.Unmap()
	if err := r.writer.Commit(ctx, []nft.Block{{Addr: a, Timeout: timeout}}); err != nil {
		return err
	}
	now := time.Now()
	times := r.store.TimesBlocked(a) + 1
	if err := r.store.Add(state.Block{Addr: a, Timeout: timeout, Expires: now.Add(timeout), Kind: "manual", First: now, Last: now, Times: times}); err != nil {
		return err
	}
	r.Stats.Blocks.Add(1)
	r.log.Info(fmt.Sprintf("attackalert: Host %s has been blocked via nftables set inet %s by an administrator (timeout %s)", a, nft.TableName, timeout))
	return nil
}

// Unblock lifts a block: the element, the hosts.deny line and the record.
func (r *Responder) Unblock(ctx context.Context, a netip.Addr) error {
	a = a.Unmap()
	if err := r.writer.Delete(ctx, a); err != nil {
		return err
	}
	b, ok := r.store.Remove(a)
	if ok {
		r.lift(b)
	}
	r.Stats.Unblocked.Add(1)
	r.log.Info(fmt.Sprintf("attackalert: Host %s has been unblocked by an administrator", a))
	return nil
}

func (r *Responder) expire(now time.Time) {
	for _, b := range r.store.Expire(now) {
		r.Stats.Expired.Add(1)
		r.lift(b)
		r.log.Info(fmt.Sprintf("adminalert: Block of host %s expired", b.Addr))
	}
}

// lift undoes the side effects of a block that the kernel already dropped.
func (r *Responder) lift(b state.Block) {
	cfg := r.cfg.Load()
	if b.HostsDeny == "" || cfg.HostsDeny.Path == "" {
		return
	}
	if _, err := (&hostsdeny.File{Path: cfg.HostsDeny.Path}).Remove(b.HostsDeny); err != nil {
		r.Stats.HostsDenyErrors.Add(1)
		r.log.Error(fmt.Sprintf("adminalert: ERROR: could not remove %s from %s: %v", b.Addr, cfg.HostsDeny.Path, err))
	}
}

// runCommands runs the selected commands in order on a goroutine of their
// own (bounded in number), then calls then.
func (r *Responder) runCommands(ctx context.Context, cfg *config.Config, t Trigger, pick func(config.Command) bool, then func()) {
	var sel []config.Command
	for _, c := range cfg.Commands {
		if pick(c) {
			sel = append(sel, c)
		}
	}
	if len(sel) == 0 {
		if then != nil {
			then()
		}
		return
	}
	r.wg.Go(func() {
		select {
		case r.cmds <- struct{}{}:
		case <-ctx.Done():
			t.release(false)
			return
		}
		for _, c := range sel {
			r.run(ctx, c, t)
		}
		<-r.cmds
		if then != nil {
			// Hand the block back to the responder goroutine's order of work.
			then()
		}
	})
}

func (r *Responder) run(ctx context.Context, c config.Command, t Trigger) {
	p := t.Probe
	rep := strings.NewReplacer("$TARGET$", p.Src.String(), "$PORT$", strconv.Itoa(int(p.DstPort)), "$MODE$", mode(p.Proto))
	argv := make([]string, len(c.Argv))
	for i, a := range c.Argv {
		argv[i] = rep.Replace(a)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(c.Timeout))
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	r.Stats.CommandsRun.Add(1)
	text := strings.TrimSpace(string(out))
	if len(text) > 512 {
		text = text[:512] + "..."
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		r.Stats.CommandFailures.Add(1)
		r.log.Error(fmt.Sprintf("adminalert: ERROR: command %q for host %s killed after %s; output: %q", argv[0], p.Src, time.Duration(c.Timeout), text))
	case err != nil:
		r.Stats.CommandFailures.Add(1)
		r.log.Error(fmt.Sprintf("adminalert: ERROR: command %q for host %s failed: %v; output: %q", argv[0], p.Src, err, text))
	default:
		r.log.Info(fmt.Sprintf("attackalert: External command run for host: %s using command: %q; output: %q", p.Src, strings.Join(argv, " "), text))
	}
}
