// Package alert writes the daemon's log lines in PortSentry's words.
//
// The wording is an interface: fail2ban and logcheck filters, and admins'
// habits, match "attackalert: TCP SYN scan from host ..." and "adminalert:
// ...". So every line kind is one function here, and nothing else in the
// daemon writes the prefixes by hand: a test proves each line still reads
// as docs/log-lines.md shows it.
//
// Lines about probes are written off the capture goroutine: Queue holds
// them as values (no allocation, no waiting) for the goroutine that runs
// Run, and caps those that do not lead to a block, so a spoofed flood is
// summarised instead of costing a line per packet.
package alert

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/packet"
)

// The two prefixes of PortSentry's lines.
const (
	attack = "attackalert: "
	admin  = "adminalert: "
)

// Log writes the lines. The zero value is not usable: use New.
type Log struct {
	l    *slog.Logger
	name Namer
}

// Namer is an address's name for the host field, "" for none; it may wait
// up to wait for a lookup (see Resolver.NameWithin), and not at all when
// wait is 0.
type Namer func(a netip.Addr, wait time.Duration) string

// New makes a Log on l; name resolves an address for the host field
// (nil: no names).
func New(l *slog.Logger, name Namer) *Log {
	if name == nil {
		name = func(netip.Addr, time.Duration) string { return "" }
	}
	return &Log{l: l, name: name}
}

// Slog is the underlying logger.
func (g *Log) Slog() *slog.Logger { return g.l }

// HostField is PortSentry's "name/ip"; the name is the address itself when
// it has none.
func HostField(a netip.Addr, name string) string {
	s := a.String()
	if name == "" {
		name = s
	}
	return name + "/" + s
}

// ---- adminalert: the daemon's own news ----

// Info, Warn and Error write an adminalert line at that level. Error lines
// say ERROR, as PortSentry's do.
func (g *Log) Info(msg string)  { g.l.Info(admin + msg) }
func (g *Log) Warn(msg string)  { g.l.Warn(admin + msg) }
func (g *Log) Error(msg string) { g.l.Error(admin + "ERROR: " + msg) }

// Infof, Warnf and Errorf format first.
func (g *Log) Infof(format string, a ...any)  { g.Info(fmt.Sprintf(format, a...)) }
func (g *Log) Warnf(format string, a ...any)  { g.Warn(fmt.Sprintf(format, a...)) }
func (g *Log) Errorf(format string, a ...any) { g.Error(fmt.Sprintf(format, a...)) }

// Starting is the first line of a start or reload.
func (g *Log) Starting(file string) {
	g.Info("PortSentry (portsentry-nft) is starting with " + file)
}

// Monitoring is PortSentry's start-up report of what is watched.
func (g *Log) Monitoring(ifaces, addrs string, tcp, udp []uint16) {
	g.Info(fmt.Sprintf("Monitoring interface %s and address: %s", ifaces, addrs))
	g.Info("Monitoring TCP ports: " + JoinPorts(tcp))
	g.Info("Monitoring UDP ports: " + JoinPorts(udp))
}

// SetFullLine warns that blocks are refused for want of room.
func SetFullLine(size string, a netip.Addr, refused uint64) string {
	return fmt.Sprintf("WARNING: the blocked sets are full (block.set_size %s); not blocking %s and further hosts until blocks expire (%d refused so far)", size, a, refused)
}

// Initialized says the daemon is ready.
func (g *Log) Initialized() { g.Info("PortSentry is initialized and monitoring.") }

// ShuttingDown is the last line of a clean stop.
func (g *Log) ShuttingDown() {
	g.Info("PortSentry is shutting down; blocks stay in the kernel until they expire.")
}

// ---- attackalert: what scanners did and what was done about it ----

// ProbeLine: "TCP SYN scan from host 10.0.0.1/10.0.0.1 to TCP port: 79 from TCP port: 4000".
func ProbeLine(p *packet.Probe, host string) string {
	return fmt.Sprintf("%s%s from host %s to %s port: %d from %s port: %d",
		attack, p.Kind, host, p.Proto, p.DstPort, p.Proto, p.SrcPort)
}

// AlreadyBlockedLine is PortSentry's line for a probe from a blocked host
// (one that was on its way before the element landed).
func AlreadyBlockedLine(host string) string {
	return attack + "Host: " + host + " is already blocked. Ignoring"
}

// ProtectedLine: a trigger from an address that is never blocked.
func ProtectedLine(a netip.Addr, why string) string {
	return fmt.Sprintf("%sHost %s is protected (%s) and is never blocked; the scan may be spoofed", attack, a, why)
}

// RefusedLine: a trigger not blocked, and why.
func RefusedLine(a netip.Addr, why string) string {
	return fmt.Sprintf("%sHost %s not blocked: %s; logged only", attack, a, why)
}

// PrefixBlockedLine: an IPv6 /64's element is in the kernel (set
// blocked6_64); why says what it rests on.
func PrefixBlockedLine(p netip.Prefix, table, set string, timeout time.Duration, why string) string {
	return fmt.Sprintf("%sPrefix %s has been blocked via nftables set %s %s (timeout %s): %s", attack, p, table, set, timeout, why)
}

// BlockedLine: the element is in the kernel. by names who decided when it
// was not the detector ("an administrator", "the kernel", ...).
func BlockedLine(a netip.Addr, table, set string, timeout time.Duration, times int, by string) string {
	extra := ""
	if times > 1 {
		extra = fmt.Sprintf(", block %d of this host", times)
	}
	if by != "" {
		by = " by " + by
	}
	return fmt.Sprintf("%sHost %s has been blocked via nftables set inet %s %s%s (timeout %s%s)", attack, a, table, set, by, timeout, extra)
}

// WrappersLine: the hosts.deny line written for a block.
func WrappersLine(a netip.Addr, line string) string {
	return fmt.Sprintf("%sHost %s has been blocked via wrappers with string: \"%s\"", attack, a, line)
}

// UnblockedLine: an administrator lifted a block.
func UnblockedLine(a netip.Addr) string {
	return fmt.Sprintf("%sHost %s has been unblocked by an administrator", attack, a)
}

// PrefixUnblockedLine: an administrator lifted the block of an IPv6 /64.
func PrefixUnblockedLine(p netip.Prefix) string {
	return fmt.Sprintf("%sPrefix %s has been unblocked by an administrator", attack, p)
}

// EvictedLine: a full set gave up a block that rested on a single probe
// for a source with more evidence.
func EvictedLine(a netip.Addr) string {
	return fmt.Sprintf("%sHost %s has been unblocked to make room in the full sets: its block rested on a single probe, which may have been spoofed", attack, a)
}

// LiftedLine: the kernel's first strike blocked a host the daemon would
// not have blocked (why: it became protected, a service listens on the
// port, ...), and the daemon lifted the block.
func LiftedLine(a netip.Addr, why string) string {
	return fmt.Sprintf("%sHost %s has been unblocked: the kernel's first strike blocked it, but %s", attack, a, why)
}

// CorrelatedLine: hosts of the fleet each saw a probe from a within the
// correlation window, and the fleet blocks it everywhere.
func CorrelatedLine(a netip.Addr, hosts []string, window time.Duration) string {
	return fmt.Sprintf("%sHost %s probed %d hosts of the fleet (%s) within %s; blocked on every host", attack, a, len(hosts), strings.Join(hosts, ", "), window)
}

// CommandLine: an external command ran for a host.
func CommandLine(a netip.Addr, argv []string, output string) string {
	return fmt.Sprintf("%sExternal command run for host: %s using command: %q; output: %q", attack, a, strings.Join(argv, " "), output)
}

// IgnoringLine: the response for this protocol is to log only.
func IgnoringLine(proto packet.Proto) string {
	return fmt.Sprintf("%sIgnoring %s response per configuration file setting.", attack, proto)
}

// RestoredLine: a block the ledger holds was missing from the kernel and
// is back (the probe that proved it reached the daemon).
func RestoredLine(a netip.Addr, set string, left time.Duration) string {
	return fmt.Sprintf("%sHost %s was missing from set %s (removed outside portsentry-nft); blocked again for the %s left", attack, a, set, left)
}

// Attack writes one attackalert line made by the functions above.
func (g *Log) Attack(line string) { g.l.Info(line) }

// AttackWarn writes one at warning level.
func (g *Log) AttackWarn(line string) { g.l.Warn(line) }

// Host is the host field for a, with the name if it is known now.
func (g *Log) Host(a netip.Addr) string { return HostField(a, g.name(a, 0)) }

// HostWithin is the host field for a, waiting up to wait for its name.
func (g *Log) HostWithin(a netip.Addr, wait time.Duration) string {
	return HostField(a, g.name(a, wait))
}

// JoinPorts writes a port list as PortSentry's start-up line does, runs
// of three or more consecutive ports as ranges (1-65535 is one word, not
// a line of 382 KB that syslog would cut).
func JoinPorts(ports []uint16) string {
	var b strings.Builder
	for i := 0; i < len(ports); {
		j := i
		for j+1 < len(ports) && ports[j+1] == ports[j]+1 {
			j++
		}
		if i > 0 {
			b.WriteByte(',')
		}
		switch {
		case j-i >= 2:
			fmt.Fprintf(&b, "%d-%d", ports[i], ports[j])
		case j > i:
			fmt.Fprintf(&b, "%d,%d", ports[i], ports[j])
		default:
			fmt.Fprint(&b, ports[i])
		}
		i = j + 1
	}
	return b.String()
}
