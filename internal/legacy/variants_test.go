package legacy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// variant is one conf written in the test, with what importing it must give.
type variant struct {
	name       string
	conf       string
	dialect    Dialect
	modes      string            // --mode
	files      map[string]string // what ReadFile finds; other paths do not exist
	ignoreFlag string            // --ignore
	errs       []string          // "LINE:text": errors expected (the import fails)
	warns      []string          // "LINE:text": warnings expected
	noWarn     []string          // texts no warning may contain
	yaml       []string          // texts the YAML contains
	check      func(t *testing.T, cfg *config.Config)
}

// base is the minimum a 1.2 conf needs to import cleanly.
const base = "TCP_PORTS=\"1,11\"\nUDP_PORTS=\"1,7\"\n"

var variants = []variant{
	// ---- port lists and presets
	{
		name: "preset aware as a set",
		conf: "TCP_PORTS=\"54320,1,11,15,79,111,119,143,540,635,1080,1524,2000,5742,6667,12345,12346,20034,27665,31337,32771,32772,32773,32774,40421,49724\"\n" +
			"UDP_PORTS=\"1,7,9,69,161,162,513,640,700,32770,32771,32772,32773,32774,31337,54321\"\n",
		yaml: []string{"ports: [aware]", "ports: [bare-bones]", `the same ports as PortSentry 1.2's "aware" TCP list`},
		check: func(t *testing.T, cfg *config.Config) {
			if len(cfg.TCP.Monitored) != 26 || len(cfg.UDP.Monitored) != 16 {
				t.Errorf("monitored %d/%d", len(cfg.TCP.Monitored), len(cfg.UDP.Monitored))
			}
		},
	},
	{
		name:  "a list that is no preset stays a list",
		conf:  "TCP_PORTS=\"1,11,15,1,\"\nUDP_PORTS=\" 7 ,9\"\n",
		yaml:  []string{"ports: [1, 11, 15, 1]", "ports: [7, 9]"},
		warns: []string{"1:PortSentry -tcp saw only completed connections"},
	},
	{
		name:  "1.2 with more than 64 ports",
		conf:  "TCP_PORTS=\"" + portRun(1, 70) + "\"\nUDP_PORTS=\"1\"\n",
		modes: "stcp,sudp",
		warns: []string{"1:lists 70 ports: PortSentry 1.2 watched only the first 64"},
	},
	{
		name:  "stcp mode has no classic-tcp warning",
		conf:  base,
		modes: "stcp,sudp",
		noWarn: []string{
			"completed connections",
		},
		yaml: []string{"# TCP: PortSentry ran -stcp (from --mode)."},
	},
	{
		name: "revived 2.x ranges",
		conf: "TCP_PORTS=\"1-1813,2000\"\nUDP_PORTS=\"7-52,54-66\"\n",
		yaml: []string{`ports: ["1-1813", 2000]`, `ports: ["7-52", "54-66"]`, "(revived PortSentry 2.x)", "Dialect: port range in TCP_PORTS on line 1."},
		check: func(t *testing.T, cfg *config.Config) {
			if len(cfg.TCP.Monitored) != 1814 || len(cfg.UDP.Monitored) != 59 {
				t.Errorf("monitored %d/%d", len(cfg.TCP.Monitored), len(cfg.UDP.Monitored))
			}
		},
	},
	{
		name:    "a range in a conf forced to 1.2",
		conf:    "TCP_PORTS=\"1-1024\"\nUDP_PORTS=\"1\"\n",
		dialect: Dialect12,
		errs:    []string{`1:"1-1024" is a port range, which only PortSentry 2.x understands (1.2 read it as port 1)`},
	},
	{
		name: "bad port token",
		conf: "TCP_PORTS=\"1,8o,11\"\nUDP_PORTS=\"1\"\n",
		errs: []string{"1:TCP_PORTS: \"8o\" is not a port number: `TCP_PORTS=\"1,8o,11\"`"},
	},
	{
		name: "port above 65535",
		conf: "TCP_PORTS=\"1\"\nUDP_PORTS=\"1,70000\"\n",
		errs: []string{`2:port 70000 in "70000" is outside 1-65535`},
	},
	{
		name: "port 0",
		conf: "TCP_PORTS=\"0\"\nUDP_PORTS=\"1\"\n",
		errs: []string{`1:port 0 in "0" is outside 1-65535`},
	},
	{
		name: "backwards range in 2.x",
		conf: "TCP_PORTS=\"20-10\"\n",
		errs: []string{`1:range "20-10" ends before it starts`},
	},
	{
		name: "only commas",
		conf: "TCP_PORTS=\",,\"\nUDP_PORTS=\"1\"\n",
		errs: []string{`1:no ports in ",,"`},
	},

	// ---- modes
	{
		name:  "atcp and audp",
		conf:  base + "ADVANCED_PORTS_TCP=\"1024\"\nADVANCED_PORTS_UDP=\"2049\"\nADVANCED_EXCLUDE_TCP=\"113,139\"\nADVANCED_EXCLUDE_UDP=\"520,138,137,67\"\n",
		modes: "atcp,audp",
		warns: []string{"1:TCP_PORTS is not imported: in -atcp mode PortSentry ignored it", "2:UDP_PORTS is not imported: in -audp mode"},
		yaml:  []string{"below: 1024", "exclude: [113, 139]", "below: 2049", "exclude: [520, 138, 137, 67]"},
		check: func(t *testing.T, cfg *config.Config) {
			if len(cfg.TCP.Ports) != 0 || cfg.TCP.Advanced.Below != 1024 || len(cfg.TCP.Monitored) != 1021 {
				t.Errorf("tcp: ports %v below %d, %d monitored", cfg.TCP.Ports, cfg.TCP.Advanced.Below, len(cfg.TCP.Monitored))
			}
			if len(cfg.UDP.Monitored) != 2048-4 {
				t.Errorf("udp: %d monitored", len(cfg.UDP.Monitored))
			}
		},
	},
	{
		name:  "atcp without ADVANCED_PORTS_TCP",
		conf:  base,
		modes: "atcp",
		warns: []string{"0:ADVANCED_PORTS_TCP is not set: PortSentry -atcp used 1024", "2:UDP_PORTS is not imported: UDP is not monitored"},
		check: func(t *testing.T, cfg *config.Config) {
			if cfg.TCP.Advanced.Below != 1024 || len(cfg.UDP.Monitored) != 0 {
				t.Errorf("below %d, udp %v", cfg.TCP.Advanced.Below, cfg.UDP.Monitored)
			}
		},
	},
	{
		name:  "bad ADVANCED_PORTS_TCP",
		conf:  base + "ADVANCED_PORTS_TCP=\"99999\"\n",
		modes: "atcp",
		errs:  []string{"3:ADVANCED_PORTS_TCP: want a port number from 2 to 65535"},
	},
	{
		name:  "bad ADVANCED_EXCLUDE_UDP",
		conf:  base + "ADVANCED_EXCLUDE_UDP=\"53,x\"\n",
		modes: "audp",
		errs:  []string{`3:ADVANCED_EXCLUDE_UDP: "x" is not a port number`},
	},
	{
		name:  "advanced keys in list modes",
		conf:  base + "ADVANCED_PORTS_TCP=\"1024\"\nADVANCED_EXCLUDE_UDP=\"67\"\n",
		modes: "tcp,sudp",
		warns: []string{"3:ADVANCED_PORTS_TCP is not imported: it is only used in -atcp mode, and PortSentry ran -tcp (from --mode", "4:ADVANCED_EXCLUDE_UDP is not imported"},
	},
	{
		name:  "udp only",
		conf:  base,
		modes: "sudp",
		warns: []string{"1:TCP_PORTS is not imported: TCP is not monitored"},
		yaml:  []string{"# TCP: PortSentry did not watch TCP"},
		check: func(t *testing.T, cfg *config.Config) {
			if len(cfg.TCP.Monitored) != 0 || len(cfg.UDP.Monitored) != 2 {
				t.Errorf("monitored %v/%v", cfg.TCP.Monitored, cfg.UDP.Monitored)
			}
		},
	},
	{
		name: "missing UDP_PORTS in 1.2",
		conf: "TCP_PORTS=\"1\"\n",
		warns: []string{
			"0:UDP_PORTS is not set: PortSentry -udp refused to start without it; UDP is not monitored",
		},
	},
	{
		name: "nothing to monitor",
		conf: "BLOCK_TCP=\"1\"\n",
		errs: []string{"0:nothing to monitor"},
	},
	{
		name:  "--mode with the 2.0 beta",
		conf:  "INTERFACE=\"eth0\"\n" + base,
		modes: "atcp",
		warns: []string{"0:--mode is ignored: PortSentry 2.0 beta has no -tcp/-stcp/-atcp/-udp/-sudp/-audp modes"},
		check: func(t *testing.T, cfg *config.Config) {
			if len(cfg.TCP.Monitored) != 2 || cfg.TCP.Advanced.Below != 0 {
				t.Errorf("tcp %v below %d", cfg.TCP.Monitored, cfg.TCP.Advanced.Below)
			}
		},
	},

	// ---- interfaces
	{
		name: "2.0 beta interface and address",
		conf: "INTERFACE=\"eth1\"\nINTERFACE_ADDRESS=\"2001:db8::5\"\n" + base,
		yaml: []string{"interfaces: [eth1]", "addresses: ['2001:db8::5']", "PortSentry 2.0 beta", "Dialect: INTERFACE on line 1."},
		check: func(t *testing.T, cfg *config.Config) {
			if cfg.AllInterfaces || len(cfg.WatchAddrs) != 1 {
				t.Errorf("interfaces %v addrs %v", cfg.Interfaces, cfg.WatchAddrs)
			}
		},
	},
	{
		name: "INTERFACE_ADDRESS alone means the 2.0 beta",
		conf: base + "INTERFACE_ADDRESS=\"auto\"\n",
		yaml: []string{"addresses: []", "Dialect: INTERFACE_ADDRESS on line 3."},
	},
	{
		name: "bad interface",
		conf: "INTERFACE=\"eth0/1\"\n" + base,
		errs: []string{`1:INTERFACE: "eth0/1" is not an interface name`},
	},
	{
		name: "bad interface address",
		conf: "INTERFACE_ADDRESS=\"10.0.0.300\"\n" + base,
		errs: []string{`1:INTERFACE_ADDRESS: "10.0.0.300" is not an IPv4 or IPv6 address`},
	},
	{
		name:    "INTERFACE in a conf forced to 1.2",
		conf:    "INTERFACE=\"eth0\"\n" + base,
		dialect: Dialect12,
		warns:   []string{"1:unknown key INTERFACE: only the PortSentry 2.0 beta reads it; PortSentry 1.2 ignored it"},
		yaml:    []string{"(PortSentry 1.2)", "Dialect: forced with --dialect."},
		check: func(t *testing.T, cfg *config.Config) {
			if !cfg.AllInterfaces {
				t.Errorf("interfaces %v", cfg.Interfaces)
			}
		},
	},

	// ---- ignore file
	{
		name:  "ignore file inline, IPv4 and IPv6, host bits",
		conf:  base + "IGNORE_FILE=\"/etc/portsentry/portsentry.ignore\"\n",
		files: map[string]string{"/etc/portsentry/portsentry.ignore": "# comment\n127.0.0.1\n10.1.2.3/8\nfe80::1/64\n2001:db8::/48 # lab\n127.0.0.0/8\n"},
		warns: []string{"3:10.1.2.3/8 has host bits set; using 10.0.0.0/8", "4:fe80::1/64 has host bits set; using fe80::/64"},
		yaml:  []string{"- 127.0.0.0/8 # default", "- ::1/128 # default", "- 10.0.0.0/8", "- 2001:db8::/48", "4 entries read from /etc/portsentry/portsentry.ignore"},
		check: func(t *testing.T, cfg *config.Config) {
			if got := prefixesOf(cfg); got != "10.0.0.0/8,127.0.0.0/8,127.0.0.1/32,::1/128,2001:db8::/48,fe80::/64" {
				t.Errorf("ignore %s", got)
			}
		},
	},
	{
		name:  "unreadable ignore file",
		conf:  base + "IGNORE_FILE=\"/nonexistent/portsentry.ignore\"\n",
		warns: []string{"3:cannot read the ignore file /nonexistent/portsentry.ignore (open: file does not exist): ignore keeps only the defaults"},
		check: func(t *testing.T, cfg *config.Config) {
			if got := prefixesOf(cfg); got != "127.0.0.0/8,::1/128" {
				t.Errorf("ignore %s", got)
			}
		},
	},
	{
		name:  "hostname in the ignore file",
		conf:  base + "IGNORE_FILE=\"/etc/ps.ignore\"\n",
		files: map[string]string{"/etc/ps.ignore": "10.0.0.0/8\r\nbackup.example.org\r\n"},
		errs:  []string{`2:"backup.example.org" is not an address or CIDR`},
	},
	{
		name:       "--ignore wins over IGNORE_FILE",
		conf:       base + "IGNORE_FILE=\"/etc/ps.ignore\"\n",
		ignoreFlag: "/tmp/other.ignore",
		files:      map[string]string{"/etc/ps.ignore": "10.0.0.0/8\n", "/tmp/other.ignore": "192.0.2.0/24"},
		yaml:       []string{"replaced by --ignore /tmp/other.ignore", "- 192.0.2.0/24"},
		check: func(t *testing.T, cfg *config.Config) {
			if got := prefixesOf(cfg); got != "127.0.0.0/8,192.0.2.0/24,::1/128" {
				t.Errorf("ignore %s", got)
			}
		},
	},

	// ---- files and flags
	{
		name: "history, blocked, resolve, banner",
		conf: base + "HISTORY_FILE=\"/var/lib/ps/h\"\nBLOCKED_FILE=\"/var/lib/ps/b\"\nRESOLVE_HOST=\"1\"\nPORT_BANNER=\"go away: \\\"now\\\"\"\n",
		check: func(t *testing.T, cfg *config.Config) {
			if cfg.State.HistoryFile != "/var/lib/ps/h" || cfg.State.BlockedFile != "/var/lib/ps/b" || !cfg.ResolveHost || cfg.PortBanner != `go away: \` {
				t.Errorf("state %+v resolve %v banner %q", cfg.State, cfg.ResolveHost, cfg.PortBanner)
			}
		},
		warns: []string{`6:PORT_BANNER: text after the closing quote is ignored`},
	},
	{
		name:  "relative history file",
		conf:  base + "HISTORY_FILE=\"portsentry.history\"\n",
		warns: []string{`3:HISTORY_FILE "portsentry.history" is not an absolute path: not imported`},
	},
	{
		name:  "RESOLVE_HOST other than 0/1 in 1.2",
		conf:  base + "RESOLVE_HOST=\"yes\"\n",
		warns: []string{`3:RESOLVE_HOST="yes" is neither 0 nor 1: PortSentry 1.2 took it as 0`},
		yaml:  []string{"resolve_host: false"},
	},
	{
		name: "RESOLVE_HOST other than 0/1 in 2.x",
		conf: "TCP_PORTS=\"1-10\"\nRESOLVE_HOST=\"yes\"\n",
		errs: []string{"2:RESOLVE_HOST: want 0 or 1 (PortSentry 2.x refuses anything else)"},
	},

	// ---- responses
	{
		name:  "BLOCK_x missing means log",
		conf:  base,
		yaml:  []string{"# BLOCK_TCP not set: PortSentry's default is 0, log only"},
		check: responses(config.ResponseLog, config.ResponseLog),
	},
	{
		name:  "BLOCK_x 1 without KILL_ROUTE",
		conf:  base + "BLOCK_TCP=\"1\"\nBLOCK_UDP=\"0\"\n",
		warns: []string{"3:BLOCK_TCP=1 without a usable KILL_ROUTE"},
		check: responses(config.ResponseBlock, config.ResponseLog),
	},
	{
		name:  "BLOCK_x 2 with a command",
		conf:  base + "BLOCK_TCP=\"2\"\nBLOCK_UDP=\"2\"\nKILL_RUN_CMD=\"/usr/local/bin/page $TARGET$\"\n",
		check: responses(config.ResponseCommand, config.ResponseCommand),
	},
	{
		name:  "BLOCK_x 2 without a command",
		conf:  base + "BLOCK_TCP=\"2\"\n",
		warns: []string{"3:BLOCK_TCP=2 runs KILL_RUN_CMD only, but there is no KILL_RUN_CMD: imported as response: log"},
		check: responses(config.ResponseLog, config.ResponseLog),
	},
	{
		name:  "BLOCK_x 2 with KILL_ROUTE kept as a command",
		conf:  base + "BLOCK_TCP=\"2\"\nKILL_RUN_CMD=\"/bin/true\"\nKILL_ROUTE=\"/usr/local/bin/drop $TARGET$\"\n",
		warns: []string{"3:BLOCK_TCP=2 ran only KILL_RUN_CMD, but portsentry-nft's response: command also runs the KILL_ROUTE"},
	},
	{
		name: "bad BLOCK_x",
		conf: base + "BLOCK_UDP=\"3\"\n",
		errs: []string{"3:BLOCK_UDP: want 0 (log), 1 (block) or 2 (run KILL_RUN_CMD only)"},
	},

	// ---- KILL_ROUTE
	killRoute("route reject", "/sbin/route add -host $TARGET$ reject", "route"),
	killRoute("route gw", "/sbin/route add -host $TARGET$ gw 333.444.555.666", "route"),
	killRoute("route generic", "/sbin/route add $TARGET$ 333.444.555.666", "route"),
	killRoute("route FreeBSD blackhole", "route add -net $TARGET$ -netmask 255.255.255.255 127.0.0.1 -blackhole", "route"),
	killRoute("ip route blackhole", "/sbin/ip route add blackhole $TARGET$", "route"),
	killRoute("ipfwadm", "/sbin/ipfwadm -I -i deny -S $TARGET$ -o", "ipfwadm"),
	killRoute("ipchains", "/sbin/ipchains -I input -s $TARGET$ -j DENY -l", "ipchains"),
	killRoute("iptables", "/usr/local/bin/iptables -I INPUT -s $TARGET$ -j DROP", "iptables"),
	killRoute("ip6tables", "/sbin/ip6tables -I INPUT -s $TARGET$ -j DROP", "iptables"),
	killRoute("iptables pair", "/sbin/iptables -I INPUT -s $TARGET$ -j DROP && /sbin/iptables -I INPUT -s $TARGET$ -m limit --limit 3/minute -j LOG --log-prefix 'Portsentry: dropping: '", "iptables"),
	killRoute("ipf pipe", "/bin/echo 'block in log on external_interface from $TARGET$/32 to any' | /sbin/ipf -f -", "ipf"),
	killRoute("pfctl pipe", "/bin/echo 'block in log on em0 from $TARGET$/32 to any' | /sbin/pfctl -f -", "pf"),
	killRoute("pfctl table", "/sbin/pfctl -t portsentry -T add $TARGET$", "pf"),
	killRoute("ipfw", "/sbin/ipfw add 1 deny all from $TARGET$:255.255.255.255 to any", "ipfw"),
	killRoute("nft add element", "/usr/sbin/nft add element inet filter blackhole { $TARGET$ }", "nft"),
	killRoute("sudo iptables", "/usr/bin/sudo /sbin/iptables -I INPUT -s $TARGET$ -j REJECT", "iptables"),
	{
		name:  "unrecognised KILL_ROUTE becomes a command",
		conf:  base + "BLOCK_TCP=\"1\"\nKILL_ROUTE=\"/usr/local/sbin/blackhole --add $TARGET$\"\n",
		warns: []string{"4:KILL_ROUTE \"/usr/local/sbin/blackhole --add $TARGET$\": it is not a route or packet-filter command portsentry-nft replaces; kept as a command"},
		check: func(t *testing.T, cfg *config.Config) {
			if len(cfg.Commands) != 1 || strings.Join(cfg.Commands[0].Argv, " ") != "/usr/local/sbin/blackhole --add $TARGET$" || cfg.Commands[0].First {
				t.Errorf("commands %+v", cfg.Commands)
			}
		},
		noWarn: []string{"without a usable KILL_ROUTE"},
	},
	{
		name:  "iptables mixed with something else is a command",
		conf:  base + "KILL_ROUTE=\"/sbin/iptables -I INPUT -s $TARGET$ -j DROP; /usr/bin/logger blocked $TARGET$\"\n",
		warns: []string{"3:it needs a shell (the shell operator \";\")"},
		check: func(t *testing.T, cfg *config.Config) {
			if len(cfg.Commands) != 1 || cfg.Commands[0].Argv[0] != "/bin/sh" {
				t.Errorf("commands %+v", cfg.Commands)
			}
		},
	},
	{
		name:  "KILL_ROUTE without $TARGET$",
		conf:  base + "KILL_ROUTE=\"/sbin/route add -host 10.0.0.1 reject\"\n",
		warns: []string{"3:KILL_ROUTE has no $TARGET$: PortSentry skipped it"},
	},

	// ---- KILL_HOSTS_DENY
	{
		name: "hosts.deny template kept",
		conf: base + "KILL_HOSTS_DENY=\"ALL: $TARGET$ : DENY\"\n",
		check: func(t *testing.T, cfg *config.Config) {
			if cfg.HostsDeny != (config.HostsDeny{Path: "/etc/hosts.deny", Template: "ALL: $TARGET$ : DENY"}) {
				t.Errorf("hosts_deny %+v", cfg.HostsDeny)
			}
		},
	},
	{
		name: "hosts.deny without $TARGET$",
		conf: base + "KILL_HOSTS_DENY=\"ALL: 10.0.0.1\"\n",
		errs: []string{"3:KILL_HOSTS_DENY has no $TARGET$"},
	},

	// ---- KILL_RUN_CMD
	{
		name: "command split without a shell",
		conf: base + "KILL_RUN_CMD_FIRST = \"1\"\nKILL_RUN_CMD=\"/usr/local/bin/notify -m 'scan from $TARGET$' port=$PORT$ a\\ b ''\" # pager\n",
		check: func(t *testing.T, cfg *config.Config) {
			want := []string{"/usr/local/bin/notify", "-m", "scan from $TARGET$", "port=$PORT$", "a b", ""}
			if len(cfg.Commands) != 1 || !slices.Equal(cfg.Commands[0].Argv, want) || !cfg.Commands[0].First {
				t.Errorf("commands %+v", cfg.Commands)
			}
		},
		noWarn: []string{"text after the closing quote"},
	},
	{
		name: "command with backslash and double quotes",
		conf: base + "KILL_RUN_CMD=\"/usr/bin/logger -t ps scan\\ from $TARGET$ 'x y'\"\n",
		check: func(t *testing.T, cfg *config.Config) {
			want := []string{"/usr/bin/logger", "-t", "ps", "scan from", "$TARGET$", "x y"}
			if len(cfg.Commands) != 1 || !slices.Equal(cfg.Commands[0].Argv, want) || cfg.Commands[0].First {
				t.Errorf("commands %+v", cfg.Commands)
			}
		},
	},
	{
		name:  "command that needs a shell",
		conf:  base + "KILL_RUN_CMD=\"/bin/echo $TARGET$ >> /var/log/scanners\"\n",
		warns: []string{`3:it needs a shell (the shell operator ">>"), so it runs as /bin/sh -c`},
		check: func(t *testing.T, cfg *config.Config) {
			want := []string{"/bin/sh", "-c", "/bin/echo $TARGET$ >> /var/log/scanners"}
			if len(cfg.Commands) != 1 || !slices.Equal(cfg.Commands[0].Argv, want) {
				t.Errorf("commands %+v", cfg.Commands)
			}
		},
	},
	{
		name:  "command with a shell variable",
		conf:  base + "KILL_RUN_CMD=\"/usr/local/bin/alert $HOSTNAME $TARGET$\"\n",
		warns: []string{"3:it needs a shell (variable $HOSTNAME)"},
	},
	{
		name:  "relative program",
		conf:  base + "KILL_RUN_CMD=\"logger -t portsentry $TARGET$\"\n",
		warns: []string{`3:its program "logger" has no absolute path, so it runs as /usr/bin/env logger`},
		check: func(t *testing.T, cfg *config.Config) {
			if len(cfg.Commands) != 1 || strings.Join(cfg.Commands[0].Argv, " ") != "/usr/bin/env logger -t portsentry $TARGET$" {
				t.Errorf("commands %+v", cfg.Commands)
			}
		},
	},
	{
		// sh runs "a.b=c" as a program (not found, exit 127); env would
		// take it as a variable and run /bin/touch.
		name:  "first word with = that is not a variable name",
		conf:  base + "KILL_RUN_CMD=\"a.b=c /bin/touch /tmp/F\"\n",
		warns: []string{`3:its first word "a.b=c" holds '=' but is no variable name`},
		check: func(t *testing.T, cfg *config.Config) {
			if len(cfg.Commands) != 1 || strings.Join(cfg.Commands[0].Argv, "|") != "/bin/sh|-c|a.b=c /bin/touch /tmp/F" {
				t.Errorf("commands %+v", cfg.Commands)
			}
		},
	},
	{
		name: "unterminated quote",
		conf: base + "KILL_RUN_CMD=\"/bin/echo 'oops\"\n",
		errs: []string{"3:KILL_RUN_CMD: unterminated single quote"},
	},
	{
		name:  "KILL_RUN_CMD_FIRST not 0/1",
		conf:  base + "KILL_RUN_CMD_FIRST=\"yes\"\nKILL_RUN_CMD=\"/bin/true\"\n",
		warns: []string{`3:KILL_RUN_CMD_FIRST="yes" is neither 0 nor 1`},
	},
	{
		name:  "$MODE$ in 1.2 stealth modes",
		conf:  base + "KILL_RUN_CMD=\"/usr/local/bin/alert $TARGET$ $MODE$\"\n",
		modes: "stcp,udp",
		warns: []string{"3:KILL_RUN_CMD uses $MODE$, which PortSentry 1.2 replaced with tcp, udp, stcp, sudp, atcp or audp"},
	},
	{
		name:   "$MODE$ in 1.2 classic modes is unchanged",
		conf:   base + "KILL_RUN_CMD=\"/usr/local/bin/alert $TARGET$ $MODE$\"\n",
		noWarn: []string{"$MODE$"},
	},
	{
		name:   "$MODE$ in the 2.0 beta is unchanged",
		conf:   "INTERFACE=\"auto\"\n" + base + "KILL_RUN_CMD=\"/usr/local/bin/alert $TARGET$ $MODE$\"\n",
		noWarn: []string{"$MODE$"},
	},

	// ---- SCAN_TRIGGER
	{
		name:  "scan trigger",
		conf:  base + "SCAN_TRIGGER=\"3\"\n",
		warns: []string{"3:SCAN_TRIGGER=3: PortSentry 1.2 counted a source's probes among the last 50"},
		check: func(t *testing.T, cfg *config.Config) {
			if cfg.Detect.ScanTrigger != 3 {
				t.Errorf("scan_trigger %d", cfg.Detect.ScanTrigger)
			}
		},
	},
	{
		name: "bad scan trigger",
		conf: base + "SCAN_TRIGGER=\"-1\"\n",
		errs: []string{"3:SCAN_TRIGGER: want a whole number, 0 or more"},
	},

	// ---- syslog
	{
		name:  "syslog facility and level",
		conf:  base + "SYSLOG_FACILITY=\"LOG_AUTHPRIV\"\nSYSLOG_LEVEL=\"LOG_WARNING\"\n",
		warns: []string{"3:SYSLOG_FACILITY is a compile-time setting of PortSentry 1.2"},
		check: func(t *testing.T, cfg *config.Config) {
			if cfg.Logging != (config.Logging{Target: "syslog", Facility: "authpriv", Level: "warning"}) {
				t.Errorf("logging %+v", cfg.Logging)
			}
		},
	},
	{
		name: "bad syslog facility",
		conf: base + "SYSLOG_FACILITY=\"LOG_NOWHERE\"\n",
		errs: []string{`3:SYSLOG_FACILITY: "LOG_NOWHERE" is not a syslog facility`},
	},
	{
		name: "syslog keys in 2.x",
		conf: "TCP_PORTS=\"1-5\"\nSYSLOG_LEVEL=\"LOG_INFO\"\n",
		errs: []string{"2:unknown key SYSLOG_LEVEL: PortSentry 2.x has no such setting"},
	},

	// ---- unknown and duplicate keys
	{
		name:  "unknown key in 1.2",
		conf:  base + "tcp_ports=\"1\"\nFOO=\"bar\"\n",
		warns: []string{"3:unknown key tcp_ports: not a PortSentry 1.2 key; did you mean TCP_PORTS?", "4:unknown key FOO"},
	},
	{
		name: "unknown key in 2.x",
		conf: "TCP_PORTS=\"1-5\"\nADVANCED_PORTS_TCP=\"1024\"\nTCP_PORT=\"1\"\n",
		errs: []string{
			"2:unknown key ADVANCED_PORTS_TCP: PortSentry 2.x dropped advanced mode",
			"3:unknown key TCP_PORT: not a revived PortSentry 2.x key; did you mean TCP_PORTS?",
		},
	},
	{
		name:  "duplicate keys in 1.2: the first wins",
		conf:  base + "TCP_PORTS=\"79\"\nBLOCK_TCP=\"1\"\nBLOCK_TCP=\"0\"\nBLOCK_TCP=\"2\"\n",
		warns: []string{"3:TCP_PORTS is set on lines 1 and 3; line 1 wins (PortSentry 1.2 reads the first", "5:BLOCK_TCP is set on lines 4, 5 and 6; line 4 wins"},
		check: func(t *testing.T, cfg *config.Config) {
			if portsOf(cfg.TCP.Ports) != "1,11" || cfg.TCP.Response != config.ResponseBlock {
				t.Errorf("tcp %v %s", cfg.TCP.Ports, cfg.TCP.Response)
			}
		},
	},
	{
		name:  "duplicate keys in the 2.0 beta: the later wins",
		conf:  "INTERFACE=\"auto\"\n" + base + "TCP_PORTS=\"79\"\n",
		warns: []string{"4:TCP_PORTS is set on lines 2 and 4; line 4 wins (the PortSentry 2.0 beta article"},
		check: func(t *testing.T, cfg *config.Config) {
			if portsOf(cfg.TCP.Ports) != "79" {
				t.Errorf("tcp %v", cfg.TCP.Ports)
			}
		},
	},
	{
		name:  "duplicate keys in 2.x: the last wins",
		conf:  "TCP_PORTS=\"1-5\"\nTCP_PORTS=\"6-9\"\nTCP_PORTS=\"10\"\n",
		warns: []string{"2:TCP_PORTS is set on lines 1, 2 and 3; line 3 wins (PortSentry 2.x keeps the last"},
		check: func(t *testing.T, cfg *config.Config) {
			if portsOf(cfg.TCP.Ports) != "10" {
				t.Errorf("tcp %v", cfg.TCP.Ports)
			}
		},
	},

	// ---- malformed files
	{name: "no quotes", conf: base + "BLOCK_TCP=1\n", errs: []string{"3:BLOCK_TCP: the value must be in double quotes: `BLOCK_TCP=1`"}},
	{name: "single quotes", conf: base + "BLOCK_TCP='1'\n", errs: []string{"3:BLOCK_TCP: the value must be in double quotes"}},
	{name: "no equals", conf: base + "BLOCK_TCP \"1\"\n", errs: []string{`3:BLOCK_TCP: want KEY="value"`}},
	{name: "empty value", conf: base + "KILL_ROUTE=\"\"\n", errs: []string{"3:KILL_ROUTE has an empty value: `KILL_ROUTE=\"\"`"}},
	{name: "blank value", conf: base + "KILL_ROUTE=\"  \"\n", errs: []string{"3:KILL_ROUTE has an empty value"}},
	{name: "nothing after equals", conf: base + "KILL_ROUTE=\n", errs: []string{"3:KILL_ROUTE has an empty value"}},
	{name: "unclosed quote", conf: base + "KILL_ROUTE=\"/sbin/route add $TARGET$\n", errs: []string{"3:KILL_ROUTE: the value has no closing quote"}},
	{name: "not a setting", conf: base + "= \"1\"\n", errs: []string{"3:not a KEY=\"value\" setting: `= \"1\"`"}},
	{name: "binary garbage", conf: base + "\x7fELF\x02\x01\x01\x00\x00garbage\n", errs: []string{"3:binary data (a NUL byte)"}},
	{name: "control characters", conf: base + "BLOCK_TCP=\"1\x1b[0m\"\n", errs: []string{"3:control character U+001B"}},
	{name: "invalid UTF-8", conf: base + "PORT_BANNER=\"caf\xe9\"\n", errs: []string{"3:not UTF-8 text"}},
	{
		name:  "Latin-1 in a comment is fine",
		conf:  "# Guido G\xfcnther\n" + base,
		check: func(t *testing.T, cfg *config.Config) {},
	},
	{
		name: "CRLF and no final newline",
		conf: "TCP_PORTS=\"1,11\"\r\nUDP_PORTS=\"7\"\r\nKILL_HOSTS_DENY=\"ALL: $TARGET$\"",
		check: func(t *testing.T, cfg *config.Config) {
			if portsOf(cfg.UDP.Ports) != "7" || cfg.HostsDeny.Template != "ALL: $TARGET$" {
				t.Errorf("udp %v hosts_deny %+v", cfg.UDP.Ports, cfg.HostsDeny)
			}
		},
	},
	{
		name: "byte order mark",
		conf: "\ufeff" + base,
	},
	{
		name:  "indented setting",
		conf:  base + "  BLOCK_TCP=\"1\"\n",
		warns: []string{"3:BLOCK_TCP is indented; PortSentry 1.2 did not see indented settings"},
	},
	{
		name: "many bad lines stop early",
		conf: strings.Repeat("garbage\n", 50),
		errs: []string{"21:too many errors"},
	},
}

// killRoute is a variant for one recognised KILL_ROUTE.
func killRoute(name, cmd, tool string) variant {
	return variant{
		name:  "KILL_ROUTE " + name,
		conf:  base + "BLOCK_TCP=\"1\"\nBLOCK_UDP=\"1\"\nKILL_ROUTE=\"" + cmd + "\"\n",
		warns: []string{"5:(" + tool + ") is replaced by native blocking"},
		yaml:  []string{"# KILL_ROUTE (line 5, " + tool + ") is replaced by this native blocking"},
		check: func(t *testing.T, cfg *config.Config) {
			if len(cfg.Commands) != 0 || cfg.TCP.Response != config.ResponseBlock {
				t.Errorf("commands %+v, response %s", cfg.Commands, cfg.TCP.Response)
			}
		},
		noWarn: []string{"without a usable KILL_ROUTE"},
	}
}

func responses(tcp, udp config.Response) func(*testing.T, *config.Config) {
	return func(t *testing.T, cfg *config.Config) {
		if cfg.TCP.Response != tcp || cfg.UDP.Response != udp {
			t.Errorf("responses %s/%s, want %s/%s", cfg.TCP.Response, cfg.UDP.Response, tcp, udp)
		}
	}
}

func portRun(lo, hi int) string {
	var s []string
	for p := lo; p <= hi; p++ {
		s = append(s, strconv.Itoa(p))
	}
	return strings.Join(s, ",")
}

// fakeFiles is a ReadFile over a map.
func fakeFiles(files map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if s, ok := files[name]; ok {
			return []byte(s), nil
		}
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
}

func TestVariants(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			opts := Options{IgnoreFile: v.ignoreFlag, ReadFile: fakeFiles(v.files)}
			if v.modes != "" {
				m, err := ParseModes([]string{v.modes})
				if err != nil {
					t.Fatal(err)
				}
				opts.Modes = &m
			}
			res, all, err := importString("test.conf", []byte(v.conf), v.dialect, opts)
			if errors.Is(err, ErrGenerated) {
				t.Fatal(err)
			}
			for _, want := range v.errs {
				if !matchDiag(all, Error, want) {
					t.Errorf("no error %q in:\n%s", want, all)
				}
			}
			for _, want := range v.warns {
				if !matchDiag(all, Warning, want) {
					t.Errorf("no warning %q in:\n%s", want, all)
				}
			}
			for _, no := range v.noWarn {
				for _, d := range all {
					if strings.Contains(d.Msg, no) {
						t.Errorf("unexpected %s", d)
					}
				}
			}
			for _, d := range all {
				if d.File == "test.conf" && !strings.HasPrefix(d.String(), "test.conf:") {
					t.Errorf("diagnostic not prefixed with the file: %s", d)
				}
			}
			if len(v.errs) > 0 {
				if err == nil {
					t.Fatalf("import succeeded; want errors %q\n%s", v.errs, res.YAML)
				}
				return
			}
			if err != nil {
				t.Fatalf("import failed: %v", err)
			}
			cfg, err := config.Parse("imported.yaml", res.YAML)
			if err != nil {
				t.Fatalf("the YAML does not pass config.Parse: %v\n%s", err, res.YAML)
			}
			for _, want := range v.yaml {
				if !strings.Contains(string(res.YAML), want) {
					t.Errorf("YAML lacks %q:\n%s", want, res.YAML)
				}
			}
			if !strings.HasPrefix(string(res.YAML), "# Imported from test.conf (") {
				t.Errorf("YAML header: %q", strings.SplitN(string(res.YAML), "\n", 2)[0])
			}
			if v.check != nil {
				v.check(t, cfg)
			}
		})
	}
}

// importString parses and imports; all is every diagnostic either step gave.
func importString(name string, data []byte, d Dialect, opts Options) (*Result, Diags, error) {
	c, err := Parse(name, data, d)
	if err != nil {
		var ds Diags
		errors.As(err, &ds)
		return nil, ds, err
	}
	res, err := Import(c, opts)
	if err != nil {
		var ds Diags
		errors.As(err, &ds)
		return nil, ds, err
	}
	return res, res.Warnings, nil
}

// matchDiag matches "LINE:text" against ds.
func matchDiag(ds Diags, sev Severity, want string) bool {
	num, text, _ := strings.Cut(want, ":")
	line, err := strconv.Atoi(num)
	if err != nil {
		panic("bad expectation " + want)
	}
	for _, d := range ds {
		if d.Severity == sev && d.Line == line && strings.Contains(d.Msg, text) {
			return true
		}
	}
	return false
}

// TestEveryKeyAccountedFor imports a conf that sets every key of each
// dialect and checks that each line is quoted in the YAML or named in a
// warning: nothing is dropped silently.
func TestEveryKeyAccountedFor(t *testing.T) {
	values := map[string]string{
		"TCP_PORTS": "1,11", "UDP_PORTS": "1,7",
		"ADVANCED_PORTS_TCP": "1024", "ADVANCED_PORTS_UDP": "1024", "ADVANCED_EXCLUDE_TCP": "113", "ADVANCED_EXCLUDE_UDP": "67",
		"IGNORE_FILE": "/etc/ps.ignore", "HISTORY_FILE": "/var/lib/ps/h", "BLOCKED_FILE": "/var/lib/ps/b",
		"RESOLVE_HOST": "0", "BLOCK_TCP": "1", "BLOCK_UDP": "2",
		"KILL_ROUTE": "/sbin/iptables -I INPUT -s $TARGET$ -j DROP", "KILL_HOSTS_DENY": "ALL: $TARGET$",
		"KILL_RUN_CMD": "/usr/local/bin/page $TARGET$", "KILL_RUN_CMD_FIRST": "0",
		"SCAN_TRIGGER": "0", "PORT_BANNER": "go away", "SYSLOG_FACILITY": "LOG_AUTH", "SYSLOG_LEVEL": "LOG_NOTICE",
		"INTERFACE": "auto", "INTERFACE_ADDRESS": "10.0.0.1",
	}
	for _, d := range Dialects {
		for _, modes := range []string{"tcp,udp", "atcp,audp"} {
			var conf strings.Builder
			for _, k := range d.Keys() {
				v := values[k]
				if k == "TCP_PORTS" && d == DialectRevived {
					v = "1-11"
				}
				conf.WriteString(k + "=\"" + v + "\"\n")
			}
			m, _ := ParseModes([]string{modes})
			res, all, err := importString("all.conf", []byte(conf.String()), d, Options{Modes: &m, ReadFile: fakeFiles(map[string]string{"/etc/ps.ignore": "10.0.0.0/8\n"})})
			if err != nil {
				t.Fatalf("%s %s: %v", d, modes, err)
			}
			for i, k := range d.Keys() {
				line := i + 1
				quoted := strings.Contains(string(res.YAML), fmt.Sprintf("(line %d)", line))
				warned := slices.ContainsFunc(all, func(x Diag) bool { return x.Line == line })
				if !quoted && !warned {
					t.Errorf("%s %s: %s (line %d) is neither quoted in the YAML nor warned about\n%s", d, modes, k, line, res.YAML)
				}
			}
		}
	}
}

func TestReadFile(t *testing.T) {
	if _, err := ReadFile(os.DevNull); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("ReadFile(%s) = %v; want not a regular file", os.DevNull, err)
	}
	dir := t.TempDir()
	if _, err := ReadFile(dir); err == nil {
		t.Errorf("ReadFile(dir) succeeded")
	}
	p := dir + "/x"
	if err := os.WriteFile(p, []byte("10.0.0.0/8\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(p); err != nil || string(b) != "10.0.0.0/8\n" {
		t.Errorf("ReadFile = %q, %v", b, err)
	}
}
