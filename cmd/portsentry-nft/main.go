// Command portsentry-nft is the PortSentry port-scan detector for nftables:
// one binary with subcommands (run, check, rules, import, version, ...).
// This package is only the command line; the work lives in internal/.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
)

// command is one subcommand. run returns the process exit code.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{
	"run":     {"run the daemon in the foreground (systemd runs this)", cmdRun},
	"check":   {"validate a configuration; problems are printed with file:line", cmdCheck},
	"rules":   {"print the nftables ruleset the daemon would install (nft -f input)", cmdRules},
	"import":  {"convert a legacy portsentry.conf (+ ignore file) to YAML", cmdImport},
	"version": {"print the version and commit", cmdVersion},
	"status":  {"show the running daemon's state and counters", cmdStatus},
	"list":    {"list blocked addresses with remaining time and scan details", cmdList},
	"block":   {"block addresses now (--timeout D, --file F)", cmdBlock},
	"unblock": {"lift the blocks of addresses, or of all (--all)", cmdUnblock},
	"fleet":   {"act as the fleet's administrator: block, unblock, list, setup (no daemon)", cmdFleet},
}

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	case "-version", "--version":
		args[0] = "version"
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "portsentry-nft: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	return c.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: portsentry-nft <command> [flags]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'portsentry-nft <command> --help' for the flags of a command.\n")
}

// newFlags makes the flag set of one subcommand; synopsis is the usage line
// after "portsentry-nft NAME", e.g. "[--config FILE]".
func newFlags(name, synopsis, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: portsentry-nft %s %s\n\n%s\n", name, synopsis, about)
		if hasFlags(fs) {
			fmt.Fprintf(stderr, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// parseArgs parses flags wherever they stand among the positional
// arguments, as admins type them (`block 203.0.113.7 --timeout 1h`); "--"
// ends the flags. It returns the positional arguments, or false with the
// exit code when the command should stop (help asked for: 0; bad flags: 2).
func parseArgs(fs *flag.FlagSet, args []string) (pos []string, code int, ok bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, 0, false
			}
			return nil, 2, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, 0, true
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), 0, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parseFlags is parseArgs for a command that takes no positional
// arguments: one is a usage error.
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	pos, code, ok := parseArgs(fs, args)
	if !ok {
		return code, false
	}
	if len(pos) > 0 {
		fmt.Fprintf(fs.Output(), "portsentry-nft %s: unexpected argument %q\n\n", fs.Name(), pos[0])
		fs.Usage()
		return 2, false
	}
	return 0, true
}
