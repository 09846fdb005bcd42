package follow

import (
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// MaxConcurrentCommands bounds the external commands running at once.
const MaxConcurrentCommands = 8

// Commands runs the configured commands (KILL_RUN_CMD), $TARGET$, $PORT$
// and $MODE$ replaced, each batch in order on a goroutine of its own,
// at most MaxConcurrentCommands at once. As a follower (in
// ledger.Config.Announcers) it runs those that follow a block: the
// commands not marked first, and every command for an administrator's
// block. It is also the ledger's ledger.Commands.
type Commands struct {
	Settings func() *config.Config
	Log      *alert.Log

	Run, Failures atomic.Uint64

	once sync.Once
	slot chan struct{}
	wg   sync.WaitGroup
}

// Blocked runs the commands that follow e's block.
func (c *Commands) Blocked(ctx context.Context, e *ledger.Entry) {
	manual := e.Decision.Origin == state.OriginManual
	c.start(ctx, *e, func(cmd config.Command) bool { return !cmd.First || manual }, nil)
}

// Lifted runs nothing: commands follow blocks only.
func (c *Commands) Lifted(context.Context, ledger.Lift) {}

// Before runs the commands marked first, then calls then.
func (c *Commands) Before(ctx context.Context, e ledger.Entry, then func(ok bool)) bool {
	return c.start(ctx, e, func(cmd config.Command) bool { return cmd.First }, then)
}

// Respond runs every command (response "command").
func (c *Commands) Respond(ctx context.Context, e ledger.Entry) {
	c.start(ctx, e, func(config.Command) bool { return true }, nil)
}

// Wait waits for the commands running.
func (c *Commands) Wait() { c.wg.Wait() }

// start runs the selected commands in order on a goroutine of their own
// once a slot is free, then calls then (ok false when ctx ended before a
// slot). It reports whether any command was selected.
func (c *Commands) start(ctx context.Context, e ledger.Entry, pick func(config.Command) bool, then func(ok bool)) bool {
	var sel []config.Command
	for _, cmd := range c.Settings().Commands {
		if pick(cmd) {
			sel = append(sel, cmd)
		}
	}
	if len(sel) == 0 {
		return false
	}
	c.once.Do(func() { c.slot = make(chan struct{}, MaxConcurrentCommands) })
	c.wg.Go(func() {
		select {
		case c.slot <- struct{}{}:
		case <-ctx.Done():
			if then != nil {
				then(false)
			}
			return
		}
		for _, cmd := range sel {
			c.run(ctx, cmd, e)
		}
		<-c.slot
		if then != nil {
			then(true)
		}
	})
	return true
}

func (c *Commands) run(ctx context.Context, cmd config.Command, e ledger.Entry) {
	a, p := e.Decision.Addr, e.Evidence.Probe
	rep := strings.NewReplacer("$TARGET$", a.String(), "$PORT$", strconv.Itoa(int(p.DstPort)), "$MODE$", Mode(p.Proto))
	argv := make([]string, len(cmd.Argv))
	for i, arg := range cmd.Argv {
		argv[i] = rep.Replace(arg)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(cmd.Timeout))
	defer cancel()
	x := exec.CommandContext(ctx, argv[0], argv[1:]...)
	x.WaitDelay = time.Second
	out, err := x.CombinedOutput()
	c.Run.Add(1)
	text := strings.TrimSpace(string(out))
	if len(text) > 512 {
		text = text[:512] + "..."
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		c.Failures.Add(1)
		c.Log.Errorf("command %q for host %s killed after %s; output: %q", argv[0], a, time.Duration(cmd.Timeout), text)
	case err != nil:
		c.Failures.Add(1)
		c.Log.Errorf("command %q for host %s failed: %v; output: %q", argv[0], a, err, text)
	default:
		c.Log.Attack(alert.CommandLine(a, argv, text))
	}
}
