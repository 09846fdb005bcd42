package state

import (
	"net/netip"
	"os"
	"path/filepath"
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
