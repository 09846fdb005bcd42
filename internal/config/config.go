package config

import (
	_ "embed"
	"net/netip"
	"time"
)

// DefaultPath is where the daemon looks for its configuration.
const DefaultPath = "/etc/portsentry-nft/portsentry.yaml"

// EmbeddedName names the built-in default in error messages.
const EmbeddedName = "(embedded default)"

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML returns the embedded default configuration file.
func DefaultYAML() []byte { return append([]byte(nil), defaultYAML...) }

// Config is a loaded, validated configuration. The fields with yaml tags
// are the file; the others are derived once it is valid (derive) and are
// what the rest of the program reads.
type Config struct {
	Interfaces  []string  `yaml:"interfaces"`
	Addresses   []string  `yaml:"addresses"`
	TCP         Protocol  `yaml:"tcp"`
	UDP         Protocol  `yaml:"udp"`
	Detect      Detect    `yaml:"detect"`
	Ignore      []string  `yaml:"ignore"`
	NeverBlock  []string  `yaml:"never_block"`
	IgnoreFiles []string  `yaml:"ignore_files"`
	Block       Block     `yaml:"block"`
	HostsDeny   HostsDeny `yaml:"hosts_deny"`
	Commands    []Command `yaml:"commands"`
	ResolveHost bool      `yaml:"resolve_host"`
	PortBanner  string    `yaml:"port_banner"`
	State       State     `yaml:"state"`
	Capture     Capture   `yaml:"capture"`
	Logging     Logging   `yaml:"logging"`
	Control     Control   `yaml:"control"`
	Metrics     Metrics   `yaml:"metrics"`
	Routed      Routed    `yaml:"routed"`
	// Fleet is off (the zero value) unless the file has a fleet section.
	Fleet Fleet `yaml:"fleet"`
	// CrowdSec serves CrowdSec's bouncer API; off unless crowdsec.listen.
	CrowdSec CrowdSec `yaml:"crowdsec"`

	// File is the path the configuration came from (EmbeddedName for the default).
	File string `yaml:"-"`
	// AllInterfaces is true for "auto": every interface but loopback.
	AllInterfaces bool `yaml:"-"`
	// WatchAddrs are the parsed Addresses.
	WatchAddrs []netip.Addr `yaml:"-"`
	// IgnorePrefixes are Ignore and the entries of IgnoreFiles, masked and deduplicated.
	IgnorePrefixes []netip.Prefix `yaml:"-"`
	// NeverBlockPrefixes are the parsed NeverBlock entries.
	NeverBlockPrefixes []netip.Prefix `yaml:"-"`
	// Warnings are problems that did not stop loading (e.g. an ignore-file CIDR with host bits set).
	Warnings []*Error `yaml:"-"`
}

// Protocol configures one of TCP and UDP.
type Protocol struct {
	Ports    PortList `yaml:"ports"`
	Advanced Advanced `yaml:"advanced"`
	Response Response `yaml:"response"`
	// Verified (TCP only): act only on sources that completed a handshake
	// with a port the daemon listens on; spoofed scans cannot do that.
	Verified bool `yaml:"verified"`

	// Monitored is the expanded, sorted, duplicate-free port list.
	Monitored []uint16 `yaml:"-"`
}

// Advanced is PortSentry's advanced mode (ADVANCED_PORTS_x and
// ADVANCED_EXCLUDE_x): every port below Below, minus Exclude.
type Advanced struct {
	Below   int      `yaml:"below"`
	Exclude PortList `yaml:"exclude"`
}

// Response is what happens when a source trips the trigger (PortSentry BLOCK_TCP/BLOCK_UDP).
type Response string

// Responses, in PortSentry's BLOCK_x order 0, 1, 2.
const (
	ResponseLog     Response = "log"     // alert only
	ResponseBlock   Response = "block"   // add to the blocked set (and run the command, if any)
	ResponseCommand Response = "command" // run the command only
)

// Detect holds the detector's settings.
type Detect struct {
	ScanTrigger int      `yaml:"scan_trigger"`
	Window      Duration `yaml:"window"`
	MaxSources  int      `yaml:"max_sources"`
	// Prefix6Sources: when this many distinct IPv6 addresses of one /64
	// probe within Window, the /64 is blocked (a scanner rotating its
	// source inside its /64 learns no more than one that does not). 0: off.
	Prefix6Sources int `yaml:"prefix6_sources"`
}

// Block holds the nftables blocking settings.
type Block struct {
	Timeout Duration `yaml:"timeout"`
	SetSize int      `yaml:"set_size"`
	// RepeatFactor multiplies the timeout for each earlier block of the
	// same address (1: every block lasts Timeout), up to MaxTimeout.
	RepeatFactor int      `yaml:"repeat_factor"`
	MaxTimeout   Duration `yaml:"max_timeout"`
	// MaxPerSecond caps new blocks per second (with a burst of as many);
	// triggers beyond it are logged, not blocked.
	MaxPerSecond int `yaml:"max_per_second"`
	// FirstStrike lets the kernel block a scanner in its first probe's own
	// packet path (a rule adds the source to blocked/blocked6), where the
	// configuration allows it (see nft.Strikes); the daemon follows.
	FirstStrike bool `yaml:"first_strike"`
	// PeerWindow is how long an address stays a peer after a packet of a
	// TCP connection with this host whose handshake completed (conntrack
	// assured): a peer is never struck by the kernel nor blocked on one
	// forged packet. 0 turns peers off.
	PeerWindow Duration `yaml:"peer_window"`
	// TimeoutByTool: a block's length by the tool that scanned
	// (internal/scanner's names), at least; only for evidence that cannot
	// be forged (a completed handshake, or several hosts), since any
	// packet can be made to look like any tool's.
	TimeoutByTool map[string]Duration `yaml:"timeout_by_tool"`
}

// HostsDeny is PortSentry's KILL_HOSTS_DENY.
type HostsDeny struct {
	Path     string `yaml:"path"`
	Template string `yaml:"template"`
}

// Command is PortSentry's KILL_RUN_CMD and KILL_RUN_CMD_FIRST: a program
// run as argv (no shell) when a source trips the trigger.
type Command struct {
	Argv    []string `yaml:"argv"`
	First   bool     `yaml:"first"`   // run before the block instead of after it
	Timeout Duration `yaml:"timeout"` // killed after this long; 0 means 30s
}

// State says where persistent state lives.
type State struct {
	Dir         string `yaml:"dir"`
	HistoryFile string `yaml:"history_file"` // "" means Dir/portsentry.history
	BlockedFile string `yaml:"blocked_file"` // "" means Dir/portsentry.blocked
}

// Capture selects how probes reach the daemon.
type Capture struct {
	Mode           string `yaml:"mode"` // nflog or nfqueue
	Group          int    `yaml:"group"`
	QueueThreshold int    `yaml:"queue_threshold"`
	// FloodRate: in a flood, at most this many probes a second go to the
	// daemon (the log rules' limit); 0: no bound.
	FloodRate int `yaml:"flood_rate"`
	Queue     int `yaml:"queue"` // NFQUEUE number (mode nfqueue)
}

// Control is the admin socket of the running daemon.
type Control struct {
	Socket string `yaml:"socket"`
}

// Routed extends protection to traffic this host forwards.
type Routed struct {
	// Block drops blocked sources in prerouting (raw priority), before
	// routing and conntrack, so forwarded and DNAT'd traffic is blocked too.
	Block bool `yaml:"block"`
	// Watch treats probes of tripwire ports in forwarded traffic as scans.
	Watch bool `yaml:"watch"`
}

// Metrics is the optional Prometheus endpoint.
type Metrics struct {
	Listen string `yaml:"listen"` // host:port; "" is off
}

// Logging selects where log lines go.
type Logging struct {
	Target   string `yaml:"target"`
	Facility string `yaml:"facility"`
	Level    string `yaml:"level"`
}

// BlockTimeout is the block timeout as a time.Duration.
func (c *Config) BlockTimeout() time.Duration { return time.Duration(c.Block.Timeout) }
