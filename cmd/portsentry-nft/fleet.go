package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/fleet"
)

// The fleet command acts as the fleet's administrator, from an
// administrator's machine: it talks to the NATS servers directly with the
// administrator's credentials (never deployed on a host), and needs no
// daemon. What it writes is under the key host admin, the records every
// host trusts as the administrator's.

// fleetCommands are the subcommands of fleet.
var fleetCommands = map[string]command{
	"block":   {"block addresses on every host (--timeout D, --file F, --reason R)", cmdFleetBlock},
	"unblock": {"lift addresses on every host, whichever host blocked them", cmdFleetUnblock},
	"list":    {"list every host's blocks and the lifts (--json)", cmdFleetList},
	"setup":   {"create or update the buckets with their limits (--hosts N, --replicas R)", cmdFleetSetup},
}

const fleetAbout = "Acts as the fleet's administrator: talks to the fleet's NATS servers with the credentials of the\n" +
	"administrator's file (--config: a fleet section with name: admin, the administrator's user), with no\n" +
	"daemon. Every host trusts what is written under that name: blocks, and lifts of every host's blocks.\n\n" +
	"Subcommands:\n"

func cmdFleet(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if c, ok := fleetCommands[args[0]]; ok {
			return c.run(args[1:], stdout, stderr)
		}
	}
	about := fleetAbout
	for _, n := range []string{"block", "unblock", "list", "setup"} {
		about += fmt.Sprintf("  %-8s %s\n", n, fleetCommands[n].summary)
	}
	fs := newFlags("fleet", "block|unblock|list|setup --config ADMIN.yaml [flags]", strings.TrimSuffix(about, "\n"), stderr)
	adminFlags(fs)
	jsonFlag(fs)
	if len(args) == 0 {
		fs.Usage()
		return 2
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	fmt.Fprintf(stderr, "portsentry-nft fleet: give a subcommand\n\n")
	fs.Usage()
	return 2
}

// adminFlags registers the flag every fleet subcommand has.
func adminFlags(fs *flag.FlagSet) (path *string) {
	return fs.String("config", "", "the administrator's `FILE` (a fleet section with name: admin); required")
}

// jsonFlag registers --json.
func jsonFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("json", false, "print the result as JSON (for scripts)")
}

// dialAdmin loads the administrator's file and connects with it; code is
// the exit code when it cannot (2: no --config).
func dialAdmin(fs *flag.FlagSet, path string, stderr io.Writer) (a *fleet.Admin, cfg *config.Config, code int) {
	if path == "" {
		fmt.Fprintf(stderr, "portsentry-nft %s: --config ADMIN.yaml is required\n\n", fs.Name())
		fs.Usage()
		return nil, nil, 2
	}
	a, cfg, ok := dial(fs, path, stderr)
	if !ok {
		return nil, nil, 1
	}
	return a, cfg, 0
}

func dial(fs *flag.FlagSet, path string, stderr io.Writer) (*fleet.Admin, *config.Config, bool) {
	cfg, err := config.LoadFleetAdmin(path)
	if err != nil {
		printConfigErrors(err, stderr)
		return nil, nil, false
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "warning: %v\n", w)
	}
	a, err := fleet.DialAdmin(cfg.Fleet)
	if err != nil {
		fmt.Fprintf(stderr, "portsentry-nft %s: %v\n", fs.Name(), err)
		return nil, nil, false
	}
	return a, cfg, true
}

// fleetAddrs parses the addresses given as arguments and in --file.
func fleetAddrs(fs *flag.FlagSet, args []string, file *string, stderr io.Writer) ([]netip.Addr, int, bool) {
	strs, code, ok := addrArgs(fs, args, file, stderr)
	if !ok {
		return nil, code, false
	}
	if len(strs) == 0 {
		fmt.Fprintf(stderr, "portsentry-nft %s: no address given\n\n", fs.Name())
		fs.Usage()
		return nil, 2, false
	}
	var out []netip.Addr
	for _, s := range strs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			fmt.Fprintf(stderr, "portsentry-nft %s: %q is not an IP address\n", fs.Name(), s)
			return nil, 2, false
		}
		out = append(out, a.Unmap())
	}
	return out, 0, true
}

// count names one address, or says how many.
func count(addrs []netip.Addr) string {
	if len(addrs) == 1 {
		return addrs[0].String()
	}
	return fmt.Sprintf("%d addresses", len(addrs))
}

// fleetContext bounds one subcommand's talk with the servers.
func fleetContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Minute)
}

func cmdFleetBlock(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("fleet block", "--config ADMIN.yaml [--timeout D] [--reason R] [--file F] IP...",
		"Blocks each IP on every host of the fleet, as the fleet's administrator: a record under the name admin,\n"+
			"which every host enforces as the administrator's unless its own guard rails protect the address.\n"+
			"The timeout is capped at the file's fleet.max_timeout.", stderr)
	path := adminFlags(fs)
	timeout := fs.String("timeout", "", "how long, e.g. 90s, 1h, 7d (default: block.timeout of the administrator's file)")
	reason := fs.String("reason", "", "why, shown with the block on every host")
	file := fs.String("file", "", "read addresses from `F`, one a line (- for standard input)")
	addrs, code, ok := fleetAddrs(fs, args, file, stderr)
	if !ok {
		return code
	}
	adm, cfg, code := dialAdmin(fs, *path, stderr)
	if adm == nil {
		return code
	}
	defer adm.Close()
	d := time.Duration(cfg.Block.Timeout)
	if *timeout != "" {
		var err error
		if d, err = config.ParseDuration(*timeout); err != nil {
			fmt.Fprintf(stderr, "portsentry-nft fleet block: --timeout: %v\n", err)
			return 2
		}
	}
	d = min(d, time.Duration(cfg.Fleet.MaxTimeout))
	ctx, cancel := fleetContext()
	defer cancel()
	if err := adm.Block(ctx, addrs, d, *reason); err != nil {
		fmt.Fprintf(stderr, "portsentry-nft fleet block: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "blocked %s on every host for %s\n", count(addrs), config.Duration(d))
	return 0
}

func cmdFleetUnblock(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("fleet unblock", "--config ADMIN.yaml [--file F] IP...",
		"Lifts each IP on every host of the fleet, as the fleet's administrator: every host's block of it that\n"+
			"began before the lift ends, whatever its origin and whichever host published it.", stderr)
	path := adminFlags(fs)
	file := fs.String("file", "", "read addresses from `F`, one a line (- for standard input)")
	addrs, code, ok := fleetAddrs(fs, args, file, stderr)
	if !ok {
		return code
	}
	adm, _, code := dialAdmin(fs, *path, stderr)
	if adm == nil {
		return code
	}
	defer adm.Close()
	ctx, cancel := fleetContext()
	defer cancel()
	if err := adm.Unblock(ctx, addrs); err != nil {
		fmt.Fprintf(stderr, "portsentry-nft fleet unblock: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "lifted %s on every host\n", count(addrs))
	return 0
}

func cmdFleetList(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("fleet list", "--config ADMIN.yaml [--json]",
		"Lists every host's blocks as the fleet's buckets hold them (the host whose record it is, admin for the\n"+
			"administrator's; the evidence the host claims), then the lifts.", stderr)
	path, asJSON := adminFlags(fs), jsonFlag(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	adm, _, code := dialAdmin(fs, *path, stderr)
	if adm == nil {
		return code
	}
	defer adm.Close()
	ctx, cancel := fleetContext()
	defer cancel()
	l, err := adm.List(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "portsentry-nft fleet list: %v\n", err)
		return 1
	}
	if *asJSON {
		printJSON(stdout, listingJSON(l))
		return 0
	}
	printListing(stdout, l, time.Now())
	return 0
}

// listing is fleet list's JSON.
type listing struct {
	Blocks     []listedBlock `json:"blocks"`
	Lifts      []listedLift  `json:"lifts"`
	Unreadable int           `json:"unreadable"`
}

type listedBlock struct {
	Addr     string    `json:"addr"`
	Host     string    `json:"host"`
	Admin    bool      `json:"admin"`
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires"`
	Origin   string    `json:"origin"`
	Evidence string    `json:"evidence"`
	ScanType string    `json:"scan_type,omitempty"`
	Tool     string    `json:"tool,omitempty"`
	Ports    []uint16  `json:"ports,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Seen     []string  `json:"seen,omitempty"`
}

type listedLift struct {
	Addr  string    `json:"addr"`
	By    string    `json:"by"`
	Admin bool      `json:"admin"`
	At    time.Time `json:"at"`
}

func listingJSON(l fleet.Listing) listing {
	out := listing{Blocks: []listedBlock{}, Lifts: []listedLift{}, Unreadable: l.Unreadable}
	for _, r := range l.Blocks {
		out.Blocks = append(out.Blocks, listedBlock{Addr: r.Addr.String(), Host: r.Host, Admin: r.Admin, Created: r.Created,
			Expires: r.Expires, Origin: r.Origin, Evidence: r.Evidence, ScanType: r.ScanType, Tool: r.Tool, Ports: r.Ports, Reason: r.Reason, Seen: r.Seen})
	}
	for _, x := range l.Lifts {
		out.Lifts = append(out.Lifts, listedLift{Addr: x.Addr.String(), By: x.By, Admin: x.Admin, At: x.At})
	}
	return out
}

func printListing(w io.Writer, l fleet.Listing, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tHOST\tREMAINING\tORIGIN\tEVIDENCE\tSCAN TYPE\tTOOL\tREASON")
	for _, r := range l.Blocks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Addr, r.Host, config.Duration(r.Expires.Sub(now).Round(time.Second)),
			r.Origin, r.Evidence, dash(r.ScanType), dash(r.Tool), dash(r.Reason))
	}
	tw.Flush()
	if len(l.Lifts) > 0 {
		fmt.Fprintln(tw, "\nLIFTED\tBY\tAT")
		for _, x := range l.Lifts {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", x.Addr, x.By, stamp(x.At))
		}
		tw.Flush()
	}
	if l.Unreadable > 0 {
		fmt.Fprintf(w, "%d records could not be read\n", l.Unreadable)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cmdFleetSetup(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("fleet setup", "--config ADMIN.yaml [--hosts N] [--replicas R]",
		"Creates the fleet's four buckets, or updates them, with the limits the servers enforce whatever a host\n"+
			"writes: max_bytes sized for N hosts, max_age fleet.max_timeout (blocks, lifts) and\n"+
			"fleet.correlate.window (sightings) of the administrator's file. Hosts may create a missing bucket\n"+
			"but never change one: run it before the hosts start, and again when the fleet grows.", stderr)
	path, asJSON := adminFlags(fs), jsonFlag(fs)
	hosts := fs.Int("hosts", fleet.DefaultFleetSize, "the number of hosts to size the buckets for")
	replicas := fs.Int("replicas", 3, "the buckets' replicas (the cluster's servers: 3 or 5)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *hosts < 1 || *replicas < 1 || *replicas > 5 {
		fmt.Fprintf(stderr, "portsentry-nft fleet setup: want --hosts 1 or more and --replicas 1 to 5\n")
		return 2
	}
	adm, _, code := dialAdmin(fs, *path, stderr)
	if adm == nil {
		return code
	}
	defer adm.Close()
	ctx, cancel := fleetContext()
	defer cancel()
	r, err := adm.Setup(ctx, *hosts, *replicas)
	if err != nil {
		fmt.Fprintf(stderr, "portsentry-nft fleet setup: %v\n", err)
		return 1
	}
	if *asJSON {
		printJSON(stdout, r)
		return 0
	}
	printSetup(stdout, r)
	return 0
}

func printSetup(w io.Writer, r fleet.SetupReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BUCKET\tMAX BYTES\tMAX AGE\tREPLICAS\tIN USE")
	for _, b := range r.Buckets {
		age := "-"
		if b.MaxAge > 0 {
			age = config.Duration(b.MaxAge).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\n", b.Bucket, b.MaxBytes, age, b.Replicas, b.Bytes)
	}
	tw.Flush()
	limit := "none: set max_file in accounts.conf"
	if r.AccountMax >= 0 {
		limit = fmt.Sprint(r.AccountMax)
	}
	fmt.Fprintf(w, "account file storage reserved by the buckets: %d bytes; the account's max_file: %s\n", r.Reserved, limit)
}
