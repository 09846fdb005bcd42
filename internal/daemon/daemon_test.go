package daemon

import (
	"bytes"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/listeners"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
	"github.com/portsentry-nft/portsentry-nft/internal/respond"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// syn is an IPv4 TCP SYN from 10.201.0.2:40000 to 10.201.0.1:port.
func syn(port byte) []byte {
	return []byte{
		0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 201, 0, 2, 10, 201, 0, 1,
		0x9c, 0x40, 0, port, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 4, 0, 0, 0, 0, 0,
	}
}

func newTestDaemon(t *testing.T, yaml string) (*Daemon, *bytes.Buffer) {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	d := New(Options{Config: cfg, Logger: log})
	d.writer = nft.NewWriter(nft.WriterConfig{Queue: 16})
	st, err := state.Open(state.Paths{Dir: t.TempDir()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	d.store = st
	d.resp = respond.New(cfg, log, d.writer, st, nil)
	d.watcher = &listeners.Watcher{Dump: func() ([]listeners.Socket, error) { return nil, nil }}
	return d, &buf
}

// Garbage and truncated packets are counted and skipped; capture goes on.
func TestMalformedPacketsAreCountedAndSkipped(t *testing.T) {
	d, _ := newTestDaemon(t, "")
	for _, pkt := range [][]byte{nil, {0x45}, {0x60, 0, 0}, bytes.Repeat([]byte{0xff}, 60), syn(1)[:30]} {
		d.handle(pkt)
	}
	if got := d.Counters.Malformed.Load(); got != 5 {
		t.Errorf("malformed = %d, want 5", got)
	}
	d.handle(syn(1))
	if got := d.Counters.Probes[packet.KindSYN].Load(); got != 1 {
		t.Errorf("a valid SYN after garbage was not counted (SYN probes = %d)", got)
	}
}

// The alert line for a probe uses PortSentry's words.
func TestProbeAlertWording(t *testing.T) {
	var buf bytes.Buffer
	a := newAlerter(slog.New(slog.NewTextHandler(io.MultiWriter(&buf), nil)), func(a netip.Addr) string { return a.String() + "/" + a.String() })
	var p packet.Probe
	if err := packet.Decode(syn(79), &p); err != nil {
		t.Fatal(err)
	}
	a.write(event{what: evProbe, probe: p})
	want := "attackalert: TCP SYN scan from host 10.201.0.2/10.201.0.2 to TCP port: 79 from TCP port: 40000"
	if !strings.Contains(buf.String(), want) {
		t.Errorf("got %q, want it to contain %q", buf.String(), want)
	}
}

// Triggers from a protected address are logged and never reach the responder.
func TestProtectedSourceIsNotBlocked(t *testing.T) {
	d, _ := newTestDaemon(t, "never_block: [10.201.0.0/24]\n")
	if err := d.guard.Refresh(); err != nil {
		t.Log(err)
	}
	d.handle(syn(1))
	if d.Counters.Protected.Load() != 1 {
		t.Fatalf("protected = %d, want 1", d.Counters.Protected.Load())
	}
	if n := len(d.alerts.ch); n != 2 {
		t.Errorf("%d alert events, want the probe and the protected-host line", n)
	}
}

// Past block.max_per_second, triggers are logged and not blocked.
func TestRateCap(t *testing.T) {
	d, _ := newTestDaemon(t, "block: {max_per_second: 3}\n")
	for i := 0; i < 10; i++ {
		pkt := syn(1)
		pkt[15] = byte(10 + i) // distinct sources
		d.handle(pkt)
	}
	if got := d.Counters.RateLimited.Load(); got != 7 {
		t.Errorf("rate limited %d of 10, want 7 (burst of 3)", got)
	}
}

// A spoofed flood, every packet a new source past the rate cap, writes a
// second's worth of lines and counts the rest as suppressed (not two lines
// per packet).
func TestSpoofedFloodLinesAreCapped(t *testing.T) {
	d, _ := newTestDaemon(t, "block: {max_per_second: 3}\ndetect: {max_sources: 100000}\n")
	const n = 5000
	for i := 0; i < n; i++ {
		pkt := syn(1)
		pkt[13], pkt[14], pkt[15] = 7, byte(i>>8), byte(i)
		d.handle(pkt)
	}
	lines, suppressed := len(d.alerts.ch), int(d.alerts.suppressed.Load())
	if max := probeLinesPerSecond + 3 + 10; lines > max {
		t.Errorf("%d alert lines queued for %d spoofed probes, want at most %d", lines, n, max)
	}
	if lines+suppressed != 2*n-3 {
		t.Errorf("lines %d + suppressed %d = %d, want %d (each refused trigger: probe and reason, each block: probe)", lines, suppressed, lines+suppressed, 2*n-3)
	}
}

// BenchmarkProcessSpoofedFlood: the capture path for a flood where every
// packet comes from a new source and the rate cap refuses blocks.
func BenchmarkProcessSpoofedFlood(b *testing.B) {
	cfg, _ := config.Parse("b.yaml", []byte("detect: {max_sources: 1000000}\n"))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := New(Options{Config: cfg, Logger: log})
	d.writer = nft.NewWriter(nft.WriterConfig{Queue: 16})
	st, _ := state.Open(state.Paths{Dir: b.TempDir()}, time.Now())
	defer st.Close()
	d.store = st
	d.resp = respond.New(cfg, log, d.writer, st, nil)
	d.watcher = &listeners.Watcher{Dump: func() ([]listeners.Socket, error) { return nil, nil }}
	pkt := syn(1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		pkt[13], pkt[14], pkt[15] = byte(i>>16), byte(i>>8), byte(i)
		d.handle(pkt)
		for len(d.alerts.ch) > 0 {
			d.alerts.write(<-d.alerts.ch) // the alert lines cost too
		}
	}
}
