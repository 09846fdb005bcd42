package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

// The Grafana dashboard the test checks, relative to this package.
const dashboardFile = "../../deploy/grafana/portsentry-nft.json"

// A real Prometheus, in the daemon's namespace, scrapes it every second.
// After an nmap scan from B the block shows in Prometheus, every query of
// the Grafana dashboard evaluates without error, on metric names
// Prometheus knows, to a non-empty result, and promtool finds nothing to
// lint in a raw scrape.
func TestPrometheus(t *testing.T) {
	netnstest.Require(t, "nmap", "prometheus", "promtool")
	p := netnstest.NewPair(t)
	startDaemon(t, p.A, "metrics: {listen: \"127.0.0.1:9187\"}\n")
	prom := startPrometheus(t, p.A, "127.0.0.1:9187", "127.0.0.1:9090")

	// promtool's lint on one raw scrape (text format: the client sends no
	// Accept header).
	scrape := prom.get(t, "http://127.0.0.1:9187/metrics")
	if !bytes.Contains(scrape, []byte("\nportsentry_probes_total{")) {
		t.Fatalf("a scrape of the daemon has no portsentry_probes_total:\n%s", scrape)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lint := exec.CommandContext(ctx, "promtool", "check", "metrics")
	lint.Stdin = bytes.NewReader(scrape)
	out, err := lint.CombinedOutput()
	t.Logf("promtool check metrics: %v, output: %q", err, out)
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics on a scrape of the daemon: %v\n%s", err, out)
	}

	nmap(t, p.B, "-sS", "-p", "1,11,79", netnstest.AddrA)
	waitBlocked(t, p.A, "blocked", netnstest.AddrB, 5*time.Second)

	// The block, as Prometheus has scraped it.
	prom.waitAtLeast(t, 20*time.Second, map[string]float64{
		`portsentry_blocks_total{origin="kernel"}`:          1,
		`portsentry_blocked_addresses{family="ipv4"}`:       1,
		`portsentry_probes_total{scan_type="TCP SYN scan"}`: 1,
		`portsentry_probe_to_block_seconds_count`:           1,
	})

	// Every query of the dashboard.
	queries := dashboardQueries(t, dashboardFile)
	if len(queries) == 0 {
		t.Fatalf("%s: no queries found", dashboardFile)
	}
	known, unknown := prom.metricNames(t), false
	for _, q := range queries {
		for _, name := range metricNames(q.expr) {
			if !slices.Contains(known, name) {
				t.Errorf("%s: metric %s is unknown to Prometheus (query %s)", q.where, name, q.expr)
				unknown = true
			}
		}
	}
	if unknown {
		t.FailNow()
	}
	// Rates need two samples of a series in their window: empty results
	// are retried for a while; API errors fail at once.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var empty []string
		for _, q := range queries {
			n, err := prom.query(q.expr)
			if err != nil {
				t.Fatalf("%s: query %s: %v", q.where, q.expr, err)
			}
			if n == 0 {
				empty = append(empty, fmt.Sprintf("%s: %s", q.where, q.expr))
			}
		}
		if len(empty) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queries of the dashboard still empty after a scan and a block:\n%s", strings.Join(empty, "\n"))
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("%d dashboard queries evaluated", len(queries))
}

// The metric names found in PromQL expressions.
func TestPrometheusMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (scan_type) (rate(portsentry_probes_total{instance=~".*"}[1m]))`:                     {"portsentry_probes_total"},
		`histogram_quantile(0.99, sum by (le) (rate(portsentry_probe_to_block_seconds_bucket[5m])))`: {"portsentry_probe_to_block_seconds_bucket"},
		`sum(portsentry_tracked_sources)`:                                                            {"portsentry_tracked_sources"},
		`up`:                                                                                         {"up"},
		`a / on (instance) group_left (job) b offset 5m > bool 1e3`:                                  {"a", "b"},
		`sum without (le) (x{job="a{b}[c] d"}) or vector(0) unless ignoring(x) y`:                    {"x", "y"},
		`{__name__="z"}`:                                                                             nil,
		`count by (instance) (portsentry_start_time_seconds)`:                                        {"portsentry_start_time_seconds"},
		`rate(portsentry_nflog_lost_total[$__rate_interval]) + rate(portsentry_nflog_overruns_total[1m:1s])`: {"portsentry_nflog_lost_total", "portsentry_nflog_overruns_total"},
	} {
		if got := metricNames(expr); !slices.Equal(got, want) {
			t.Errorf("metricNames(%s) = %q, want %q", expr, got, want)
		}
	}
}

// prometheus is a Prometheus server run in a test's namespace.
type prometheus struct {
	base   string
	client *http.Client
}

// startPrometheus runs /usr/bin/prometheus in ns, scraping target every
// second, with its config and storage in temp dirs and its web API on
// listen (inside ns); it is stopped at cleanup.
func startPrometheus(t *testing.T, ns *netnstest.NS, target, listen string) *prometheus {
	t.Helper()
	dir := t.TempDir()
	config := filepath.Join(dir, "prometheus.yml")
	yaml := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: portsentry-nft
    static_configs:
      - targets: [%q]
`, target)
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	out := &netnstest.Output{}
	cmd := ns.Command(context.Background(), "prometheus",
		"--config.file="+config,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("prometheus did not stop within 10s of SIGTERM; output:\n%s", out)
		}
	})
	prom := &prometheus{base: "http://" + listen, client: ns.HTTPClient()}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := prom.client.Get(prom.base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return prom
			}
		}
		select {
		case err := <-done:
			t.Fatalf("prometheus exited (%v); output:\n%s", err, out)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready within 20s; output:\n%s", out)
		}
	}
}

// get fetches u through the namespace's client.
func (p *prometheus) get(t *testing.T, u string) []byte {
	t.Helper()
	resp, err := p.client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", u, resp.Status, b)
	}
	return b
}

// api GETs an HTTP API path and decodes its data; any status but success,
// and any warning, is an error.
func (p *prometheus) api(path string, data any) error {
	resp, err := p.client.Get(p.base + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var r struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Warnings  []string        `json:"warnings"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %s: %q", path, resp.Status, b)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s: %s: %s", resp.Status, r.ErrorType, r.Error)
	}
	if len(r.Warnings) > 0 {
		return fmt.Errorf("warnings: %q", r.Warnings)
	}
	return json.Unmarshal(r.Data, data)
}

// query evaluates an instant query and returns its number of series
// (1 for a scalar).
func (p *prometheus) query(q string) (int, error) {
	var d struct {
		ResultType string            `json:"resultType"`
		Result     []json.RawMessage `json:"result"`
	}
	if err := p.api("/api/v1/query?query="+url.QueryEscape(q), &d); err != nil {
		return 0, err
	}
	if d.ResultType == "scalar" || d.ResultType == "string" {
		return 1, nil
	}
	return len(d.Result), nil
}

// value evaluates an instant query that must give one sample.
func (p *prometheus) value(q string) (float64, error) {
	var d struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Value [2]any `json:"value"`
		} `json:"result"`
	}
	if err := p.api("/api/v1/query?query="+url.QueryEscape(q), &d); err != nil {
		return 0, err
	}
	if d.ResultType != "vector" || len(d.Result) != 1 {
		return 0, fmt.Errorf("%d samples of type %s, want one", len(d.Result), d.ResultType)
	}
	s, _ := d.Result[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}

// waitAtLeast waits until every query's value is at least its minimum.
func (p *prometheus) waitAtLeast(t *testing.T, within time.Duration, want map[string]float64) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var short []string
		for q, m := range want {
			v, err := p.value(q)
			if err != nil || v < m {
				short = append(short, fmt.Sprintf("%s = %v (%v), want >= %v", q, v, err, m))
			}
		}
		if len(short) == 0 {
			return
		}
		if time.Now().After(deadline) {
			sort.Strings(short)
			t.Fatalf("not in Prometheus within %s:\n%s", within, strings.Join(short, "\n"))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// metricNames lists the metric names Prometheus has.
func (p *prometheus) metricNames(t *testing.T) []string {
	t.Helper()
	var names []string
	if err := p.api("/api/v1/label/__name__/values", &names); err != nil {
		t.Fatal(err)
	}
	return names
}

// dashQuery is one query of the dashboard, its variables substituted.
type dashQuery struct{ where, expr string }

// dashboardQueries reads every panel's targets[].expr (rows' panels too)
// and the templating variables' label_values() queries, with Grafana's
// interval variables set to 1m and the dashboard's own variables to their
// "All" value. A variable left over is an error.
func dashboardQueries(t *testing.T, file string) []dashQuery {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		ID      int    `json:"id"`
		Title   string `json:"title"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var dash struct {
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Name     string `json:"name"`
				Type     string `json:"type"`
				AllValue string `json:"allValue"`
				Query    any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	vars := map[string]string{"__rate_interval": "1m", "__interval": "1m", "__range": "1m"}
	var qs []dashQuery
	labelValues := regexp.MustCompile(`^\s*label_values\(\s*(.+)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		vars[v.Name] = v.AllValue
		if vars[v.Name] == "" {
			vars[v.Name] = ".*"
		}
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			t.Fatalf("%s: variable %s: query %q is not label_values(metric, label)", file, v.Name, q)
		}
		qs = append(qs, dashQuery{"variable " + v.Name, fmt.Sprintf("count by (%s) (%s)", m[2], m[1])})
	}
	var walk func(raw []json.RawMessage)
	walk = func(raw []json.RawMessage) {
		for _, r := range raw {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatalf("%s: panel: %v", file, err)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("%s: panel %d %q target %s has no expr", file, p.ID, p.Title, tg.RefID)
					continue
				}
				qs = append(qs, dashQuery{fmt.Sprintf("panel %d %q target %s", p.ID, p.Title, tg.RefID), tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	names := make([]string, 0, len(vars))
	for n := range vars {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return len(names[i]) > len(names[j]) })
	for i := range qs {
		for _, n := range names {
			qs[i].expr = strings.NewReplacer("${"+n+"}", vars[n], "[["+n+"]]", vars[n], "$"+n, vars[n]).Replace(qs[i].expr)
		}
		if strings.Contains(qs[i].expr, "$") {
			t.Errorf("%s: unknown variable in %s", qs[i].where, qs[i].expr)
		}
	}
	return qs
}

var (
	promStrings  = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
		"offset", "atan2", "inf", "nan", "start", "end"}
)

// metricNames returns the metric names a PromQL expression selects, in
// order of first use: identifiers that are not functions (followed by
// "("), keywords, label names (inside {} and grouping clauses) or parts
// of numbers and durations.
func metricNames(expr string) []string {
	e := promStrings.ReplaceAllString(expr, `""`)
	e = promMatchers.ReplaceAllString(e, "{}")
	e = promRanges.ReplaceAllString(e, "[]")
	e = promGrouping.ReplaceAllString(e, " ")
	var names []string
	for _, m := range promIdent.FindAllStringIndex(e, -1) {
		if m[0] > 0 && strings.ContainsAny(e[m[0]-1:m[0]], "0123456789.") {
			continue // 1e3, 0.5
		}
		name, rest := e[m[0]:m[1]], strings.TrimLeft(e[m[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || slices.Contains(promKeywords, strings.ToLower(name)) || slices.Contains(names, name) {
			continue
		}
		names = append(names, name)
	}
	return names
}
