package state

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// BenchmarkOpen100k: a restart with 100k live blocks in the journal.
func BenchmarkOpen100k(b *testing.B) {
	p := Paths{Dir: b.TempDir()}
	var sb strings.Builder
	for i := 0; i < 100000; i++ {
		sb.WriteString(encodeEntry(entry{Op: "add", Block: &Block{Addr: netip.AddrFrom4([4]byte{10, byte(120 + i>>16), byte(i >> 8), byte(i)}),
			Expires: now.Add(2 * time.Hour), Timeout: 2 * time.Hour, Times: 1, Kind: "TCP SYN scan", Proto: "TCP", Port: 1, Ports: []uint16{1, 11}}}))
	}
	os.WriteFile(filepath.Join(p.Dir, journalName), []byte(sb.String()), 0o600)
	for b.Loop() {
		s, err := Open(p, now)
		if err != nil || s.Len() != 100000 {
			b.Fatal(err, s.Len())
		}
		s.Close()
	}
}

// BenchmarkAddSync: one block recorded and made durable (the journal only,
// no PortSentry files). The file system is TMPDIR's.
func BenchmarkAddSync(b *testing.B) { benchAddSync(b, 1) }

// BenchmarkAddSync64: 64 blocks, then one Sync (an op is the 64).
func BenchmarkAddSync64(b *testing.B) { benchAddSync(b, 64) }

func benchAddSync(b *testing.B, n int) {
	s, err := Open(Paths{Dir: b.TempDir()}, now)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	blk := Block{Timeout: time.Hour, Expires: now.Add(time.Hour), Times: 1, Kind: "TCP SYN scan", Proto: "TCP", Port: 79, Ports: []uint16{79, 80}}
	i := 0
	for b.Loop() {
		for range n {
			// 65536 addresses, re-blocked in turn: the journal grows and
			// is compacted now and then, as in a long flood.
			blk.Addr = netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)})
			i++
			if err := s.Add(blk); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}

// millionJournal writes n live blocks with every field of today's record
// (evidence, origin, the fleet host a tenth mirror, the tool) and returns
// the directory.
func millionJournal(b *testing.B, n int) Paths {
	p := Paths{Dir: b.TempDir()}
	f, err := os.Create(filepath.Join(p.Dir, journalName))
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := range n {
		blk := &Block{Addr: netip.AddrFrom4([4]byte{10, byte(120 + i>>16), byte(i >> 8), byte(i)}),
			Expires: now.Add(2 * time.Hour), Timeout: 2 * time.Hour, Times: 1, Kind: "TCP SYN scan", Proto: "TCP", Port: 22,
			Ports: []uint16{22, 80, 443}, First: now.Add(-time.Minute), Last: now.Add(-59 * time.Second),
			Origin: OriginDetect, Evidence: "corroborated", Tool: "nmap-syn"}
		if i%10 == 9 {
			blk.Origin, blk.From, blk.Evidence = OriginFleet, fmt.Sprintf("host-%d", i%100), "handshake"
		}
		w.WriteString(encodeEntry(entry{Op: "add", Block: blk}))
	}
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkOpen1M: a restart with 1M live blocks in the journal, every
// field set; reports the heap the Store keeps per block (B/block, after a
// collection, against the heap before Open).
func BenchmarkOpen1M(b *testing.B) {
	const n = 1000000
	p := millionJournal(b, n)
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s, err := Open(p, now)
		if err != nil || s.Len() != n {
			b.Fatal(err, s.Len())
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/block")
		s.Close()
		runtime.KeepAlive(s)
	}
}
