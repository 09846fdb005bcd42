package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/listeners"
)

// configFlag registers --config (and -c) on fs.
func configFlag(fs interface {
	StringVar(p *string, name, value, usage string)
}) *string {
	p := new(string)
	fs.StringVar(p, "config", config.DefaultPath, "configuration `file` (the embedded default runs when the default path does not exist)")
	return p
}

// parseConfigCommand parses the flags of a command that takes --config
// and loads the configuration. ok false: stop with code (help, bad flags,
// or a configuration with errors, which are printed).
func parseConfigCommand(fs *flag.FlagSet, args []string, stderr io.Writer) (cfg *config.Config, path string, code int, ok bool) {
	p := configFlag(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return nil, "", code, false
	}
	cfg, ok = loadConfig(*p, stderr)
	if !ok {
		return nil, "", 1, false
	}
	return cfg, *p, 0, true
}

// printConfigErrors prints a configuration's errors, one a line (each with
// its file, line and key).
func printConfigErrors(err error, stderr io.Writer) {
	var es config.Errors
	if !errors.As(err, &es) {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return
	}
	for _, e := range es {
		fmt.Fprintf(stderr, "error: %v\n", e)
	}
}

// loadConfig loads the configuration and prints its warnings and errors.
func loadConfig(path string, stderr io.Writer) (*config.Config, bool) {
	cfg, err := config.Load(path)
	if err != nil {
		printConfigErrors(err, stderr)
		return nil, false
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "warning: %v\n", w)
	}
	return cfg, true
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", "[--config FILE]",
		"Validates the configuration. Each problem is printed as file:line:column: key: message;\nthe exit status is 1 when there is at least one error.", stderr)
	cfg, _, code, ok := parseConfigCommand(fs, args, stderr)
	if !ok {
		return code
	}
	fmt.Fprintf(stdout, "%s: OK (%d TCP and %d UDP ports monitored, %d ignore entries, block timeout %s)\n",
		cfg.File, len(cfg.TCP.Monitored), len(cfg.UDP.Monitored), len(cfg.IgnorePrefixes), cfg.Block.Timeout)
	reportFleet(cfg.Fleet, stdout)
	reportInUse(cfg, stdout)
	return 0
}

// reportFleet says what the fleet section protects: the servers' and the
// listed hosts' addresses are never blocked here, whatever a host of the
// fleet publishes about itself.
func reportFleet(f config.Fleet, w io.Writer) {
	if !f.Enabled() {
		return
	}
	servers, what := len(f.ServerHosts()), "servers"
	if servers == 1 {
		what = "server"
	}
	fmt.Fprintf(w, "fleet: %s, %d %s; never blocked: their addresses and %d fleet.hosts entries\n",
		f.Name, servers, what, len(f.HostPrefixes))
	if len(f.HostPrefixes) == 0 {
		fmt.Fprintln(w, "note: fleet.hosts is empty: the other hosts of the fleet are not protected here (list their addresses or subnets)")
	}
}

// reportInUse lists monitored ports that a service listens on right now:
// they are not tripwires while it does. Silent when the sockets cannot be
// read (not root).
func reportInUse(cfg *config.Config, w io.Writer) {
	socks, err := listeners.Dump(nil)
	if err != nil {
		return
	}
	seen := map[string]bool{}
	for _, s := range socks {
		ports := cfg.TCP.Monitored
		if s.Proto == listeners.ProtoUDP {
			ports = cfg.UDP.Monitored
		}
		if !slices.Contains(ports, s.Port) {
			continue
		}
		line := fmt.Sprintf("note: %s is in use", s)
		if name := listeners.ProcessName(s.Inode); name != "" {
			line += " by " + name
		}
		if !seen[line] {
			seen[line] = true
			fmt.Fprintln(w, line+": not watched while it listens")
		}
	}
}
