package nft_test

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// A burst far above the library's per-call limits lands completely: every
// element is counted back from the kernel, each with its own timeout.
func TestWriterCommitsEveryElement(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t, "psW")
	install(t, ns, nft.Build(mustParse(t, "block: {set_size: 100000}\n"), nft.Shape{}))
	f := ns.Open()
	w := nft.NewWriter(nft.WriterConfig{Dial: func() (*nftables.Conn, error) { return nft.Dial(f) }, Queue: 32768})
	ctx, cancel := context.WithCancel(context.Background())
	var run sync.WaitGroup
	run.Go(func() { w.Run(ctx) })

	const n4, n6 = 20000, 5000
	var done sync.WaitGroup
	var failed atomic.Int64
	add := func(a netip.Addr, timeout time.Duration) {
		done.Add(1)
		err := w.Add(nft.Block{Addr: a, Timeout: timeout, Done: func(err error) {
			if err != nil {
				failed.Add(1)
			}
			done.Done()
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n4; i++ {
		add(netip.AddrFrom4([4]byte{10, 50, byte(i >> 8), byte(i)}), time.Hour+time.Duration(i%7)*time.Minute)
	}
	for i := 0; i < n6; i++ {
		add(netip.AddrFrom16([16]byte{0xfd, 0, 2, 1, 14: byte(i >> 8), 15: byte(i)}), 2*time.Hour)
	}
	done.Wait()
	cancel()
	run.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d blocks reported failed", failed.Load())
	}
	assertElements(t, f, map[string]int{nft.SetBlocked: n4, nft.SetBlocked6: n6}, 2*time.Hour+time.Minute)
}

// A Commit far larger than one transaction (a restore) is pipelined over
// two connections; every element lands, and a failure reaches the caller.
func TestWriterPipelinedCommit(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t, "psP")
	install(t, ns, nft.Build(mustParse(t, "block: {set_size: 100000}\n"), nft.Shape{}))
	f := ns.Open()
	var dials atomic.Int64
	w := nft.NewWriter(nft.WriterConfig{Dial: func() (*nftables.Conn, error) { dials.Add(1); return nft.Dial(f) }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	const n4, n6 = 30000, 3000
	var blocks []nft.Block
	for i := 0; i < n4; i++ {
		blocks = append(blocks, nft.Block{Addr: netip.AddrFrom4([4]byte{10, 60, byte(i >> 8), byte(i)}), Timeout: time.Hour})
		if i%10 == 0 && i/10 < n6 {
			blocks = append(blocks, nft.Block{Addr: netip.AddrFrom16([16]byte{0xfd, 0, 2, 2, 14: byte(i / 10 >> 8), 15: byte(i / 10)}), Timeout: time.Hour})
		}
	}
	if err := w.Commit(ctx, blocks); err != nil {
		t.Fatal(err)
	}
	// Counted at once, while the kernel may still be resizing the hash.
	if v4, v6, err := nft.CountBlocked(f); err != nil || v4 != n4 || v6 != n6 {
		t.Errorf("CountBlocked = %d, %d, %v; want %d, %d", v4, v6, err, n4, n6)
	}
	if dials.Load() != 2 {
		t.Errorf("%d connections dialled, want 2 (the pipeline)", dials.Load())
	}
	assertElements(t, f, map[string]int{nft.SetBlocked: n4, nft.SetBlocked6: n6}, time.Hour)

	bad := netnstest.New(t, "psZ").Open()
	wb := nft.NewWriter(nft.WriterConfig{Dial: func() (*nftables.Conn, error) { return nft.Dial(bad) }, Retries: 1, RetryDelay: time.Millisecond})
	go wb.Run(ctx)
	if err := wb.Commit(ctx, blocks); err == nil {
		t.Fatal("pipelined commit into a namespace without the table succeeded")
	}
}

// A streamed Commit (a restore while it reads its journal) commits every
// part as it comes, over two connections, and gives each part back only
// once all of it is committed; a failure reaches the caller.
func TestWriterCommitStream(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t, "psQ")
	install(t, ns, nft.Build(mustParse(t, "block: {set_size: 100000}\n"), nft.Shape{}))
	f := ns.Open()
	// The daemon's writer: its own encoding, on the connections' sockets.
	w := nft.NewWriter(nft.WriterConfig{DialLink: func() (*nftables.Conn, *netlink.Conn, error) { return nft.DialLink(f) }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	const parts, size = 5, 12000 // a part is more than one transaction
	in := make(chan []nft.Block)
	var released []int
	var mu sync.Mutex
	errc := make(chan error, 1)
	go func() {
		errc <- w.CommitStream(ctx, in, func(p []nft.Block) {
			v4, _, err := nft.CountBlocked(f)
			mu.Lock()
			defer mu.Unlock()
			if err != nil || v4 < int(p[0].Addr.As4()[1]-60+1)*size {
				t.Errorf("part %d released with %d elements in the set (%v)", p[0].Addr.As4()[1]-60, v4, err)
			}
			released = append(released, int(p[0].Addr.As4()[1]-60))
		})
	}()
	for k := range parts {
		part := make([]nft.Block, size)
		for i := range part {
			part[i] = nft.Block{Addr: netip.AddrFrom4([4]byte{10, byte(60 + k), byte(i >> 8), byte(i)}), Timeout: time.Hour}
		}
		in <- part
		// The parts sent after another's release: as a restore sends them.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			mu.Lock()
			n := len(released)
			mu.Unlock()
			if n >= k || time.Now().After(deadline) {
				break
			}
		}
	}
	close(in)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if len(released) != parts {
		t.Errorf("released %v, want all %d parts", released, parts)
	}
	assertElements(t, f, map[string]int{nft.SetBlocked: parts * size}, time.Hour)

	bad := netnstest.New(t, "psY").Open()
	wb := nft.NewWriter(nft.WriterConfig{DialLink: func() (*nftables.Conn, *netlink.Conn, error) { return nft.DialLink(bad) }, Retries: 1, RetryDelay: time.Millisecond})
	go wb.Run(ctx)
	in = make(chan []nft.Block, 1)
	in <- []nft.Block{{Addr: netip.MustParseAddr("10.201.0.9"), Timeout: time.Hour}}
	close(in)
	if err := wb.CommitStream(ctx, in, nil); err == nil {
		t.Fatal("streamed commit into a namespace without the table succeeded")
	}
}

// assertElements counts each set's elements back from the kernel: want
// distinct keys, each expiring within maxExpiry.
func assertElements(t *testing.T, f *os.File, want map[string]int, maxExpiry time.Duration) {
	t.Helper()
	c, err := nft.DialQuery(f)
	if err != nil {
		t.Fatal(err)
	}
	for set, want := range want {
		s, err := c.GetSetByName(nft.Table(), set)
		if err != nil {
			t.Fatal(err)
		}
		els, err := c.GetSetElements(s)
		if err != nil {
			t.Fatal(err)
		}
		distinct := map[string]bool{}
		for _, e := range els {
			distinct[string(e.Key)] = true
		}
		if len(els) != want || len(distinct) != want {
			t.Errorf("set %s has %d elements (%d distinct), want %d", set, len(els), len(distinct), want)
		}
		for _, e := range els {
			if e.Expires <= 0 || e.Expires > maxExpiry {
				t.Fatalf("set %s element %x expires in %s: its timeout was lost", set, e.Key, e.Expires)
			}
		}
	}
}

// A failed transaction is retried on a new connection: here the first
// connection points at a namespace without the table (ENOENT).
func TestWriterRetriesOnNewConnection(t *testing.T) {
	netnstest.Require(t)
	good := netnstest.New(t, "psG")
	bad := netnstest.New(t, "psX")
	install(t, good, nft.Build(config.Default(), nft.Shape{}))
	gf, bf := good.Open(), bad.Open()
	var dials, errorsSeen atomic.Int64
	w := nft.NewWriter(nft.WriterConfig{
		Dial: func() (*nftables.Conn, error) {
			if dials.Add(1) == 1 {
				return nft.Dial(bf)
			}
			return nft.Dial(gf)
		},
		OnError: func(error, int) { errorsSeen.Add(1) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	if err := w.Commit(ctx, []nft.Block{{Addr: netip.MustParseAddr("10.201.0.77"), Timeout: time.Hour}}); err != nil {
		t.Fatalf("commit after retry: %v", err)
	}
	if errorsSeen.Load() != 1 || dials.Load() != 2 {
		t.Errorf("errors %d dials %d, want 1 failed attempt and 2 dials", errorsSeen.Load(), dials.Load())
	}
	if out := good.MustRun("nft", "list", "set", "inet", "portsentry", "blocked"); !strings.Contains(out, "10.201.0.77 timeout 1h") {
		t.Errorf("element missing after retry:\n%s", out)
	}
}

// When every attempt fails, the error reaches the caller: no silent loss.
func TestWriterReportsPersistentFailure(t *testing.T) {
	netnstest.Require(t)
	bad := netnstest.New(t, "psY")
	bf := bad.Open()
	w := nft.NewWriter(nft.WriterConfig{Dial: func() (*nftables.Conn, error) { return nft.Dial(bf) }, Retries: 2, RetryDelay: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	if err := w.Commit(ctx, []nft.Block{{Addr: netip.MustParseAddr("10.201.0.78"), Timeout: time.Hour}}); err == nil {
		t.Fatal("commit into a namespace without the table succeeded")
	}
}

// Delete removes what exists and treats a missing element as done, even
// when both come in one call.
func TestWriterDelete(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t, "psD")
	install(t, ns, nft.Build(config.Default(), nft.Shape{}))
	ns.MustRun("nft", "add element inet portsentry blocked { 10.201.0.5 timeout 1h, 10.201.0.6 timeout 1h }")
	ns.MustRun("nft", "add element inet portsentry blocked6 { fd00:201::5 timeout 1h }")
	ctx, w := runWriter(t, ns.Open())
	err := w.Delete(ctx, netip.MustParseAddr("10.201.0.99"), netip.MustParseAddr("10.201.0.5"), netip.MustParseAddr("fd00:201::5"))
	if err != nil {
		t.Fatal(err)
	}
	out := ns.MustRun("nft", "list", "set", "inet", "portsentry", "blocked")
	if strings.Contains(out, "10.201.0.5 ") || !strings.Contains(out, "10.201.0.6 ") {
		t.Errorf("after delete:\n%s", out)
	}
	if out6 := ns.MustRun("nft", "list", "set", "inet", "portsentry", "blocked6"); strings.Contains(out6, "fd00:201::5") {
		t.Errorf("IPv6 element not deleted:\n%s", out6)
	}
}

// runWriter starts a writer into the namespace of f; it runs until the
// test ends.
func runWriter(t testing.TB, f *os.File) (context.Context, *nft.Writer) {
	w := nft.NewWriter(nft.WriterConfig{Dial: func() (*nftables.Conn, error) { return nft.Dial(f) }})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go w.Run(ctx)
	return ctx, w
}

// A Prefix64 block puts its address's /64 in blocked6_64, beside the
// other families' elements of the same transaction.
func TestWriterPrefix64(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t, "psP")
	install(t, ns, nft.Build(config.Default(), nft.Shape{}))
	ctx, w := runWriter(t, ns.Open())
	err := w.Commit(ctx, []nft.Block{
		{Addr: netip.MustParseAddr("fd00:201::1234"), Timeout: time.Hour, Prefix64: true},
		{Addr: netip.MustParseAddr("fd00:201::5"), Timeout: time.Hour},
		{Addr: netip.MustParseAddr("10.201.0.5"), Timeout: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	if out := ns.MustRun("nft", "list", "set", "inet", "portsentry", "blocked6_64"); netnstest.ElementLine(out, "fd00:201::") == "" {
		t.Errorf("blocked6_64 lacks fd00:201:::\n%s", out)
	}
	if out := ns.MustRun("nft", "list", "set", "inet", "portsentry", "blocked6"); strings.Contains(out, "fd00:201::1234") || !strings.Contains(out, "fd00:201::5") {
		t.Errorf("blocked6:\n%s", out)
	}
	if got, err := nft.BlockedPrefixes(ns.Open()); err != nil || len(got) != 1 || got[netip.MustParsePrefix("fd00:201::/64")] <= 0 {
		t.Errorf("BlockedPrefixes: %v, %v", got, err)
	}
	// Deleting a /64 leaves the others' elements; deleting it again (it
	// is not there) is no error.
	for range 2 {
		if err := w.DeletePrefixes(ctx, netip.MustParsePrefix("fd00:201::/64")); err != nil {
			t.Fatal(err)
		}
	}
	if out := ns.MustRun("nft", "list", "set", "inet", "portsentry", "blocked6_64"); strings.Contains(out, "elements") {
		t.Errorf("DeletePrefixes left the /64:\n%s", out)
	}
	if out := ns.MustRun("nft", "list", "set", "inet", "portsentry", "blocked6"); !strings.Contains(out, "fd00:201::5") {
		t.Errorf("DeletePrefixes took blocked6's element:\n%s", out)
	}
	if err := w.DeletePrefixes(ctx, netip.MustParsePrefix("fd00:201::/48")); err == nil {
		t.Error("DeletePrefixes took a /48")
	}
	if err := w.Commit(ctx, []nft.Block{{Addr: netip.MustParseAddr("fd00:201::1234"), Timeout: time.Hour, Prefix64: true}}); err != nil {
		t.Fatal(err)
	}
	if err := w.FlushSets(ctx); err != nil {
		t.Fatal(err)
	}
	if out := ns.MustRun("nft", "list", "set", "inet", "portsentry", "blocked6_64"); strings.Contains(out, "elements") {
		t.Errorf("unblock --all left a /64:\n%s", out)
	}
	// A ruleset without blocked6_64: the flush of the others still works.
	install(t, ns, nft.Build(mustParse(t, "detect: {prefix6_sources: 0}\n"), nft.Shape{}))
	if err := w.FlushSets(ctx); err != nil {
		t.Fatalf("flush without blocked6_64: %v", err)
	}
}
