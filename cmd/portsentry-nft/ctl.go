package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/control"
)

// ctlFlags registers the flags every control command has.
func ctlFlags(fs *flag.FlagSet) (socket *string, asJSON *bool) {
	socket = fs.String("socket", control.DefaultSocket, "control `socket` of the running daemon")
	asJSON = fs.Bool("json", false, "print the daemon's answer as JSON (for scripts)")
	return
}

// callDaemon sends req and prints errors the same way for every command.
func callDaemon(socket string, req control.Request, stderr io.Writer) (*control.Response, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := control.Call(ctx, socket, req)
	if err != nil {
		fmt.Fprintf(stderr, "portsentry-nft %s: %v\n", req.Cmd, err)
		return nil, false
	}
	return resp, true
}

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", "[--socket S] [--json]", "Shows the running daemon's version, uptime, configuration and counters.", stderr)
	socket, asJSON := ctlFlags(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	resp, ok := callDaemon(*socket, control.Request{Cmd: "status"}, stderr)
	if !ok {
		return 1
	}
	s := resp.Status
	if *asJSON {
		printJSON(stdout, s)
		return 0
	}
	fmt.Fprintf(stdout, "portsentry-nft %s (pid %d), up %s\n", s.Version, s.PID, s.Uptime)
	fmt.Fprintf(stdout, "config:     %s\n", s.ConfigFile)
	fmt.Fprintf(stdout, "capture:    %s group %d\n", s.CaptureMode, s.NFLOGGroup)
	fmt.Fprintf(stdout, "blocked:    %d IPv4, %d IPv6 (cap %d each)\n", s.SetSizes["blocked"], s.SetSizes["blocked6"], s.SetCap)
	fmt.Fprintf(stdout, "probes:\n")
	printCounts(stdout, s.Probes)
	fmt.Fprintf(stdout, "counters:\n")
	printCounts(stdout, s.Counters)
	return 0
}

func printCounts(w io.Writer, m map[string]uint64) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-24s %d\n", k, m[k])
	}
}

func cmdList(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("list", "[--socket S] [--json]", "Lists every blocked address with its remaining time, origin (detect, manual), scan type, the tool that sent the probe, ports, first/last probe and how often it was blocked.", stderr)
	socket, asJSON := ctlFlags(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), listTimeout)
	defer cancel()
	if *asJSON {
		return listJSON(ctx, *socket, stdout, stderr)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tREMAINING\tORIGIN\tSCAN TYPE\tTOOL\tPORTS\tFIRST SEEN\tLAST SEEN\tTIMES")
	err := control.CallList(ctx, *socket, func(b control.Block) error {
		ports := make([]string, len(b.Ports))
		for i, p := range b.Ports {
			ports[i] = fmt.Sprint(p)
		}
		origin := b.Origin
		if origin == "" {
			origin = "-"
		}
		tool := b.Tool
		if tool == "" {
			tool = "-"
		}
		_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", b.Addr, b.Remaining, origin, b.ScanType, tool, strings.Join(ports, ","),
			stamp(b.FirstSeen), stamp(b.LastSeen), b.TimesBlocked)
		return err
	})
	if err != nil {
		fmt.Fprintf(stderr, "portsentry-nft list: %v\n", err)
		return 1
	}
	tw.Flush()
	return 0
}

// listTimeout bounds list: a million blocks stream in seconds.
const listTimeout = 2 * time.Minute

// listJSON writes the blocks as a JSON array as they come, never all of
// them in memory.
func listJSON(ctx context.Context, socket string, stdout, stderr io.Writer) int {
	w := bufio.NewWriterSize(stdout, 64<<10)
	n := 0
	err := control.CallList(ctx, socket, func(b control.Block) error {
		js, err := json.MarshalIndent(b, "  ", "  ")
		if err != nil {
			return err
		}
		sep := ",\n  "
		if n == 0 {
			sep = "[\n  "
		}
		n++
		w.WriteString(sep)
		_, err = w.Write(js)
		return err
	})
	if err != nil {
		fmt.Fprintf(stderr, "portsentry-nft list: %v\n", err)
		w.Flush()
		return 1
	}
	if n == 0 {
		w.WriteString("[]\n")
	} else {
		w.WriteString("\n]\n")
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintf(stderr, "portsentry-nft list: %v\n", err)
		return 1
	}
	return 0
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func cmdBlock(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("block", "[--socket S] [--json] [--timeout D] [--file F] IP...",
		"Blocks each IP (IPv4 or IPv6) now, as if it had scanned: the element, the hosts.deny line and the\n"+
			"commands follow. All addresses go in one request and one netlink transaction, and either all are\n"+
			"blocked or none: the host's own addresses, gateways, nameservers and never_block are refused, and\n"+
			"so is a list that does not fit in the sets. --file F reads addresses from F (- for standard input),\n"+
			"one a line, # starting a comment. When the daemon cannot put the blocks on disk (its state directory\n"+
			"is full), they are in force but would not survive a restart: a warning says so, and the exit status is 1.", stderr)
	socket, asJSON := ctlFlags(fs)
	timeout := fs.String("timeout", "", "how long, e.g. 90s, 1h, 7d (default: block.timeout of the config)")
	file := fs.String("file", "", "read addresses from `F`, one a line (- for standard input)")
	addrs, code, ok := addrArgs(fs, args, file, stderr)
	if !ok {
		return code
	}
	if len(addrs) == 0 {
		fmt.Fprintf(stderr, "portsentry-nft block: no address given\n\n")
		fs.Usage()
		return 2
	}
	return ctlAddrs(*socket, *asJSON, control.Request{Cmd: "block", Addrs: addrs, Timeout: *timeout}, stdout, stderr)
}

func cmdUnblock(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("unblock", "[--socket S] [--json] [--file F] IP... | --all",
		"Lifts the block of each IP: its element, its hosts.deny line and its record, in one request.\n"+
			"--all lifts every block: both sets emptied, every hosts.deny line and record removed. When the daemon\n"+
			"cannot put the unblock on disk, a warning says a restart would bring the blocks back, and the exit\n"+
			"status is 1.", stderr)
	socket, asJSON := ctlFlags(fs)
	file := fs.String("file", "", "read addresses from `F`, one a line (- for standard input)")
	all := fs.Bool("all", false, "lift every block")
	addrs, code, ok := addrArgs(fs, args, file, stderr)
	if !ok {
		return code
	}
	if *all == (len(addrs) > 0) {
		fmt.Fprintf(stderr, "portsentry-nft unblock: give addresses or --all\n\n")
		fs.Usage()
		return 2
	}
	return ctlAddrs(*socket, *asJSON, control.Request{Cmd: "unblock", Addrs: addrs, All: *all}, stdout, stderr)
}

// addrArgs parses the flags and returns the addresses given as arguments
// and in the --file.
func addrArgs(fs *flag.FlagSet, args []string, file *string, stderr io.Writer) ([]string, int, bool) {
	addrs, code, ok := parseArgs(fs, args)
	if !ok {
		return nil, code, false
	}
	if *file == "" {
		return addrs, 0, true
	}
	more, err := readAddrFile(*file)
	if err != nil {
		fmt.Fprintf(stderr, "portsentry-nft %s: %v\n", fs.Name(), err)
		return nil, 1, false
	}
	return append(addrs, more...), 0, true
}

// readAddrFile reads one address a line; blank lines and what follows #
// are skipped.
func readAddrFile(path string) ([]string, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}

// ctlAddrs sends a block or unblock and says how many it did. One the
// daemon could not put on disk is not acknowledged: it is in force, and
// the warning on standard error and exit status 1 say it would not
// survive a restart.
func ctlAddrs(socket string, asJSON bool, req control.Request, stdout, stderr io.Writer) int {
	resp, ok := callDaemon(socket, req, stderr)
	if !ok {
		return 1
	}
	if asJSON {
		printJSON(stdout, resp)
	} else {
		printDone(stdout, req, resp)
	}
	if resp.NotDurable {
		fmt.Fprintf(stderr, "portsentry-nft %s: warning: %s\n", req.Cmd, resp.Warning)
		return 1
	}
	return 0
}

// printDone says what a block or unblock did.
func printDone(stdout io.Writer, req control.Request, resp *control.Response) {
	switch {
	case req.Cmd == "block" && len(req.Addrs) == 1:
		fmt.Fprintf(stdout, "blocked %s\n", req.Addrs[0])
	case req.Cmd == "block":
		fmt.Fprintf(stdout, "blocked %d addresses\n", resp.Count)
	case req.All:
		fmt.Fprintf(stdout, "unblocked all: %d blocks lifted\n", resp.Count)
	case len(req.Addrs) == 1:
		fmt.Fprintf(stdout, "unblocked %s\n", req.Addrs[0])
	default:
		fmt.Fprintf(stdout, "unblocked %d addresses (%d were blocked)\n", len(req.Addrs), resp.Count)
	}
}
