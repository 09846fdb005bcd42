// Package metrics is the daemon's Prometheus endpoint (off unless
// metrics.listen is set): one metric per quantity, units in the name,
// labels only where they split one quantity (probes by protocol and scan
// type, blocks by origin, refusals by reason, blocked addresses by
// family).
//
// A scrape reads the daemon's own records (counters and the ledger's
// per-family count), never a netlink dump of the kernel's sets: with 100k
// blocks a dump costs a second or more, a scrape here microseconds.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Snapshot is what a scrape reports, read from the daemon at scrape time.
type Snapshot struct {
	Start time.Time
	// Probes by protocol ("tcp", "udp") and scan type ("TCP SYN scan", ...).
	Probes []Probes
	// Tools: probes by the tool that sent them (internal/scanner's
	// names, a fixed few).
	Tools map[string]uint64
	// Blocks committed, by origin (detect, manual, ...).
	Blocks map[string]uint64
	// Refused triggers, by reason (protected, rate_limited, set_full,
	// queue_full, peer).
	Refused map[string]uint64
	// Gauges.
	Blocked4, Blocked6 int
	Tracked            int64
	// JournalDurable: every change to the journal is on disk or goes with
	// the next fsync (false while it awaits a rewrite, a full disk say).
	JournalDurable bool
	// Fleet, nil without a fleet.
	Fleet *Fleet
}

// Fleet is the fleet client's state (internal/fleet Stats).
type Fleet struct {
	Connected                                         bool
	Outbox                                            int
	OutboxDropped, OutboxExpired, Published           uint64
	Mirrored, Lifted, Refused, Correlated, Reconnects uint64
	Blocks                                            int
	MirrorLag                                         time.Duration // the last record
	Live                                              int           // buckets followed live
	LiveGaps                                          uint64
}

// Probes is the count of one protocol and scan type.
type Probes struct {
	Proto, ScanType string
	N               uint64
}

// Counter is one counter of one quantity, portsentry_<Name>, read at
// every scrape (the daemon's table of counters).
type Counter struct {
	Name, Help string
	Value      func() uint64
}

// Metrics is the registry of one daemon.
type Metrics struct {
	reg     *prometheus.Registry
	latency prometheus.Histogram
}

// New registers a collector that calls read and each counter at every
// scrape, and the Go runtime's and the process's own collectors.
func New(read func() Snapshot, counters []Counter) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "portsentry_probe_to_block_seconds",
			Help:    "Time from the triggering probe reaching the daemon to its element being committed.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .5, 1},
		}),
	}
	c := collector{read: read, counters: counters}
	for _, k := range counters {
		c.descs = append(c.descs, desc(k.Name, k.Help))
	}
	m.reg.MustRegister(m.latency, c,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveBlock records one probe-to-block latency.
func (m *Metrics) ObserveBlock(d time.Duration) { m.latency.Observe(d.Seconds()) }

// Handler serves the registry.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Serve listens on addr until ctx is done.
func (m *Metrics) Serve(ctx context.Context, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("portsentry_"+name, help, labels, nil)
}

// The metrics, one per quantity.
var (
	dProbes         = desc("probes_total", "Probes of monitored ports seen, by protocol and scan type.", "proto", "scan_type")
	dTools          = desc("probes_by_tool_total", "Probes of monitored ports seen, by the tool that sent them (nmap-syn, masscan, ..., unknown).", "tool")
	dBlocks         = desc("blocks_total", "Blocks committed to the kernel's sets, by origin (detect, manual, ...).", "origin")
	dRefused        = desc("refused_triggers_total", "Sources that reached the trigger and were not blocked, by reason.", "reason")
	dJournalOK      = desc("journal_durable", "1 while the journal of blocks holds every block in force; 0 while it awaits a rewrite (blocks since then would not survive a restart).")
	dBlocked        = desc("blocked_addresses", "Addresses blocked now, by family.", "family")
	dTracked        = desc("tracked_sources", "Sources the detector holds.")
	dStart          = desc("start_time_seconds", "When the daemon started, in Unix seconds.")
	dFleetUp        = desc("fleet_connected", "1 while connected to the fleet's NATS servers.")
	dFleetOutbox    = desc("fleet_outbox", "Writes to the fleet waiting in the outbox.")
	dFleetDropped   = desc("fleet_outbox_dropped_total", "Writes to the fleet dropped: the outbox was full.")
	dFleetExpired   = desc("fleet_outbox_expired_total", "Writes to the fleet dropped unsent: their block expired while the servers were away.")
	dFleetPub       = desc("fleet_published_total", "Writes the fleet's servers acknowledged.")
	dFleetMirrored  = desc("fleet_mirrored_total", "Other hosts' blocks received from the fleet.")
	dFleetLifted    = desc("fleet_lifts_total", "Lifts received from the fleet: the administrator's, or a host's of its own block.")
	dFleetRefused   = desc("fleet_refused_total", "Fleet blocks refused here (protected, a fleet host's address, not global).")
	dFleetCorr      = desc("fleet_correlated_total", "Correlated blocks this host published.")
	dFleetReconn    = desc("fleet_reconnects_total", "Connections to the fleet regained after a loss.")
	dFleetBlocks    = desc("fleet_blocks", "Other hosts' blocks in force.")
	dFleetLag       = desc("fleet_mirror_lag_seconds", "The last fleet record: its creation on the servers to its delivery here.")
	dFleetLive      = desc("fleet_live_buckets", "Fleet buckets followed through the records the servers republish, not a consumer of this host's.")
	dFleetGaps      = desc("fleet_live_gaps_total", "Republished fleet records missed (a skipped sequence): each time the host caught up through a consumer.")
	describedByHand = []*prometheus.Desc{dProbes, dTools, dBlocks, dRefused, dBlocked, dTracked, dStart, dJournalOK,
		dFleetUp, dFleetOutbox, dFleetDropped, dFleetExpired, dFleetPub, dFleetMirrored, dFleetLifted, dFleetRefused, dFleetCorr, dFleetReconn, dFleetBlocks, dFleetLag, dFleetLive, dFleetGaps}
)

type collector struct {
	read     func() Snapshot
	counters []Counter
	descs    []*prometheus.Desc // of counters
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range slices.Concat(c.descs, describedByHand) {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.read()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, p := range s.Probes {
		counter(dProbes, p.N, p.Proto, p.ScanType)
	}
	for t, n := range s.Tools {
		counter(dTools, n, t)
	}
	for o, n := range s.Blocks {
		counter(dBlocks, n, o)
	}
	for r, n := range s.Refused {
		counter(dRefused, n, r)
	}
	for i, k := range c.counters {
		counter(c.descs[i], k.Value())
	}
	gauge(dJournalOK, oneIf(s.JournalDurable))
	gauge(dBlocked, float64(s.Blocked4), "ipv4")
	gauge(dBlocked, float64(s.Blocked6), "ipv6")
	gauge(dTracked, float64(s.Tracked))
	gauge(dStart, float64(s.Start.UnixNano())/1e9)
	if f := s.Fleet; f != nil {
		gauge(dFleetUp, oneIf(f.Connected))
		gauge(dFleetOutbox, float64(f.Outbox))
		gauge(dFleetBlocks, float64(f.Blocks))
		gauge(dFleetLag, f.MirrorLag.Seconds())
		gauge(dFleetLive, float64(f.Live))
		for d, v := range map[*prometheus.Desc]uint64{dFleetDropped: f.OutboxDropped, dFleetExpired: f.OutboxExpired, dFleetPub: f.Published,
			dFleetMirrored: f.Mirrored, dFleetLifted: f.Lifted, dFleetRefused: f.Refused, dFleetCorr: f.Correlated, dFleetReconn: f.Reconnects, dFleetGaps: f.LiveGaps} {
			counter(d, v)
		}
	}
}

func oneIf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
