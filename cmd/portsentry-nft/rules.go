package main

import (
	"fmt"
	"io"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/listeners"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// dumpSockets, when set, replaces reading the host's listening sockets
// (for tests); nil reads them with sock_diag, as the daemon does.
var dumpSockets func() ([]listeners.Socket, error)

// processName names the process holding a socket (for tests to replace).
var processName = listeners.ProcessName

func cmdRules(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("rules", "[--config FILE]",
		"Prints table inet portsentry as the daemon would install it now, as nft -f input:\n"+
			"the configuration's ruleset with the in-use sets holding the monitored ports a\n"+
			"service listens on (read with sock_diag; if they cannot be read, the sets are\n"+
			"printed empty and stderr says so).\n"+
			"Check it with: portsentry-nft rules | nft -c -f -", stderr)
	cfg, _, code, ok := parseConfigCommand(fs, args, stderr)
	if !ok {
		return code
	}
	var shape nft.Shape
	w := &listeners.Watcher{Dump: dumpSockets}
	if _, _, err := w.Update(); err != nil {
		fmt.Fprintf(stderr, "warning: could not read the listening sockets (sock_diag): %v; the in-use sets are printed empty\n", err)
	} else {
		shape.InUse = listeners.Elements(services(cfg, w.Snapshot().Sockets()), cfg.TCP.Monitored, cfg.UDP.Monitored)
	}
	fmt.Fprint(stdout, nft.Build(cfg, shape).Text())
	return 0
}

// services drops what the daemon does not count as a service: in verified
// mode, the TCP ports the daemon itself listens on are tripwires (a
// running portsentry-nft holds them), as the daemon's own in-use filter
// has it.
func services(cfg *config.Config, socks []listeners.Socket) []listeners.Socket {
	if !cfg.TCP.Verified {
		return socks
	}
	own := map[uint16]bool{}
	for _, s := range socks {
		if s.Proto == listeners.ProtoTCP && !own[s.Port] && processName(s.Inode) == "portsentry-nft" {
			own[s.Port] = true
		}
	}
	out := socks[:0:0]
	for _, s := range socks {
		if !(s.Proto == listeners.ProtoTCP && own[s.Port]) {
			out = append(out, s)
		}
	}
	return out
}
