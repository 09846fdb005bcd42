package ledger

import (
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
)

func hasFirst(cfg *config.Config) bool {
	for _, c := range cfg.Commands {
		if c.First {
			return true
		}
	}
	return false
}

// runCommands runs the selected commands in order on a goroutine of their
// own (bounded in number), then calls then.
func (l *Ledger) runCommands(ctx context.Context, cfg *config.Config, j job, pick func(config.Command) bool, then func()) {
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
	l.wg.Go(func() {
		select {
		case l.cmds <- struct{}{}:
		case <-ctx.Done():
			l.release(&j, false)
			if j.dec.Action == decide.Block {
				l.unreserve(j.dec.Addr)
			}
			return
		}
		for _, c := range sel {
			l.run(ctx, c, j)
		}
		<-l.cmds
		if then != nil {
			then()
		}
	})
}

func (l *Ledger) run(ctx context.Context, c config.Command, j job) {
	a, p := j.dec.Addr, j.ev.Probe
	rep := strings.NewReplacer("$TARGET$", a.String(), "$PORT$", strconv.Itoa(int(p.DstPort)), "$MODE$", mode(p.Proto))
	argv := make([]string, len(c.Argv))
	for i, arg := range c.Argv {
		argv[i] = rep.Replace(arg)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(c.Timeout))
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	l.Stats.CommandsRun.Add(1)
	text := strings.TrimSpace(string(out))
	if len(text) > 512 {
		text = text[:512] + "..."
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		l.Stats.CommandFailures.Add(1)
		l.c.Log.Errorf("command %q for host %s killed after %s; output: %q", argv[0], a, time.Duration(c.Timeout), text)
	case err != nil:
		l.Stats.CommandFailures.Add(1)
		l.c.Log.Errorf("command %q for host %s failed: %v; output: %q", argv[0], a, err, text)
	default:
		l.c.Log.Attack(alert.CommandLine(a, argv, text))
	}
}
