// Package metrics exposes the daemon's status counters and a
// probe-to-block latency histogram as a Prometheus endpoint (off unless
// metrics.listen is set). The counters are read from the same Status the
// control socket serves at scrape time, so there is one set of numbers.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/portsentry-nft/portsentry-nft/internal/control"
)

// Metrics is the registry of one daemon.
type Metrics struct {
	reg     *prometheus.Registry
	latency prometheus.Histogram
}

// New registers a collector that calls status at every scrape.
func New(status func() control.Status) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "portsentry_probe_to_block_seconds",
			Help:    "Time from the triggering probe reaching the daemon to its element being committed.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .5, 1},
		}),
	}
	m.reg.MustRegister(m.latency, collector{status})
	return m
}

// ObserveBlock records one probe-to-block latency.
func (m *Metrics) ObserveBlock(d time.Duration) { m.latency.Observe(d.Seconds()) }

// Serve listens on addr until ctx is done.
func (m *Metrics) Serve(ctx context.Context, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

var (
	descCounter = prometheus.NewDesc("portsentry_events_total", "Daemon counters, by name (as in portsentry-nft status).", []string{"counter"}, nil)
	descProbes  = prometheus.NewDesc("portsentry_probes_total", "Probes seen, by scan type.", []string{"scan_type"}, nil)
	descSet     = prometheus.NewDesc("portsentry_blocked_elements", "Elements in the blocked sets.", []string{"set"}, nil)
	descUp      = prometheus.NewDesc("portsentry_uptime_seconds", "Seconds since the daemon started.", nil, nil)
)

type collector struct{ status func() control.Status }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descCounter
	ch <- descProbes
	ch <- descSet
	ch <- descUp
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.status()
	for k, v := range s.Counters {
		switch k {
		case "sources_tracked", "goroutines", "open_files", "heap_bytes":
			continue // gauges, not counters (the Go collector has the runtime ones)
		}
		ch <- prometheus.MustNewConstMetric(descCounter, prometheus.CounterValue, float64(v), k)
	}
	for k, v := range s.Probes {
		ch <- prometheus.MustNewConstMetric(descProbes, prometheus.CounterValue, float64(v), k)
	}
	for _, set := range []string{"blocked", "blocked6"} {
		ch <- prometheus.MustNewConstMetric(descSet, prometheus.GaugeValue, float64(s.SetSizes[set]), set)
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, time.Since(s.StartedAt).Seconds())
}
