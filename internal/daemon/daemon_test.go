package daemon

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
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
	d := New(Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	d.writer = nft.NewWriter(nft.WriterConfig{Queue: 16})
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

// With response log the trigger is reported and nothing is queued for blocking.
func TestLogOnlyResponseQueuesNoBlock(t *testing.T) {
	d, _ := newTestDaemon(t, "tcp: {response: log}\n")
	d.handle(syn(1))
	done := make(chan struct{})
	go d.alerts.run(done)
	close(done)
	if err := d.writer.Commit(nil); err != nil {
		t.Fatal(err)
	}
	// The writer's queue must be empty: Add 16 more must all fit.
	for i := 0; i < 16; i++ {
		if err := d.writer.Add(nft.Block{}); err != nil {
			t.Fatalf("queue had a block from a log-only response (full after %d)", i)
		}
	}
}

// The alert line for a probe uses PortSentry's words.
func TestProbeAlertWording(t *testing.T) {
	var buf bytes.Buffer
	a := newAlerter(slog.New(slog.NewTextHandler(io.MultiWriter(&buf), nil)))
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
