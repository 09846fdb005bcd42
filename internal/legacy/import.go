package legacy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// Options tunes Import. The zero value imports with the default modes and
// the IGNORE_FILE the conf names.
type Options struct {
	// Modes is how PortSentry 1.2 was started (--mode, or a Debian
	// /etc/default/portsentry read with ParseDefaults); nil means
	// DefaultModes. The 2.0 beta and 2.x have no such modes.
	Modes *Modes
	// ModesFrom says where Modes came from, for messages ("--mode",
	// "/etc/default/portsentry"); "" means "--mode".
	ModesFrom string
	// IgnoreFile, when set, is read instead of the conf's IGNORE_FILE (--ignore).
	IgnoreFile string
	// ReadFile reads the ignore file; nil means ReadFile of this package.
	ReadFile func(name string) ([]byte, error)
}

// Result is a successful import.
type Result struct {
	// YAML is the configuration file, ready for portsentry-nft check.
	YAML []byte
	// Warnings are the conf's and the import's warnings, in file and line order.
	Warnings Diags
	// Config is YAML as config.Parse read it.
	Config *config.Config
}

// Paths and defaults of the software being replaced.
const (
	hostsDenyPath  = "/etc/hosts.deny" // PortSentry's compile-time WRAPPER_HOSTS_DENY
	advancedBelow  = 1024              // PortSentry's default for ADVANCED_PORTS_x
	maxSocks12     = 64                // PortSentry 1.2's compile-time MAXSOCKS
	maxInputSize   = 16 << 20
	defaultIgnore4 = "127.0.0.0/8"
	defaultIgnore6 = "::1/128"
)

// ReadFile reads a regular file of at most 16 MiB: the ignore file a conf
// names may be anything on the importing machine.
func ReadFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxInputSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxInputSize {
		return nil, fmt.Errorf("%s: larger than %d MiB", name, maxInputSize>>20)
	}
	return data, nil
}

// Import maps a parsed conf onto portsentry-nft's configuration. Problems
// that stop it come back as Diags (with the warnings); a YAML that fails
// config.Parse, which would be a bug here, as an error wrapping ErrGenerated.
func Import(c *Conf, opts Options) (*Result, error) {
	if opts.ReadFile == nil {
		opts.ReadFile = ReadFile
	}
	im := &importer{c: c, opts: opts, d: &diags{file: c.Name}, root: &section{}}
	im.d.list = append(im.d.list, c.warnings...)
	for _, k := range []string{"interfaces", "addresses", "tcp", "udp", "detect", "ignore", "hosts_deny",
		"commands", "resolve_host", "port_banner", "state", "logging"} {
		im.root.get(k) // fixes the order of the top-level keys
	}
	im.run()
	sortDiags(im.d.list, c.Name)
	if im.d.list.HasErrors() {
		return nil, im.d.list
	}
	out, err := im.encode()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrGenerated, err)
	}
	cfg, err := config.Parse(c.Name+" (imported)", out)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrGenerated, err)
	}
	return &Result{YAML: out, Warnings: im.d.list, Config: cfg}, nil
}

type importer struct {
	c    *Conf
	opts Options
	d    *diags
	root *section

	modes     Modes  // 1.2: how PortSentry ran; other dialects: stcp+sudp (lists)
	modesFrom string // "" when assumed

	killRoute *Line  // KILL_ROUTE in force, when it has $TARGET$
	routeTool string // what recognizeKillRoute found; "" when kept as a command
	routeCmd  bool   // KILL_ROUTE kept as a command
	runCmd    bool   // KILL_RUN_CMD present
	watching  [2]bool
}

func (im *importer) lookup(key string) (Line, bool) { return im.c.Lookup(key) }

// orig is the comment that quotes a conf line.
func orig(l Line) string { return fmt.Sprintf("%s (line %d)", shorten(l.Text), l.Num) }

func (im *importer) run() {
	im.setModes()
	im.interfaces()
	im.commands()
	im.hostsDeny()
	for i, proto := range []string{"tcp", "udp"} {
		im.watching[i] = im.ports(proto)
		im.response(proto)
	}
	if !im.watching[0] && !im.watching[1] && !im.d.list.HasErrors() {
		im.d.errorf(0, "nothing to monitor: neither TCP nor UDP ports are left after the import (%s)", im.modesText())
	}
	im.scanTrigger()
	im.ignore()
	im.flag("RESOLVE_HOST", "resolve_host")
	if l, ok := im.lookup("PORT_BANNER"); ok {
		im.root.set("port_banner", str(l.Value), orig(l),
			"sent to clients that complete a connection to a watched port the daemon listens on")
	}
	im.state()
	im.logging()
}

func (im *importer) setModes() {
	from := im.opts.ModesFrom
	if from == "" {
		from = "--mode"
	}
	if im.c.Dialect != Dialect12 {
		if im.opts.Modes != nil {
			im.d.warnf(0, "%s is ignored: %s has no -tcp/-stcp/-atcp/-udp/-sudp/-audp modes, it watches TCP_PORTS and UDP_PORTS", from, im.c.Dialect.Title())
		}
		im.modes = Modes{TCP: "stcp", UDP: "sudp"}
		return
	}
	if im.opts.Modes == nil {
		im.modes = DefaultModes
		return
	}
	im.modes, im.modesFrom = *im.opts.Modes, from
}

func (im *importer) modesText() string {
	if im.c.Dialect != Dialect12 {
		return im.c.Dialect.Title() + " watches TCP_PORTS and UDP_PORTS"
	}
	return "modes " + im.modes.String() + " " + im.modesSource()
}

// modesSource says where the 1.2 modes came from.
func (im *importer) modesSource() string {
	if im.modesFrom == "" {
		return "(assumed: no --mode or --defaults given)"
	}
	return "(from " + im.modesFrom + ")"
}

// mode returns the 1.2 mode of proto ("" for off).
func (im *importer) mode(proto string) string {
	if proto == "tcp" {
		return im.modes.TCP
	}
	return im.modes.UDP
}

func (im *importer) interfaces() {
	if l, ok := im.lookup("INTERFACE"); ok {
		v := strings.TrimSpace(l.Value)
		switch {
		case strings.EqualFold(v, "auto"):
			im.root.set("interfaces", strSeq(true, "auto"), orig(l),
				"auto: the 2.0 beta picked one interface (its startup log names it); portsentry-nft's auto",
				"watches every interface but loopback. Write the name, e.g. [eth0], to watch one.")
		case len(v) > 15 || strings.ContainsAny(v, "/ \t\"'\\:,"):
			im.d.errorf(l.Num, "INTERFACE: %q is not an interface name (1-15 characters, no '/', spaces or quotes): %s", v, quoteShort(l.Text))
		default:
			im.root.set("interfaces", strSeq(true, v), orig(l))
		}
	}
	if l, ok := im.lookup("INTERFACE_ADDRESS"); ok {
		v := strings.TrimSpace(l.Value)
		if strings.EqualFold(v, "auto") {
			im.root.set("addresses", seq(true), orig(l), "auto: every address of the watched interfaces")
			return
		}
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			im.d.errorf(l.Num, "INTERFACE_ADDRESS: %q is not an IPv4 or IPv6 address: %s", v, quoteShort(l.Text))
			return
		}
		im.root.set("addresses", strSeq(true, a.Unmap().String()), orig(l),
			"only probes to this address are watched, as in the 2.0 beta")
	}
}

// portKeys are the conf lines that say what of one protocol is watched:
// X_PORTS, ADVANCED_PORTS_X and ADVANCED_EXCLUDE_X. Every branch of ports
// needs the same three lookups, so they are made once.
type portKeys struct {
	proto, P                  string // "tcp", "TCP"
	portsKey, advKey, exclKey string
	pl, al, el                Line
	hasPorts, hasAdv, hasExcl bool
}

// portKeysOf looks up the port keys of proto.
func (im *importer) portKeysOf(proto string) portKeys {
	P := strings.ToUpper(proto)
	k := portKeys{proto: proto, P: P,
		portsKey: P + "_PORTS", advKey: "ADVANCED_PORTS_" + P, exclKey: "ADVANCED_EXCLUDE_" + P}
	k.pl, k.hasPorts = im.lookup(k.portsKey)
	k.al, k.hasAdv = im.lookup(k.advKey)
	k.el, k.hasExcl = im.lookup(k.exclKey)
	return k
}

// ports maps X_PORTS and the ADVANCED_*_X keys of proto; it reports
// whether anything of proto is watched. What is read depends on how
// PortSentry watched proto: not at all, -aX (a range), or a port list.
func (im *importer) ports(proto string) bool {
	sec := im.root.sec(proto, im.portsHead(proto)...)
	k := im.portKeysOf(proto)
	switch mode := im.mode(proto); mode {
	case "":
		return im.portsOff(k, sec)
	case "a" + proto:
		return im.portsAdvanced(k, sec, mode)
	default:
		return im.portsList(k, sec, mode)
	}
}

// portsHead is the comment above the tcp or udp section: for 1.2 it says
// how PortSentry ran, which the other dialects have no notion of.
func (im *importer) portsHead(proto string) []string {
	if im.c.Dialect != Dialect12 {
		return nil
	}
	P, mode := strings.ToUpper(proto), im.mode(proto)
	if mode == "" {
		return []string{fmt.Sprintf("%s: PortSentry did not watch %s (%s).", P, P, im.modesText())}
	}
	return []string{fmt.Sprintf("%s: PortSentry ran -%s %s.", P, mode, im.modesSource())}
}

// portsOff handles a 1.2 protocol no mode watched: nothing is monitored,
// and each port key set is a warning, since the user may expect it used.
func (im *importer) portsOff(k portKeys, sec *section) bool {
	sec.set("ports", seq(true), k.P+" is not monitored")
	for _, x := range []struct {
		l  Line
		ok bool
	}{{k.pl, k.hasPorts}, {k.al, k.hasAdv}, {k.el, k.hasExcl}} {
		if x.ok {
			im.d.warnf(x.l.Num, "%s is not imported: %s is not monitored (%s)", x.l.Key, k.P, im.modesText())
		}
	}
	return false
}

// portsAdvanced handles 1.2's -atcp/-audp: PortSentry ignored X_PORTS and
// watched every port below ADVANCED_PORTS_X minus ADVANCED_EXCLUDE_X,
// which become the advanced section.
func (im *importer) portsAdvanced(k portKeys, sec *section, mode string) bool {
	if k.hasPorts {
		im.d.warnf(k.pl.Num, "%s is not imported: in -%s mode PortSentry ignored it and watched every port below %s", k.portsKey, mode, k.advKey)
		sec.set("ports", seq(true), orig(k.pl), fmt.Sprintf("not used in -%s mode (PortSentry ignored it too); see advanced", mode))
	} else {
		sec.set("ports", seq(true), fmt.Sprintf("-%s mode watches the advanced range instead", mode))
	}
	adv := sec.sec("advanced", fmt.Sprintf("-%s: every port below %s that no listener uses, minus %s", mode, k.advKey, k.exclKey))
	below := advancedBelow
	if k.hasAdv {
		n, err := strconv.Atoi(strings.TrimSpace(k.al.Value))
		if err != nil || n < 2 || n > 65535 {
			im.d.errorf(k.al.Num, "%s: want a port number from 2 to 65535 (ports below it are watched): %s", k.advKey, quoteShort(k.al.Text))
			return false
		}
		below = n
		adv.set("below", intNode(below), orig(k.al))
	} else {
		im.d.warnf(0, "%s is not set: PortSentry -%s used %d, and so does the import", k.advKey, mode, advancedBelow)
		adv.set("below", intNode(below), fmt.Sprintf("%s not set: PortSentry's default %d", k.advKey, advancedBelow))
	}
	if k.hasExcl {
		items, err := parsePorts(k.el.Value, false)
		if err != nil {
			im.d.errorf(k.el.Num, "%s: %v: %s", k.exclKey, err, quoteShort(k.el.Text))
			return false
		}
		adv.set("exclude", portsNode(items), orig(k.el))
	}
	return true
}

// portsList handles a port list: 1.2's -tcp/-stcp/-udp/-sudp, the 2.0
// beta, 2.x. The ADVANCED_* keys are unused there, so they are warnings.
func (im *importer) portsList(k portKeys, sec *section, mode string) bool {
	for _, x := range []struct {
		l  Line
		ok bool
	}{{k.al, k.hasAdv}, {k.el, k.hasExcl}} {
		if x.ok {
			im.d.warnf(x.l.Num, "%s is not imported: it is only used in -a%s mode, and PortSentry ran -%s %s", x.l.Key, k.proto, mode, im.modesSource())
		}
	}
	if !k.hasPorts {
		if im.c.Dialect == Dialect12 {
			im.d.warnf(0, "%s is not set: PortSentry -%s refused to start without it; %s is not monitored", k.portsKey, mode, k.P)
		}
		sec.set("ports", seq(true), fmt.Sprintf("%s not set: %s is not monitored", k.portsKey, k.P))
		return false
	}
	items, err := parsePorts(k.pl.Value, im.c.Dialect == DialectRevived)
	if err != nil {
		im.d.errorf(k.pl.Num, "%s: %v: %s", k.portsKey, err, quoteShort(k.pl.Text))
		return false
	}
	node, comments := im.portListNode(k, items)
	if im.c.Dialect == Dialect12 && len(items) > maxSocks12 {
		im.d.warnf(k.pl.Num, "%s lists %d ports: PortSentry 1.2 watched only the first %d (MAXSOCKS); all of them are imported", k.portsKey, len(items), maxSocks12)
	}
	if im.c.Dialect == Dialect12 && mode == "tcp" {
		im.d.warnf(k.pl.Num, "PortSentry -tcp saw only completed connections; portsentry-nft also sees SYN, FIN, NULL and XMAS probes (what -stcp did) to these ports, so expect more alerts")
		comments = append(comments, "-tcp saw completed connections only; portsentry-nft also sees stealth probes (like -stcp)")
	}
	sec.set("ports", node, comments...)
	return true
}

// portListNode writes a parsed X_PORTS: as the preset name when the list
// is one of PortSentry 1.2's, so the YAML stays short and recognisable,
// with comments quoting the line and the lines it overrode.
func (im *importer) portListNode(k portKeys, items []config.PortItem) (*yaml.Node, []string) {
	comments := []string{orig(k.pl)}
	if idx := im.c.dups[k.portsKey]; len(idx) > 1 {
		var others []int
		for _, i := range idx {
			if im.c.Lines[i].Num != k.pl.Num {
				others = append(others, im.c.Lines[i].Num)
			}
		}
		comments = append(comments, fmt.Sprintf("also set on line %s; %s", joinNums(others), im.c.Dialect.dupShort()))
	}
	node := portsNode(items)
	if name := matchPreset(items, k.proto == "tcp"); name != "" {
		node = strSeq(true, name)
		comments = append(comments, fmt.Sprintf("the same ports as PortSentry 1.2's %q %s list: written as the preset %s", name, k.P, name))
	}
	return node, comments
}

// portsNode writes ports as numbers and ranges as "lo-hi" strings.
func portsNode(items []config.PortItem) *yaml.Node {
	n := seq(true)
	for _, it := range items {
		if it.Lo == it.Hi {
			n.Content = append(n.Content, intNode(int(it.Lo)))
			continue
		}
		s := str(it.String())
		s.Style = yaml.DoubleQuotedStyle
		n.Content = append(n.Content, s)
	}
	return n
}

func (im *importer) response(proto string) {
	P := strings.ToUpper(proto)
	key := "BLOCK_" + P
	sec := im.root.sec(proto)
	l, ok := im.lookup(key)
	if !ok {
		sec.set("response", str(string(config.ResponseLog)), fmt.Sprintf("%s not set: PortSentry's default is 0, log only", key))
		return
	}
	comments := []string{orig(l)}
	var resp config.Response
	switch strings.TrimSpace(l.Value) {
	case "0":
		resp = config.ResponseLog
	case "1":
		resp = config.ResponseBlock
		switch {
		case im.routeTool != "":
			comments = append(comments, fmt.Sprintf("KILL_ROUTE (line %d, %s) is replaced by this native blocking", im.killRoute.Num, im.routeTool))
		case !im.routeCmd:
			im.d.warnf(l.Num, "%s=1 without a usable KILL_ROUTE: PortSentry only wrote hosts.deny and ran KILL_RUN_CMD; portsentry-nft's response: block also blocks the source in the nftables set inet portsentry blocked", key)
		}
	case "2":
		if !im.runCmd {
			im.d.warnf(l.Num, "%s=2 runs KILL_RUN_CMD only, but there is no KILL_RUN_CMD: imported as response: log", key)
			resp = config.ResponseLog
			comments = append(comments, "2 without KILL_RUN_CMD: log only")
			break
		}
		resp = config.ResponseCommand
		if im.routeCmd {
			im.d.warnf(l.Num, "%s=2 ran only KILL_RUN_CMD, but portsentry-nft's response: command also runs the KILL_ROUTE kept in commands; remove that entry if this matters", key)
		}
	default:
		im.d.errorf(l.Num, "%s: want 0 (log), 1 (block) or 2 (run KILL_RUN_CMD only): %s", key, quoteShort(l.Text))
		return
	}
	sec.set("response", str(string(resp)), comments...)
}

func (im *importer) commands() {
	var nodes []*yaml.Node
	if l, ok := im.lookup("KILL_ROUTE"); ok {
		v := strings.TrimSpace(l.Value)
		if !strings.Contains(v, "$TARGET$") {
			im.d.warnf(l.Num, "KILL_ROUTE has no $TARGET$: PortSentry skipped it (\"No target variable specified\"); not imported")
		} else if tool, ok := recognizeKillRoute(v); ok {
			im.killRoute, im.routeTool = &l, tool
			unused := ""
			if !im.blocks() {
				unused = "; BLOCK_TCP and BLOCK_UDP are not 1, so nothing is blocked, as before"
			}
			im.d.warnf(l.Num, "KILL_ROUTE %q (%s) is replaced by native blocking: response: block adds the source to the nftables set inet portsentry blocked (blocked6 for IPv6) for block.timeout (1h unless set), where the old block lasted until a reboot or flush%s", shorten(v), tool, unused)
		} else if n := im.command(l, false, "KILL_ROUTE", "it is not a route or packet-filter command portsentry-nft replaces; kept as a command run after the block, and response: block also adds the source to the nftables set inet portsentry blocked"); n != nil {
			im.killRoute, im.routeCmd = &l, true
			nodes = append(nodes, n)
		}
	}
	first := false
	fl, hasFirst := im.lookup("KILL_RUN_CMD_FIRST")
	if hasFirst {
		first = im.bool01(fl)
	}
	if l, ok := im.lookup("KILL_RUN_CMD"); ok {
		if n := im.command(l, first, "KILL_RUN_CMD", ""); n != nil {
			im.runCmd = true
			if hasFirst {
				n.HeadComment = comment(orig(l), orig(fl))
			}
			nodes = append(nodes, n)
		}
	} else if hasFirst {
		im.d.warnf(fl.Num, "KILL_RUN_CMD_FIRST is not imported: there is no KILL_RUN_CMD for it to order")
	}
	if len(nodes) > 0 {
		im.root.set("commands", seq(false, nodes...))
	}
}

// blocks reports whether BLOCK_TCP or BLOCK_UDP is 1.
func (im *importer) blocks() bool {
	for _, k := range []string{"BLOCK_TCP", "BLOCK_UDP"} {
		if l, ok := im.lookup(k); ok && strings.TrimSpace(l.Value) == "1" {
			return true
		}
	}
	return false
}

// command turns a command line into a commands entry; note, when set, is
// the warning that says why it is kept as a command at all.
func (im *importer) command(l Line, first bool, key, note string) *yaml.Node {
	v := strings.TrimSpace(l.Value)
	argv, shellUse, err := splitCommand(v)
	if err != nil {
		im.d.errorf(l.Num, "%s: %v: %s", key, err, quoteShort(l.Text))
		return nil
	}
	var why []string
	if note != "" {
		why = append(why, note)
	}
	switch {
	case shellUse != "":
		why = append(why, fmt.Sprintf("it needs a shell (%s), so it runs as /bin/sh -c; check it, or move it into a script", shellUse))
	case strings.HasPrefix(argv[0], "-"):
		why = append(why, fmt.Sprintf("its program %q starts with '-', so it runs as /bin/sh -c", argv[0]))
		argv = []string{"/bin/sh", "-c", v}
	case strings.Contains(argv[0], "="):
		// Not a valid assignment (the lexer took those): sh runs it as a
		// program of that name, where env would take it as a variable.
		why = append(why, fmt.Sprintf("its first word %q holds '=' but is no variable name, so the shell runs it as a program; it runs as /bin/sh -c, as PortSentry ran it", argv[0]))
		argv = []string{"/bin/sh", "-c", v}
	case !filepath.IsAbs(argv[0]):
		why = append(why, fmt.Sprintf("its program %q has no absolute path, so it runs as /usr/bin/env %s to keep the PATH lookup; better write the full path", argv[0], argv[0]))
		argv = append([]string{"/usr/bin/env"}, argv...)
	}
	if len(why) > 0 {
		im.d.warnf(l.Num, "%s %q: %s", key, shorten(v), strings.Join(why, "; "))
	}
	im.modeWarning(l)
	n := &yaml.Node{Kind: yaml.MappingNode, HeadComment: comment(orig(l))}
	n.Content = append(n.Content, str("argv"), strSeq(true, argv...), str("first"), boolNode(first))
	return n
}

// modeWarning says when $MODE$ will be replaced by other words than before.
func (im *importer) modeWarning(l Line) {
	if !strings.Contains(l.Value, "$MODE$") {
		return
	}
	switch im.c.Dialect {
	case Dialect20Beta:
		return
	case Dialect12:
		if (im.modes.TCP == "" || im.modes.TCP == "tcp") && (im.modes.UDP == "" || im.modes.UDP == "udp") {
			return
		}
	}
	im.d.warnf(l.Num, "%s uses $MODE$, which %s replaced with %s; portsentry-nft replaces it with tcp or udp", l.Key, im.c.Dialect.Title(), im.c.Dialect.modeWords())
}

// bool01 reads a PortSentry 0/1 flag: 2.x accepts only 0 and 1, the
// Psionic versions took anything but 1 as 0.
func (im *importer) bool01(l Line) bool {
	switch strings.TrimSpace(l.Value) {
	case "1":
		return true
	case "0":
		return false
	}
	if im.c.Dialect == DialectRevived {
		im.d.errorf(l.Num, "%s: want 0 or 1 (PortSentry 2.x refuses anything else): %s", l.Key, quoteShort(l.Text))
	} else {
		im.d.warnf(l.Num, "%s=%q is neither 0 nor 1: %s took it as 0, and so does the import", l.Key, l.Value, im.c.Dialect.Title())
	}
	return false
}

func (im *importer) flag(key, yamlKey string) {
	if l, ok := im.lookup(key); ok {
		im.root.set(yamlKey, boolNode(im.bool01(l)), orig(l))
	}
}

func (im *importer) hostsDeny() {
	l, ok := im.lookup("KILL_HOSTS_DENY")
	if !ok {
		return
	}
	v := strings.TrimSpace(l.Value)
	if !strings.Contains(v, "$TARGET$") {
		im.d.errorf(l.Num, "KILL_HOSTS_DENY has no $TARGET$, so it would deny nobody (PortSentry skipped it): %s", quoteShort(l.Text))
		return
	}
	im.modeWarning(l)
	sec := im.root.sec("hosts_deny", orig(l))
	sec.set("path", str(hostsDenyPath), "PortSentry's compile-time WRAPPER_HOSTS_DENY")
	sec.set("template", str(v))
}

func (im *importer) scanTrigger() {
	l, ok := im.lookup("SCAN_TRIGGER")
	if !ok {
		return
	}
	n, err := strconv.Atoi(strings.TrimSpace(l.Value))
	if err != nil || n < 0 {
		im.d.errorf(l.Num, "SCAN_TRIGGER: want a whole number, 0 or more: %s", quoteShort(l.Text))
		return
	}
	comments := []string{orig(l)}
	if n >= 2 {
		was := "counted a source's probes among the last 50 it saw, with no time limit"
		if im.c.Dialect == DialectRevived {
			was = "counted each source's probes with no time limit"
		}
		im.d.warnf(l.Num, "SCAN_TRIGGER=%d: %s %s; portsentry-nft counts them within detect.window (10m unless set)", n, im.c.Dialect.Title(), was)
		comments = append(comments, "counted within detect.window")
	}
	im.root.sec("detect").set("scan_trigger", intNode(n), comments...)
}

func (im *importer) ignore() {
	l, hasKey := im.lookup("IGNORE_FILE")
	path, line := im.opts.IgnoreFile, 0
	var comments []string
	switch {
	case path != "" && hasKey:
		comments = append(comments, orig(l), "replaced by --ignore "+path)
	case path != "":
		comments = append(comments, "from --ignore "+path)
	case hasKey:
		path, line = strings.TrimSpace(l.Value), l.Num
		comments = append(comments, orig(l))
		if !filepath.IsAbs(path) {
			// PortSentry opened it after chdir("/"); next to the conf is what admins mean.
			rel := path
			path = filepath.Join(filepath.Dir(im.c.Name), path)
			im.d.warnf(line, "IGNORE_FILE %q is a relative path: read as %s, next to the conf", rel, path)
		}
	default:
		return
	}
	entries := []string{defaultIgnore4, defaultIgnore6}
	data, err := im.opts.ReadFile(path)
	if err != nil {
		im.d.warnf(line, "cannot read the ignore file %s (%v): ignore keeps only the defaults %s and %s; add your entries to it by hand", path, trimPathErr(err), defaultIgnore4, defaultIgnore6)
		comments = append(comments, fmt.Sprintf("%s could not be read: only the defaults", path))
	} else {
		ps, warns, err := config.ParseIgnoreFile(path, data)
		for _, w := range warns {
			im.d.list = append(im.d.list, Diag{File: w.File, Line: w.Line, Severity: Warning, Msg: w.Msg})
		}
		if err != nil {
			var es config.Errors
			if errors.As(err, &es) {
				for _, e := range es {
					im.d.list = append(im.d.list, Diag{File: e.File, Line: e.Line, Severity: Error, Msg: e.Msg})
				}
			} else {
				im.d.list = append(im.d.list, Diag{File: path, Severity: Error, Msg: err.Error()})
			}
			return
		}
		n := 0
		for _, p := range ps {
			if s := p.String(); !slices.Contains(entries, s) {
				entries = append(entries, s)
				n++
			}
		}
		comments = append(comments, fmt.Sprintf("%d entries read from %s, after portsentry-nft's defaults", n, path))
	}
	nodes := make([]*yaml.Node, len(entries))
	for i, e := range entries {
		nodes[i] = str(e)
		if i < 2 {
			nodes[i].LineComment = "# default"
		}
	}
	im.root.set("ignore", seq(false, nodes...), comments...)
}

// trimPathErr drops the path from *fs.PathError messages (the warning names it already).
func trimPathErr(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}

func (im *importer) state() {
	blocked := "PortSentry 1.2's line format, reset at each start"
	if im.c.Dialect == Dialect12 {
		blocked = "PortSentry 1.2's line format, one file for every mode (PortSentry 1.2 added the mode, e.g. .atcp)"
	}
	for _, x := range []struct{ key, yamlKey, note string }{
		{"HISTORY_FILE", "history_file", "PortSentry 1.2's line format; do not share it with a PortSentry still running"},
		{"BLOCKED_FILE", "blocked_file", blocked},
	} {
		l, ok := im.lookup(x.key)
		if !ok {
			continue
		}
		v := strings.TrimSpace(l.Value)
		if !filepath.IsAbs(v) {
			im.d.warnf(l.Num, "%s %q is not an absolute path: not imported, state.%s stays in state.dir", x.key, v, x.yamlKey)
			continue
		}
		im.root.sec("state").set(x.yamlKey, str(v), orig(l), x.note)
	}
}

func (im *importer) logging() {
	for _, x := range []struct {
		key, yamlKey string
		valid        []string
	}{
		{"SYSLOG_FACILITY", "facility", config.Facilities},
		{"SYSLOG_LEVEL", "level", config.Levels},
	} {
		l, ok := im.lookup(x.key)
		if !ok {
			continue
		}
		v := strings.ToLower(strings.TrimSpace(l.Value))
		v = strings.TrimPrefix(v, "log_")
		switch v {
		case "warn":
			v = "warning"
		case "error":
			v = "err"
		}
		if !slices.Contains(x.valid, v) {
			im.d.errorf(l.Num, "%s: %q is not a syslog %s (want LOG_ and one of %s): %s", x.key, l.Value, x.yamlKey, strings.Join(x.valid, ", "), quoteShort(l.Text))
			continue
		}
		im.d.warnf(l.Num, "%s is a compile-time setting of %s (portsentry_config.h), so PortSentry ignored this line; imported as logging.%s: %s", x.key, im.c.Dialect.Title(), x.yamlKey, v)
		sec := im.root.sec("logging")
		if sec.get("target").value == nil {
			sec.set("target", str("syslog"), "PortSentry logged to syslog")
		}
		sec.set(x.yamlKey, str(v), orig(l))
	}
}

func (im *importer) encode() ([]byte, error) {
	header := []string{
		fmt.Sprintf("Imported from %s (%s) by portsentry-nft import.", im.c.Name, im.c.Dialect.Title()),
		"Dialect: " + im.c.DialectReason + ".",
	}
	if im.c.Dialect == Dialect12 {
		header = append(header, "PortSentry ran "+im.modes.String()+" "+im.modesSource()+".")
	}
	header = append(header,
		"Each key quotes the line it came from; keys not written here keep",
		"portsentry-nft's defaults. Validate with: portsentry-nft check --config FILE")
	doc := &yaml.Node{Kind: yaml.DocumentNode, HeadComment: comment(header...), Content: []*yaml.Node{im.root.node()}}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
