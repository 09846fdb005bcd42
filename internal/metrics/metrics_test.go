package metrics

import (
	"io"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func snapshot() Snapshot {
	return Snapshot{
		Start:    time.Unix(1_800_000_000, 0),
		Probes:   []Probes{{"tcp", "TCP SYN scan", 7}, {"udp", "UDP scan", 2}},
		Blocks:   map[string]uint64{"detect": 3, "manual": 1},
		Refused:  map[string]uint64{"protected": 1, "rate_limited": 0, "set_full": 0, "queue_full": 0},
		Blocked4: 100000, Blocked6: 2, Tracked: 9, JournalDurable: true,
	}
}

// counters stand for the daemon's table.
var counters = []Counter{
	{"nflog_lost_total", "Log messages the kernel dropped.", func() uint64 { return 5 }},
	{"malformed_packets_total", "Packets that did not decode.", func() uint64 { return 4 }},
	{"undecoded_probes_total", "Probes whose transport header could not be read.", func() uint64 { return 3 }},
	{"journal_errors_total", "Journal writes that failed.", func() uint64 { return 6 }},
}

func scrape(t testing.TB, m *Metrics) string {
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return string(body)
}

// One metric per quantity, with the labels that split it, as
// docs/metrics.md lists them.
func TestExposition(t *testing.T) {
	m := New(snapshot, counters)
	m.ObserveBlock(300 * time.Microsecond)
	body := scrape(t, m)
	for _, want := range []string{
		`portsentry_probes_total{proto="tcp",scan_type="TCP SYN scan"} 7`,
		`portsentry_probes_total{proto="udp",scan_type="UDP scan"} 2`,
		`portsentry_blocks_total{origin="detect"} 3`,
		`portsentry_blocks_total{origin="manual"} 1`,
		`portsentry_refused_triggers_total{reason="protected"} 1`,
		`portsentry_blocked_addresses{family="ipv4"} 100000`,
		`portsentry_blocked_addresses{family="ipv6"} 2`,
		`portsentry_nflog_lost_total 5`,
		`portsentry_malformed_packets_total 4`,
		`portsentry_undecoded_probes_total 3`,
		`portsentry_tracked_sources 9`,
		`portsentry_journal_errors_total 6`,
		`portsentry_journal_durable 1`,
		`portsentry_start_time_seconds 1.8e+09`,
		`portsentry_probe_to_block_seconds_bucket{le="0.0005"} 1`,
		"# TYPE portsentry_blocked_addresses gauge",
		"# TYPE portsentry_blocks_total counter",
		"process_start_time_seconds",
		"go_goroutines",
	} {
		if !strings.Contains(body, want+"\n") && !strings.Contains(body, want+" ") {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if strings.Contains(body, "portsentry_events_total") {
		t.Error("the old catch-all metric is still served")
	}
}

// Every metric described here (the fleet's too, which a host without a
// fleet does not serve; the daemon's table of counters has a test of its
// own) is in docs/metrics.md, the table admins and
// the Grafana dashboard are written from.
func TestEveryMetricIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`fqName: "([^"]+)"`)
	descs := append([]*prometheus.Desc{}, describedByHand...)
	descs = append(descs, New(snapshot, nil).latency.Desc())
	for _, d := range descs {
		m := name.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		if !strings.Contains(string(doc), "`"+m[1]+"`") && !strings.Contains(string(doc), "`"+m[1]+"{") {
			t.Errorf("docs/metrics.md does not list %s", m[1])
		}
	}
}

// BenchmarkScrape is one whole scrape of the registry (the daemon's
// snapshot is a few atomic loads and a constant-time count on top).
func BenchmarkScrape(b *testing.B) {
	m := New(snapshot, counters)
	for b.Loop() {
		scrape(b, m)
	}
}
