package alert

import (
	"bytes"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/packet"
)

// Every kind of line, made by its function from the example values of
// docs/log-lines.md, is word for word that page's example: it is what
// admins write their filters from, so the two cannot drift apart.
func TestEveryLineKindReadsAsTheDocsShowIt(t *testing.T) {
	doc, err := os.ReadFile("../../docs/log-lines.md")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	g := New(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.MessageKey {
				return a
			}
			return slog.Attr{}
		},
	})), nil)
	src := netip.MustParseAddr("10.201.0.2")
	host := HostField(src, "")
	probe := packet.Probe{Src: src, Proto: packet.TCP, Kind: packet.KindSYN, DstPort: 11, SrcPort: 34605}
	udp := packet.Probe{Src: src, Proto: packet.UDP, Kind: packet.KindUDP, DstPort: 111, SrcPort: 53}
	lines := []string{
		ProbeLine(&probe, host),
		ProbeLine(&udp, host),
		BlockedLine(src, "portsentry", "blocked", time.Hour, 1, ""),
		BlockedLine(src, "portsentry", "blocked", 4*time.Hour, 2, ""),
		BlockedLine(src, "portsentry", "blocked", time.Hour, 1, "an administrator"),
		BlockedLine(src, "portsentry", "blocked", time.Hour, 1, "the kernel"),
		BlockedLine(src, "portsentry", "blocked", time.Hour, 1, "the fleet"),
		LiftedLine(src, "it is protected (default gateway)"),
		CorrelatedLine(src, []string{"web1", "web2", "db1"}, 10*time.Minute),
		WrappersLine(src, "ALL: 10.201.0.2 : DENY"),
		AlreadyBlockedLine(host),
		RestoredLine(src, "blocked", 59*time.Minute),
		ProtectedLine(src, "default gateway"),
		RefusedLine(src, "more than block.max_per_second new blocks"),
		UnblockedLine(src),
		EvictedLine(src),
		CommandLine(src, []string{"/usr/local/bin/notify", "10.201.0.2", "11"}, ""),
		IgnoringLine(packet.UDP),
		admin + SetFullLine("65536", src, 1),
	}
	g.Monitoring("eth0", "all", []uint16{1, 11, 15}, []uint16{1, 7})
	g.Initialized()
	g.ShuttingDown()
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		lines = append(lines, strings.Trim(strings.TrimPrefix(l, "msg="), `"`))
	}
	for _, l := range lines {
		if !bytes.Contains(doc, []byte("\n"+l+"\n")) {
			t.Errorf("docs/log-lines.md does not show the line\n\t%s", l)
		}
	}
}

// The prefixes are PortSentry's: attack lines say attackalert, the
// daemon's own say adminalert, errors say ERROR.
func TestPrefixes(t *testing.T) {
	var buf bytes.Buffer
	g := New(slog.New(slog.NewTextHandler(&buf, nil)), nil)
	g.Errorf("could not block host %s: %v", "10.0.0.1", "EPERM")
	g.Warn("w")
	g.Attack(UnblockedLine(netip.MustParseAddr("10.0.0.1")))
	out := buf.String()
	for _, want := range []string{`"adminalert: ERROR: could not block host 10.0.0.1: EPERM"`, `"adminalert: w"`, `"attackalert: Host 10.0.0.1 has been unblocked by an administrator"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

// Consecutive ports are written as ranges: every port is one short line.
func TestJoinPorts(t *testing.T) {
	all := make([]uint16, 65535)
	for i := range all {
		all[i] = uint16(i + 1)
	}
	for _, c := range []struct {
		ports []uint16
		want  string
	}{
		{[]uint16{1, 11, 15, 79}, "1,11,15,79"},
		{[]uint16{1, 2, 7, 8, 9, 10, 20}, "1,2,7-10,20"},
		{[]uint16{32771, 32772, 32773, 32774}, "32771-32774"},
		{all, "1-65535"},
		{nil, ""},
	} {
		if got := JoinPorts(c.ports); got != c.want {
			t.Errorf("JoinPorts(%d ports) = %q, want %q", len(c.ports), got, c.want)
		}
	}
}
