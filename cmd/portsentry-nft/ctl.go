package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
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
	fs := newFlags("list", "[--socket S] [--json]", "Lists every blocked address with its remaining time, scan type, ports, first/last probe and how often it was blocked.", stderr)
	socket, asJSON := ctlFlags(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	resp, ok := callDaemon(*socket, control.Request{Cmd: "list"}, stderr)
	if !ok {
		return 1
	}
	if *asJSON {
		if resp.Blocks == nil {
			resp.Blocks = []control.Block{}
		}
		printJSON(stdout, resp.Blocks)
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tREMAINING\tSCAN TYPE\tPORTS\tFIRST SEEN\tLAST SEEN\tTIMES")
	for _, b := range resp.Blocks {
		ports := make([]string, len(b.Ports))
		for i, p := range b.Ports {
			ports[i] = fmt.Sprint(p)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", b.Addr, b.Remaining, b.ScanType, strings.Join(ports, ","),
			stamp(b.FirstSeen), stamp(b.LastSeen), b.TimesBlocked)
	}
	tw.Flush()
	return 0
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func cmdBlock(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("block", "[--socket S] [--json] [--timeout D] IP", "Blocks IP (IPv4 or IPv6) now, as if it had scanned: the element, the hosts.deny line and the commands follow. The host's own addresses, gateways and nameservers are refused.", stderr)
	socket, asJSON := ctlFlags(fs)
	timeout := fs.String("timeout", "", "how long, e.g. 90s, 1h, 7d (default: block.timeout of the config)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	return ctlSimple(*socket, *asJSON, control.Request{Cmd: "block", Addr: fs.Arg(0), Timeout: *timeout}, stdout, stderr)
}

func cmdUnblock(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("unblock", "[--socket S] [--json] IP", "Lifts the block of IP: its element, its hosts.deny line and its record.", stderr)
	socket, asJSON := ctlFlags(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	return ctlSimple(*socket, *asJSON, control.Request{Cmd: "unblock", Addr: fs.Arg(0)}, stdout, stderr)
}

func ctlSimple(socket string, asJSON bool, req control.Request, stdout, stderr io.Writer) int {
	resp, ok := callDaemon(socket, req, stderr)
	if !ok {
		if asJSON && resp != nil {
			printJSON(stdout, resp)
		}
		return 1
	}
	if asJSON {
		printJSON(stdout, resp)
		return 0
	}
	fmt.Fprintf(stdout, "%sed %s\n", req.Cmd, req.Addr)
	return 0
}
