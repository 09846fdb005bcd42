package nft_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// BenchmarkWriter100k commits 100k distinct addresses per iteration.
func BenchmarkWriter100k(b *testing.B) {
	ctx, w, _ := benchWriter(b, 2000000)
	base := 0
	for b.Loop() {
		var bl []nft.Block
		for i := 0; i < 100000; i++ {
			j := base + i
			bl = append(bl, nft.Block{Addr: netip.AddrFrom4([4]byte{10, byte(j >> 16), byte(j >> 8), byte(j)}), Timeout: time.Hour})
		}
		base += 100000
		if err := w.Commit(ctx, bl); err != nil {
			b.Fatal(err)
		}
	}
}

// benchWriter makes a namespace with the ruleset (blocked sized setSize)
// and a running writer into it, until the benchmark ends.
func benchWriter(b *testing.B, setSize int) (context.Context, *nft.Writer, *os.File) {
	ns := netnstest.New(b, "psQ")
	install(b, ns, nft.Build(mustParse(b, fmt.Sprintf("block: {set_size: %d}\n", setSize)), nft.Shape{}))
	f := ns.Open()
	ctx, w := runWriter(b, f)
	return ctx, w, f
}

// BenchmarkReadBack: what status and a metrics scrape cost with 100k
// blocks, counting them (CountBlocked) and reading every element with its
// time left (Blocked).
func BenchmarkReadBack(b *testing.B) {
	ctx, w, f := benchWriter(b, 200000)
	var bl []nft.Block
	for i := 0; i < 100000; i++ {
		bl = append(bl, nft.Block{Addr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Timeout: time.Hour})
	}
	if err := w.Commit(ctx, bl); err != nil {
		b.Fatal(err)
	}
	b.Run("CountBlocked", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if v4, _, err := nft.CountBlocked(f); err != nil || v4 != 100000 {
				b.Fatal(v4, err)
			}
		}
	})
	b.Run("Blocked", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if els, err := nft.Blocked(f); err != nil || len(els) != 100000 {
				b.Fatal(len(els), err)
			}
		}
	})
}
