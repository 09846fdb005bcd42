package scanner_test

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/portsentry-nft/portsentry-nft/internal/packet"
	"github.com/portsentry-nft/portsentry-nft/internal/scanner"
)

// traces is the directory of labelled traces; -traces DIR tests a fresh
// capture (make-traces.sh run elsewhere).
var traces = flag.String("traces", "../../testdata/scanners", "directory of labelled scanner traces")

// label is one line of the traces' LABELS file.
type label struct {
	file      string
	tool      scanner.Tool
	first     int // the first probes are firstTool's
	firstTool scanner.Tool
	crafted   bool // made with scapy, not sent by the tool
}

func readLabels(t *testing.T) []label {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(*traces, "LABELS"))
	if err != nil {
		t.Fatal(err)
	}
	var ls []label
	sc := bufio.NewScanner(bytes.NewReader(b))
	crafted := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "# Crafted") {
			crafted = true
		}
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(line, "#") {
			continue
		}
		l := label{file: f[0], tool: mustTool(t, f[1]), crafted: crafted}
		if len(f) == 4 {
			if l.first, err = strconv.Atoi(f[2]); err != nil {
				t.Fatalf("LABELS: %q: %v", line, err)
			}
			l.firstTool = mustTool(t, f[3])
		}
		ls = append(ls, l)
	}
	return ls
}

func mustTool(t *testing.T, s string) scanner.Tool {
	tool := scanner.Parse(s)
	if tool.String() != s {
		t.Fatalf("LABELS: unknown tool %q", s)
	}
	return tool
}

// row is a tool's count of probes and of those named right.
type row struct{ n, right int }

// TestTraces names the probes of the traces the real tools sent (and of
// the crafted ones, a separate row), and wants each tool named right for
// 95% of its probes or more.
func TestTraces(t *testing.T) {
	rows := map[string]*row{}
	for _, l := range readLabels(t) {
		b, err := os.ReadFile(filepath.Join(*traces, l.file))
		if err != nil {
			t.Fatal(err)
		}
		pkts, err := readPcap(b)
		if err != nil {
			t.Fatalf("%s: %v", l.file, err)
		}
		probes := 0
		for i, pkt := range pkts {
			var p packet.Probe
			if err := packet.Decode(pkt, &p); err != nil || p.Kind == packet.KindNone {
				continue // a reply, not a probe
			}
			want := l.tool
			if probes < l.first {
				want = l.firstTool
			}
			probes++
			name := run(l.file) + ": " + want.String()
			if l.crafted {
				name += " (crafted)"
			}
			r := rows[name]
			if r == nil {
				r = &row{}
				rows[name] = r
			}
			r.n++
			if p.Tool == want {
				r.right++
			} else {
				t.Logf("%s packet %d: %s, want %s", l.file, i+1, p.Tool, want)
			}
		}
		if probes == 0 {
			t.Errorf("%s: no probes", l.file)
		}
	}
	report(t, rows)
}

// run is the tool and run of a trace's name, both families together:
// "nmap-sS" of nmap-sS-4.pcap.
func run(file string) string {
	r := strings.TrimSuffix(file, ".pcap")
	return strings.TrimSuffix(strings.TrimSuffix(r, "-4"), "-6")
}

func report(t *testing.T, rows map[string]*row) {
	names := make([]string, 0, len(rows))
	for n := range rows {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "| trace: tool | probes | named right | %% |\n|---|---|---|---|\n")
	for _, n := range names {
		r := rows[n]
		pct := 100 * float64(r.right) / float64(r.n)
		fmt.Fprintf(&b, "| %s | %d | %d | %.1f |\n", n, r.n, r.right, pct)
		if pct < 95 {
			t.Errorf("%s: %d of %d probes named right (%.1f%%), want >= 95%%", n, r.right, r.n, pct)
		}
	}
	t.Logf("\n%s", b.String())
}

// FuzzReadPcap: the trace reader never panics, and every packet it returns
// lies within the file.
func FuzzReadPcap(f *testing.F) {
	for _, name := range []string{"masscan-4.pcap", "nmap-O-6.pcap", "zmap-new.pcap"} {
		b, err := os.ReadFile(filepath.Join(*traces, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 600)])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pkts, err := readPcap(b)
		if err != nil {
			return
		}
		total := 0
		for _, p := range pkts {
			total += len(p)
		}
		if total > len(b) {
			t.Fatalf("%d bytes of packets from a file of %d", total, len(b))
		}
	})
}
