package nft_test

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"

	"github.com/portsentry-nft/portsentry-nft/internal/capture"
	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

var update = flag.Bool("update", false, "rewrite golden files")

// golden compares got with testdata/name (or rewrites it with -update).
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs (go test -update rewrites it):\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

// The reference ruleset in nft/ is what the default configuration renders.
func TestReferenceRuleset(t *testing.T) {
	golden(t, filepath.Join("..", "..", "nft", "portsentry.nft"), nft.Build(config.Default(), nft.Shape{}).Text())
}

func mustParse(t testing.TB, yaml string) *config.Config {
	t.Helper()
	c, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var configs = map[string]string{
	"default": "",
	"full": `
interfaces: [veth-a, eth1]
addresses: [10.201.0.1, fd00:201::1]
tcp: {ports: [1-1024, 8080, 31337]}
udp: {ports: [bare-bones, 65535]}
ignore: [10.0.0.0/8, 11.0.0.0/8, 10.1.0.0/16, 192.168.1.7, fd00::/8, 0.0.0.0/32]
capture: {group: 7}
`,
	"tcp-only": "udp: {ports: []}\nignore: []\n",
	"routed":   "routed: {block: true, watch: true}\n",
}

// Text and netlink are one description: loading the text with nft -f and
// installing through netlink must give the same table, as nft lists it.
func TestInstallMatchesText(t *testing.T) {
	netnstest.Require(t)
	for name, y := range configs {
		t.Run(name, func(t *testing.T) {
			_, got := textMatchesNetlink(t, nft.Build(mustParse(t, y), nft.Shape{}))
			golden(t, filepath.Join("testdata", name+".list"), got)
		})
	}
}

// The rules text is valid nft input (nft -c checks without applying).
func TestTextPassesNftCheck(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t, "psC")
	for name, y := range configs {
		f := filepath.Join(t.TempDir(), name+".nft")
		os.WriteFile(f, []byte(nft.Build(mustParse(t, y), nft.Shape{}).Text()), 0o644)
		ns.MustRun("nft", "-c", "-f", f)
	}
}

// Reinstalling (restart, reload, changed config) keeps blocked elements,
// even when the blocked set itself must be recreated for a new size.
func TestReinstallKeepsBlocks(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t, "psR")
	install(t, ns, nft.Build(config.Default(), nft.Shape{}))
	ns.MustRun("nft", "add element inet portsentry blocked { 10.201.0.9 timeout 1h, 10.201.0.10 timeout 2h }")
	ns.MustRun("nft", "add element inet portsentry blocked6 { fd00:201::9 timeout 1h }")

	install(t, ns, nft.Build(mustParse(t, "tcp: {ports: [1-100]}\n"), nft.Shape{}))
	last := nft.Build(mustParse(t, "block: {set_size: 1000}\n"), nft.Shape{})
	install(t, ns, last)

	out := ns.MustRun("nft", "list", "set", "inet", "portsentry", "blocked")
	for _, want := range []string{"10.201.0.9 timeout 1h expires", "10.201.0.10 timeout 2h expires", "size 1000"} {
		if !strings.Contains(out, want) {
			t.Errorf("after reinstall, blocked lacks %q:\n%s", want, out)
		}
	}
	out6 := ns.MustRun("nft", "list", "set", "inet", "portsentry", "blocked6")
	if !strings.Contains(out6, "fd00:201::9") {
		t.Errorf("after reinstall, blocked6 lost its element:\n%s", out6)
	}
	want := strings.Count(last.Text(), "log prefix")
	if n := strings.Count(ns.MustRun("nft", "list", "chain", "inet", "portsentry", "input"), "log prefix"); n != want {
		t.Errorf("after three installs the chain has %d log rules, want %d (no duplicates)", n, want)
	}
}

// A table an admin loaded with nft -f (the shipped file, or the output of
// `portsentry-nft rules`) is taken over by the daemon's install: no
// "file exists" from sets nft describes differently, blocks kept, and the
// result is the table the daemon would have made.
func TestInstallOverNftLoadedTable(t *testing.T) {
	netnstest.Require(t)
	for name, y := range configs {
		t.Run(name, func(t *testing.T) {
			rs := nft.Build(mustParse(t, y), nft.Shape{})
			ns := netnstest.New(t, "psF")
			f := filepath.Join(t.TempDir(), "r.nft")
			os.WriteFile(f, []byte(rs.Text()), 0o644)
			ns.MustRun("nft", "-f", f)
			ns.MustRun("nft", "add element inet portsentry blocked { 10.201.0.9 timeout 1h }")
			install(t, ns, rs)
			install(t, ns, rs) // and again, as on a restart
			if out := ns.MustRun("nft", "list", "set", "inet", "portsentry", "blocked"); !strings.Contains(out, "10.201.0.9 timeout 1h expires") {
				t.Errorf("install over the nft -f table lost the block:\n%s", out)
			}
			ns.MustRun("nft", "flush", "set", "inet", "portsentry", "blocked")
			golden(t, filepath.Join("testdata", name+".list"), listTable(t, ns))
		})
	}
}

// A blocked set defined otherwise (by hand, or by a version before the
// first strike: without the dynamic flag the add rules need) is recreated
// with its elements.
func TestInstallOverRedefinedBlockedSet(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t, "psD")
	install(t, ns, nft.Build(config.Default(), nft.Shape{}))
	ns.MustRun("nft", "flush", "chain", "inet", "portsentry", "input")
	ns.MustRun("nft", "flush", "chain", "inet", "portsentry", "prerouting")
	ns.MustRun("nft", "delete", "set", "inet", "portsentry", "blocked")
	ns.MustRun("nft", "add set inet portsentry blocked { type ipv4_addr; size 65536; flags timeout; }")
	ns.MustRun("nft", "add element inet portsentry blocked { 10.201.0.9 timeout 1h }")
	install(t, ns, nft.Build(config.Default(), nft.Shape{}))
	out := ns.MustRun("nft", "list", "set", "inet", "portsentry", "blocked")
	if !strings.Contains(out, "10.201.0.9 timeout 1h expires") || !strings.Contains(out, "flags dynamic,timeout") {
		t.Errorf("want the block carried into our own definition of the set:\n%s", out)
	}
}

// textMatchesNetlink loads rs's text with nft -f in one namespace and
// installs rs through netlink in another: nft must list the same table.
// It returns the netlink namespace and that listing.
func textMatchesNetlink(t *testing.T, rs *nft.Ruleset) (*netnstest.NS, string) {
	t.Helper()
	viaText := netnstest.New(t, "psT")
	f := filepath.Join(t.TempDir(), "r.nft")
	if err := os.WriteFile(f, []byte(rs.Text()), 0o644); err != nil {
		t.Fatal(err)
	}
	viaText.MustRun("nft", "-f", f)
	viaNetlink := netnstest.New(t, "psN")
	install(t, viaNetlink, rs)
	want, got := listTable(t, viaText), listTable(t, viaNetlink)
	if got != want {
		t.Fatalf("netlink install differs from nft -f of the text:\n--- nft -f\n%s\n--- netlink\n%s", want, got)
	}
	return viaNetlink, got
}

func install(t testing.TB, ns *netnstest.NS, rs *nft.Ruleset) {
	t.Helper()
	if err := rs.InstallIn(ns.Open()); err != nil {
		t.Fatal(err)
	}
}

var counterRe = regexp.MustCompile(`counter packets \d+ bytes \d+`)

func listTable(t *testing.T, ns *netnstest.NS) string {
	t.Helper()
	out := ns.MustRun("nft", "list", "table", "inet", "portsentry")
	return counterRe.ReplaceAllString(out, "counter packets 0 bytes 0")
}

var _ = exec.Command

// Normally each probe is logged at once (queue-threshold 1 on the rule); a
// flood drops it so the group's threshold batches, and bounds the probes
// logged a second.
func TestFloodBatching(t *testing.T) {
	rate := config.Default().Capture.FloodRate
	text := nft.Build(config.Default(), nft.Shape{}).Text()
	if n := strings.Count(text, " group 5 queue-threshold 1\n"); n != 2 || strings.Contains(text, fmt.Sprintf("limit rate %d", rate)) {
		t.Fatalf("%d log rules with queue-threshold 1 in:\n%s", n, text)
	}
	flood := nft.Build(config.Default(), nft.Shape{Flood: true}).Text()
	limit := fmt.Sprintf("limit rate %d/second burst %d packets counter log prefix", rate, rate/10)
	// The plain rules and the peers' (two families, two protocols).
	if strings.Contains(flood, "queue-threshold") || strings.Count(flood, " group 5\n") != 2 || strings.Count(flood, limit) != 2+4 {
		t.Fatalf("flood ruleset:\n%s", flood)
	}
	// A group threshold of 1 leaves nothing to batch: no queue-threshold
	// either way; a flood still bounds the rate.
	one := mustParse(t, "capture: {queue_threshold: 1}\n")
	if a, b := nft.Build(one, nft.Shape{}).Text(), nft.Build(one, nft.Shape{Flood: true}).Text(); strings.Contains(a+b, "queue-threshold") || strings.Count(b, limit) != 2+4 {
		t.Fatalf("queue_threshold 1:\n%s\n---\n%s", a, b)
	}
	// flood_rate 0: no bound.
	if unbound := nft.Build(mustParse(t, "capture: {flood_rate: 0}\n"), nft.Shape{Flood: true}).Text(); strings.Contains(unbound, "counter log prefix \"portsentry tcp\"") && strings.Contains(unbound, limit) {
		t.Fatalf("flood_rate 0 still bounds:\n%s", unbound)
	}
}

// sampleInUse has elements in every in-use set, wildcards of each kind.
var sampleInUse = nft.InUse{
	AnyTCP:  []uint16{111},
	AnyTCP4: []uint16{25},
	AnyTCP6: []uint16{443},
	TCP4:    []netip.AddrPort{netip.MustParseAddrPort("10.201.0.1:1"), netip.MustParseAddrPort("127.0.0.1:8080")},
	TCP6:    []netip.AddrPort{netip.MustParseAddrPort("[fd00:201::1]:79"), netip.MustParseAddrPort("[::1]:8080")},
	AnyUDP4: []uint16{69},
	UDP4:    []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:161")},
	UDP6:    []netip.AddrPort{netip.MustParseAddrPort("[fd00:201::1]:53")},
}

// shapes are the Shapes whose text nft(8) can load as it is (all but
// CompatQueue, see TestCompatQueue).
var shapes = map[string]nft.Shape{
	"flood":       {Flood: true},
	"inuse":       {InUse: sampleInUse},
	"flood+inuse": {Flood: true, InUse: sampleInUse},
}

// Text and netlink agree for every Shape, not just the zero one.
func TestInstallMatchesTextShapes(t *testing.T) {
	netnstest.Require(t)
	for cname, y := range configs {
		for sname, s := range shapes {
			t.Run(cname+"/"+sname, func(t *testing.T) {
				rs := nft.Build(mustParse(t, y), s)
				_, got := textMatchesNetlink(t, rs)
				if s.InUse.TCP4 != nil && !strings.Contains(got, "10.201.0.1 . 1") {
					t.Errorf("in-use element missing:\n%s", got)
				}
			})
		}
	}
}

// Build is a pure function: the same inputs give the same ruleset, and
// building one Shape does not change a ruleset built before.
func TestBuildIsPure(t *testing.T) {
	cfg := mustParse(t, configs["full"])
	before := nft.Build(cfg, nft.Shape{}).Text()
	for _, s := range shapes {
		a, b := nft.Build(cfg, s), nft.Build(cfg, s)
		if a.Text() != b.Text() || a.Shape().Flood != s.Flood {
			t.Fatalf("two builds of one shape differ")
		}
	}
	if again := nft.Build(cfg, nft.Shape{}).Text(); again != before {
		t.Fatalf("a build changed after building other shapes:\n%s\n---\n%s", before, again)
	}
	if strings.Contains(before, "_inuse4 {\n\t\ttype ipv4_addr . inet_service\n\t\telements") {
		t.Fatalf("zero Shape has in-use elements:\n%s", before)
	}
}

// In NFQUEUE mode the probe rules queue with bypass instead of logging.
func TestQueueModeText(t *testing.T) {
	text := nft.Build(mustParse(t, "capture: {mode: nfqueue, queue: 3}\n"), nft.Shape{}).Text()
	if strings.Count(text, "counter queue num 3 bypass") != 2 || strings.Contains(text, "log ") || strings.Contains(text, "#") {
		t.Errorf("nfqueue ruleset:\n%s", text)
	}
}

var commentRe = regexp.MustCompile(`(?m)^\t*#.*\n`)

// With CompatQueue the probe rules queue through the xtables NFQUEUE
// target. nft(8) cannot load that from text, so the text is the nft queue
// statement under a comment that says so; the rest is unchanged. In NFLOG
// mode CompatQueue changes nothing.
func TestCompatQueueText(t *testing.T) {
	cfg := mustParse(t, "capture: {mode: nfqueue, queue: 3}\n")
	rs := nft.Build(cfg, nft.Shape{CompatQueue: true})
	text := rs.Text()
	if n := strings.Count(text, "\t\t# installed by the daemon through the xtables NFQUEUE target (nft_compat): this kernel has no nft_queue\n\t\t"); n != 2 {
		t.Errorf("%d compat comments in:\n%s", n, text)
	}
	if plain := nft.Build(cfg, nft.Shape{}).Text(); commentRe.ReplaceAllString(text, "") != plain {
		t.Errorf("compat text without its comments differs from the plain text:\n%s\n---\n%s", text, plain)
	}
	if !rs.Queued() || !rs.Shape().CompatQueue {
		t.Errorf("Queued %v, Shape %+v", rs.Queued(), rs.Shape())
	}
	if a, b := nft.Build(config.Default(), nft.Shape{CompatQueue: true}).Text(), nft.Build(config.Default(), nft.Shape{}).Text(); a != b {
		t.Errorf("CompatQueue changed an NFLOG ruleset")
	}
}

// The compat ruleset installs (on kernels with or without nft_queue, as
// long as nft_compat and xt_NFQUEUE exist), and the kernel holds the
// xtables NFQUEUE target (queue 3, bypass) where the text has the queue
// statement. nft(8) cannot print an xtables target of an inet table
// ("XT target NFQUEUE not found"), so the rules are read back through
// netlink.
func TestCompatQueueInstall(t *testing.T) {
	netnstest.Require(t)
	cfg := mustParse(t, "capture: {mode: nfqueue, queue: 3}\n")
	ns := netnstest.New(t, "psQ")
	install(t, ns, nft.Build(cfg, nft.Shape{CompatQueue: true, InUse: sampleInUse}))
	c, err := nft.DialQuery(ns.Open())
	if err != nil {
		t.Fatal(err)
	}
	rules, err := c.GetRules(nft.Table(), &nftables.Chain{Name: nft.ChainInput, Table: nft.Table()})
	if err != nil {
		t.Fatal(err)
	}
	targets := 0
	for _, r := range rules {
		for _, e := range r.Exprs {
			switch e := e.(type) {
			case *expr.Queue:
				t.Errorf("rule %d has the nft queue statement", r.Position)
			case *expr.Target:
				info, ok := e.Info.(*xt.Unknown)
				if e.Name != "NFQUEUE" || !ok || len(*info) < 6 ||
					binaryutil.NativeEndian.Uint16((*info)[0:2]) != 3 || binaryutil.NativeEndian.Uint16((*info)[4:6])&1 == 0 {
					t.Errorf("target %s %v: want NFQUEUE queue 3 with bypass", e.Name, e.Info)
				}
				targets++
			}
		}
	}
	if targets != 2 {
		t.Errorf("%d xtables NFQUEUE targets, want 2 (tcp and udp probe rules)", targets)
	}
}

// Each probe rule logs with its own prefix, which capture maps back to the
// rule (the daemon acts on a probe whose transport header it cannot read by
// that rule, and follows the kernel's first strike by it); the forward
// chain's rules use the same ones.
func TestLogPrefixes(t *testing.T) {
	for name, y := range configs {
		text := nft.Build(mustParse(t, y), nft.Shape{}).Text()
		for _, line := range strings.Split(text, "\n") {
			if !strings.Contains(line, " log ") {
				continue
			}
			var want string
			strike := strings.Contains(line, " add @blocked")
			again := strings.Contains(line, "saddr @blocked")
			peer := strings.Contains(line, "saddr @peers")
			switch {
			case strings.Contains(line, "tcp dport @tcp_ports") && peer:
				want = capture.PrefixTCPPeer
			case strings.Contains(line, "udp dport @udp_ports") && peer:
				want = capture.PrefixUDPPeer
			case strings.Contains(line, "tcp dport @tcp_ports") && strike:
				want = capture.PrefixTCPStrike
			case strings.Contains(line, "tcp dport @tcp_ports") && again:
				want = capture.PrefixTCPAgain
			case strings.Contains(line, "tcp dport @tcp_ports"):
				want = capture.PrefixTCP
			case strings.Contains(line, "udp dport @udp_ports") && strike:
				want = capture.PrefixUDPStrike
			case strings.Contains(line, "udp dport @udp_ports") && again:
				want = capture.PrefixUDPAgain
			case strings.Contains(line, "udp dport @udp_ports"):
				want = capture.PrefixUDP
			default:
				t.Errorf("%s: a log rule that is no probe rule: %s", name, line)
				continue
			}
			if r := capture.RuleOf(want); r.Struck() != strike || r.Again() != again || r.Peer() != peer || r.UDP() != strings.Contains(line, "udp dport") {
				t.Errorf("%s: capture reads prefix %q as rule %s", name, want, r)
			}
			if !strings.Contains(line, " log prefix "+strconv.Quote(want)+" group ") {
				t.Errorf("%s: %s lacks its prefix %q", name, line, want)
			}
		}
	}
}

// The kernel strikes only where the daemon has nothing to decide before
// the block; `rules` shows which rules carry the add.
func TestStrikes(t *testing.T) {
	for _, c := range []struct {
		yaml     string
		tcp, udp bool
	}{
		{"", true, true},
		{"block: {first_strike: false}\n", false, false},
		{"detect: {scan_trigger: 0}\n", true, true},
		{"detect: {scan_trigger: 2}\n", false, false},
		{"capture: {mode: nfqueue}\n", false, false},
		{"tcp: {verified: true}\n", false, true},
		{"tcp: {response: log}\n", false, true},
		{"udp: {response: command}\ncommands: [{argv: [/bin/true]}]\n", true, false},
		{"commands: [{argv: [/bin/true], first: true}]\n", false, false},
		{"commands: [{argv: [/bin/true]}]\n", true, true},
		{"udp: {ports: []}\n", true, false},
	} {
		cfg := mustParse(t, c.yaml)
		tcp, udp := nft.Strikes(cfg)
		if tcp != c.tcp || udp != c.udp {
			t.Errorf("%q: strikes tcp %v udp %v, want %v %v", c.yaml, tcp, udp, c.tcp, c.udp)
		}
		text := nft.Build(cfg, nft.Shape{Protected: []netip.Prefix{netip.MustParsePrefix("10.201.0.1/32")}}).Text()
		if got := strings.Count(text, "add @blocked"); got != 4*(b2i(c.tcp)+b2i(c.udp)) {
			t.Errorf("%q: %d add rules:\n%s", c.yaml, got, text)
		}
		if has := strings.Contains(text, "10.201.0.1"); has != (c.tcp || c.udp) {
			t.Errorf("%q: protected set holds 10.201.0.1: %v", c.yaml, has)
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Peers: the packet path keeps peers/peers6 for block.peer_window, a
// peer's probes are logged under their own prefix before any first strike,
// and peer_window 0 leaves no trace of them. NFQUEUE has no peer probe
// rules (a queued packet carries no prefix).
func TestPeerRules(t *testing.T) {
	text := nft.Build(config.Default(), nft.Shape{}).Text()
	for _, want := range []string{
		"meta l4proto tcp ct status assured update @peers { ip saddr timeout 30m }",
		"meta l4proto tcp ct status assured update @peers6 { ip6 saddr timeout 30m }",
		"set peers {\n\t\ttype ipv4_addr\n\t\tsize 65536\n\t\tflags dynamic,timeout\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("default ruleset lacks %q", want)
		}
	}
	peer, strike := strings.Index(text, "@peers counter log"), strings.Index(text, "add @blocked")
	if peer < 0 || strike < 0 || peer > strike {
		t.Errorf("a peer's probe must meet its rule before the first strike:\n%s", text)
	}
	if inuse := strings.Index(text, "@tcp_inuse return"); strings.Index(text, "update @peers") > inuse {
		t.Errorf("the in-use rules return before peers are refreshed:\n%s", text)
	}
	if off := nft.Build(mustParse(t, "block: {peer_window: 0s}\n"), nft.Shape{}).Text(); strings.Contains(off, "peer") {
		t.Errorf("peer_window 0 still has peers:\n%s", off)
	}
	q := nft.Build(mustParse(t, "capture: {mode: nfqueue}\n"), nft.Shape{}).Text()
	if strings.Contains(q, "@peers counter") || !strings.Contains(q, "update @peers ") {
		t.Errorf("nfqueue: peers kept, no peer probe rules:\n%s", q)
	}
}
