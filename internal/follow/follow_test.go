package follow_test

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/alert"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/decide"
	"github.com/portsentry-nft/portsentry-nft/internal/follow"
	"github.com/portsentry-nft/portsentry-nft/internal/ledger"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

func settings(t *testing.T, yaml string) func() *config.Config {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return func() *config.Config { return cfg }
}

func logTo(out *netnstest.Output) *alert.Log {
	return alert.New(slog.New(slog.NewTextHandler(out, nil)), nil)
}

func entry(a string, o state.Origin) *ledger.Entry {
	addr := netip.MustParseAddr(a)
	d := decide.Decision{Action: decide.Block, Addr: addr, Origin: o, Timeout: time.Hour, Times: 1}
	return &ledger.Entry{Decision: d, At: time.Now(),
		Evidence: ledger.Evidence{Probe: packet.Probe{Src: addr, Proto: packet.TCP, Kind: packet.KindSYN, DstPort: 79}},
		Record:   state.Block{Addr: addr, Timeout: time.Hour, Times: 1, Origin: o}}
}

// hosts.deny: the line goes into the file and into the record (before the
// journal), and the lift removes exactly that line, whatever the template
// says by then.
func TestHostsDeny(t *testing.T) {
	deny := filepath.Join(t.TempDir(), "hosts.deny")
	if err := os.WriteFile(deny, []byte("# existing\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &follow.HostsDeny{Settings: settings(t, "hosts_deny: {path: "+deny+", template: 'ALL: $TARGET$ # $PORT$ $MODE$'}\n"), Log: logTo(&netnstest.Output{})}
	e := entry("fd00:201::2", state.OriginDetect)
	h.Blocked(context.Background(), e)
	if e.Record.HostsDeny != "ALL: [fd00:201::2] # 79 tcp" {
		t.Errorf("record's line %q", e.Record.HostsDeny)
	}
	if data, _ := os.ReadFile(deny); !strings.Contains(string(data), "ALL: [fd00:201::2] # 79 tcp\n") {
		t.Errorf("hosts.deny:\n%s", data)
	}
	h.Lifted(context.Background(), ledger.Lift{Addr: e.Decision.Addr, Cause: ledger.Expired, Held: true, Record: e.Record})
	if data, _ := os.ReadFile(deny); string(data) != "# existing\n" {
		t.Errorf("hosts.deny after the lift:\n%s", data)
	}
	h.Lifted(context.Background(), ledger.Lift{Addr: e.Decision.Addr, Cause: ledger.Disowned})
	if h.Errors.Load() != 0 {
		t.Errorf("%d errors", h.Errors.Load())
	}
}

// hosts.deny that cannot be written is counted and logged; the block stands.
func TestHostsDenyError(t *testing.T) {
	var out netnstest.Output
	h := &follow.HostsDeny{Settings: settings(t, "hosts_deny: {path: /nonexistent/dir/hosts.deny}\n"), Log: logTo(&out)}
	e := entry("10.201.0.2", state.OriginDetect)
	h.Blocked(context.Background(), e)
	if e.Record.HostsDeny != "" || h.Errors.Load() != 1 || !strings.Contains(out.String(), "could not write /nonexistent/dir/hosts.deny for host 10.201.0.2") {
		t.Errorf("line %q, %d errors, log:\n%s", e.Record.HostsDeny, h.Errors.Load(), out.String())
	}
}

// Each block and each lift writes PortSentry's line for it.
func TestLines(t *testing.T) {
	var out netnstest.Output
	w := follow.Lines{Log: logTo(&out)}
	ctx := context.Background()
	for _, o := range []state.Origin{state.OriginDetect, state.OriginManual, state.OriginKernel, state.OriginFleet} {
		w.Blocked(ctx, entry("10.201.0.2", o))
	}
	a := netip.MustParseAddr("10.201.0.3")
	for _, c := range []ledger.Cause{ledger.Unblocked, ledger.Evicted, ledger.Expired, ledger.Protected} {
		w.Lifted(ctx, ledger.Lift{Addr: a, Cause: c})
	}
	w.Lifted(ctx, ledger.Lift{Addr: a, Cause: ledger.Disowned, Why: "it is protected (default gateway)"})
	for _, want := range []string{
		"Host 10.201.0.2 has been blocked via nftables set inet portsentry blocked (timeout 1h0m0s)",
		"Host 10.201.0.2 has been blocked via nftables set inet portsentry blocked by an administrator (timeout 1h0m0s)",
		"Host 10.201.0.2 has been blocked via nftables set inet portsentry blocked by the kernel (timeout 1h0m0s)",
		"Host 10.201.0.2 has been blocked via nftables set inet portsentry blocked by the fleet (timeout 1h0m0s)",
		alert.UnblockedLine(a), alert.EvictedLine(a), "Block of host 10.201.0.3 expired",
		alert.LiftedLine(a, "it is protected (default gateway)"),
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, out.String())
		}
	}
	if n := strings.Count(out.String(), "10.201.0.3"); n != 4 {
		t.Errorf("%d lines of lifts, want 4 (a newly protected address's lift is the daemon's to say)", n)
	}
}

// Commands: those that follow a block (not first; every one for an
// administrator's), those marked first before the element, the response
// "command"; substituted; counted.
func TestCommands(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "ran")
	c := &follow.Commands{Settings: settings(t, "commands: [{argv: [/bin/sh, -c, 'echo first $TARGET$ >> "+mark+"'], first: true}, "+
		"{argv: [/bin/sh, -c, 'echo after $TARGET$ $PORT$ $MODE$ >> "+mark+"']}]\n"), Log: logTo(&netnstest.Output{})}
	ctx := context.Background()
	done := make(chan bool, 1)
	if !c.Before(ctx, *entry("10.201.0.2", state.OriginDetect), func(ok bool) { done <- ok }) {
		t.Fatal("Before ran nothing")
	}
	if !<-done {
		t.Fatal("Before: not ok")
	}
	c.Blocked(ctx, entry("10.201.0.2", state.OriginDetect))
	c.Blocked(ctx, entry("10.201.0.4", state.OriginManual))
	c.Respond(ctx, *entry("10.201.0.5", state.OriginDetect))
	c.Wait()
	data, _ := os.ReadFile(mark)
	got := strings.Split(strings.TrimSpace(string(data)), "\n")
	want := map[string]bool{"first 10.201.0.2": true, "after 10.201.0.2 79 tcp": true, "first 10.201.0.4": true, "after 10.201.0.4 79 tcp": true,
		"first 10.201.0.5": true, "after 10.201.0.5 79 tcp": true}
	for _, l := range got {
		delete(want, l)
	}
	if len(want) != 0 || len(got) != 6 || c.Run.Load() != 6 || c.Failures.Load() != 0 {
		t.Errorf("ran %q (%d counted, %d failed); missing %v", got, c.Run.Load(), c.Failures.Load(), want)
	}
}

// No command marked first: Before runs nothing and says so, so the
// element goes in at once.
func TestCommandsBeforeWithoutFirst(t *testing.T) {
	c := &follow.Commands{Settings: settings(t, ""), Log: logTo(&netnstest.Output{})}
	if c.Before(context.Background(), *entry("10.201.0.2", state.OriginDetect), func(bool) { t.Error("then called") }) {
		t.Error("Before reported commands to run")
	}
}

// The followers of a Set are wired in their places.
func TestSetWire(t *testing.T) {
	s := follow.NewSet(settings(t, ""), logTo(&netnstest.Output{}))
	var c ledger.Config
	s.Wire(&c)
	if c.Commands != s.Commands || len(c.Followers) != 1 || c.Followers[0] != s.HostsDeny || len(c.Announcers) != 2 || c.Announcers[1] != s.Commands {
		t.Errorf("wired %+v", c)
	}
}
