package nft_test

// Unit tests of the Writer without root or a kernel: every connection it
// dials is a google/nftables Conn on an nltest socket whose "kernel" below
// records each transaction, answers with an errno when told to, and can
// hold a transaction in flight.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"

	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// setElemMsg is one NFT_MSG_NEWSETELEM or NFT_MSG_DELSETELEM message.
type setElemMsg struct {
	del      bool
	set      string
	keys     []string        // netip.Addr strings
	timeouts []time.Duration // per key; 0 when absent
}

// txn is one transaction (one Flush: a batch begin ... end).
type txn struct {
	conn  int // which dialled connection sent it (1-based)
	msgs  []setElemMsg
	errno unix.Errno // the kernel's answer (0: committed)
}

// fakeKernel stands in for the kernel behind every connection a test's
// Writer dials.
type fakeKernel struct {
	t  *testing.T
	mu sync.Mutex
	// answer, when set, returns the errno (0: success) for a transaction
	// on connection conn.
	answer func(conn int, t txn) unix.Errno
	// hold, when set, is called (outside the lock) before a transaction
	// is answered: blocking in it keeps the transaction in flight.
	hold  func(conn int, t txn)
	dials int
	txns  []txn
}

func (k *fakeKernel) dial() (*nftables.Conn, error) {
	k.mu.Lock()
	k.dials++
	conn := k.dials
	k.mu.Unlock()
	return nftables.New(nftables.AsLasting(), nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		if len(req) == 0 {
			return nil, nil // a receive with nothing queued: no more replies
		}
		t := txn{conn: conn}
		for _, m := range req {
			typ := m.Header.Type
			if typ>>8 != unix.NFNL_SUBSYS_NFTABLES {
				continue // batch begin and end
			}
			switch typ & 0xff {
			case unix.NFT_MSG_NEWSETELEM, unix.NFT_MSG_DELSETELEM:
				t.msgs = append(t.msgs, k.decode(m))
			default:
				k.t.Errorf("unexpected nftables message type %#x", typ)
			}
		}
		if k.hold != nil {
			k.hold(conn, t)
		}
		k.mu.Lock()
		if k.answer != nil {
			t.errno = k.answer(conn, t)
		}
		k.txns = append(k.txns, t)
		errno := t.errno
		k.mu.Unlock()
		if errno != 0 {
			// The kernel reports the first failing message; the whole batch is void.
			return nltest.Error(int(errno), req[1:2])
		}
		return nil, nil
	}))
}

// decode reads a set element list message (nf_tables.h: the list's table,
// set and elements, each element's key and timeout).
func (k *fakeKernel) decode(m netlink.Message) setElemMsg {
	out := setElemMsg{del: m.Header.Type&0xff == unix.NFT_MSG_DELSETELEM}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:]) // after struct nfgenmsg
	if err != nil {
		k.t.Error(err) // on the writer's goroutine: no Fatal
		return out
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_SET_ELEM_LIST_SET:
			out.set = ad.String()
		case unix.NFTA_SET_ELEM_LIST_ELEMENTS:
			ad.Nested(func(elems *netlink.AttributeDecoder) error {
				for elems.Next() {
					var key netip.Addr
					var timeout time.Duration
					elems.Nested(func(e *netlink.AttributeDecoder) error {
						e.ByteOrder = binary.BigEndian
						for e.Next() {
							switch e.Type() {
							case unix.NFTA_SET_ELEM_KEY:
								e.Nested(func(d *netlink.AttributeDecoder) error {
									for d.Next() {
										if d.Type() == unix.NFTA_DATA_VALUE {
											key, _ = netip.AddrFromSlice(d.Bytes())
										}
									}
									return nil
								})
							case unix.NFTA_SET_ELEM_TIMEOUT:
								timeout = time.Duration(e.Uint64()) * time.Millisecond
							}
						}
						return nil
					})
					out.keys = append(out.keys, key.String())
					out.timeouts = append(out.timeouts, timeout)
				}
				return nil
			})
		}
	}
	if err := ad.Err(); err != nil {
		k.t.Errorf("decode set element message: %v", err)
	}
	return out
}

func (k *fakeKernel) snapshot() (dials int, txns []txn) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.dials, append([]txn(nil), k.txns...)
}

// committed returns, per key, how often it was added in transactions the
// kernel accepted, and checks the per-message limit.
func (k *fakeKernel) committed(t *testing.T) map[string]int {
	t.Helper()
	_, txns := k.snapshot()
	got := map[string]int{}
	for _, tx := range txns {
		if tx.errno != 0 {
			continue
		}
		for _, m := range tx.msgs {
			if len(m.keys) > 1000 {
				t.Errorf("a %s message with %d elements: more than 1000 in one SetAddElements call", m.set, len(m.keys))
			}
			if m.del {
				continue
			}
			for _, key := range m.keys {
				got[key]++
			}
		}
	}
	return got
}

// startWriter runs w and returns a stop function that drains it.
func startWriter(t *testing.T, w *nft.Writer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(ctx) })
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			wg.Wait()
		}
	}
	t.Cleanup(stop)
	return stop
}

func addr4(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 60, byte(i >> 8), byte(i)}) }
func addr6(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x60, 14: byte(i >> 8), 15: byte(i)})
}

// Blocks added while a transaction is in flight are coalesced: thousands
// of Adds cost a handful of transactions, each element in one message of
// at most 1000 elements, with its own timeout, and every Done is called.
func TestWriterCoalescesUnit(t *testing.T) {
	inFlight, release := make(chan struct{}), make(chan struct{})
	var first sync.Once
	k := &fakeKernel{t: t}
	k.hold = func(int, txn) {
		first.Do(func() { close(inFlight); <-release })
	}
	w := nft.NewWriter(nft.WriterConfig{Dial: k.dial})
	startWriter(t, w)

	const n4, n6 = 4500, 1500
	var done sync.WaitGroup
	var failed atomic.Int64
	add := func(a netip.Addr, timeout time.Duration) {
		done.Add(1)
		if err := w.Add(nft.Block{Addr: a, Timeout: timeout, Done: func(err error) {
			if err != nil {
				failed.Add(1)
			}
			done.Done()
		}}); err != nil {
			t.Fatal(err)
		}
	}
	add(addr4(0), time.Hour) // the transaction held in flight
	<-inFlight
	for i := 1; i < n4; i++ {
		add(addr4(i), time.Hour+time.Duration(i%5)*time.Minute)
	}
	for i := range n6 {
		add(addr6(i), 2*time.Hour)
	}
	close(release)
	done.Wait()

	if failed.Load() != 0 {
		t.Fatalf("%d blocks reported failed", failed.Load())
	}
	dials, txns := k.snapshot()
	// One transaction held the first block; everything added meanwhile
	// fits one MaxBatch (20000) and goes in the next.
	if len(txns) != 2 || dials != 1 {
		t.Errorf("%d transactions on %d connections, want 2 on 1", len(txns), dials)
	}
	msgs := 0
	for _, tx := range txns {
		for _, m := range tx.msgs {
			msgs++
			if m.del {
				t.Errorf("a delete message in an add transaction")
			}
		}
	}
	// 1 (the first block) + ceil(4499/1000) + ceil(1500/1000) = 1 + 5 + 2.
	if msgs != 8 {
		t.Errorf("%d NEWSETELEM messages, want 8", msgs)
	}
	got := k.committed(t)
	if len(got) != n4+n6 {
		t.Errorf("%d distinct elements committed, want %d", len(got), n4+n6)
	}
	for key, c := range got {
		if c != 1 {
			t.Errorf("%s sent %d times", key, c)
		}
	}
	for _, tx := range txns {
		for _, m := range tx.msgs {
			want := map[bool]string{true: nft.SetBlocked, false: nft.SetBlocked6}[netip.MustParseAddr(m.keys[0]).Is4()]
			if m.set != want {
				t.Errorf("elements %s... went to set %q, want %q", m.keys[0], m.set, want)
			}
			for i, key := range m.keys {
				a := netip.MustParseAddr(key)
				want := 2 * time.Hour
				if a.Is4() {
					want = time.Hour + time.Duration(int(a.As4()[2])<<8|int(a.As4()[3]))%5*time.Minute
				}
				if m.timeouts[i] != want {
					t.Errorf("%s: timeout %v, want %v", key, m.timeouts[i], want)
				}
			}
		}
	}
}

// A failed Flush is retried on a new connection, and the block's Done is
// called with nil once the retry commits it.
func TestWriterRetriesUnit(t *testing.T) {
	k := &fakeKernel{t: t}
	k.answer = func(conn int, _ txn) unix.Errno {
		if conn == 1 {
			return unix.EBUSY
		}
		return 0
	}
	var attempts []int
	var mu sync.Mutex
	w := nft.NewWriter(nft.WriterConfig{Dial: k.dial, RetryDelay: time.Millisecond, OnError: func(err error, attempt int) {
		mu.Lock()
		attempts = append(attempts, attempt)
		mu.Unlock()
		if !errors.Is(err, unix.EBUSY) {
			t.Errorf("OnError got %v, want EBUSY", err)
		}
	}})
	startWriter(t, w)
	result := make(chan error, 1)
	if err := w.Add(nft.Block{Addr: addr4(1), Timeout: time.Hour, Done: func(err error) { result <- err }}); err != nil {
		t.Fatal(err)
	}
	if err := waitDone(t, result); err != nil {
		t.Fatalf("Done(%v) after a successful retry, want nil", err)
	}
	dials, txns := k.snapshot()
	if dials != 2 || len(txns) != 2 || txns[0].conn != 1 || txns[1].conn != 2 {
		t.Errorf("%d dials, transactions %+v: want the retry on a second connection", dials, txns)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(attempts) != "[1]" {
		t.Errorf("OnError attempts %v, want [1]", attempts)
	}
}

// After Retries failed retries (Retries+1 attempts, each on a new
// connection), Done gets the error.
func TestWriterGivesUpUnit(t *testing.T) {
	k := &fakeKernel{t: t}
	k.answer = func(int, txn) unix.Errno { return unix.EBUSY }
	var onError atomic.Int64
	w := nft.NewWriter(nft.WriterConfig{Dial: k.dial, Retries: 2, RetryDelay: time.Millisecond,
		OnError: func(error, int) { onError.Add(1) }})
	startWriter(t, w)
	result := make(chan error, 1)
	if err := w.Add(nft.Block{Addr: addr6(1), Timeout: time.Hour, Done: func(err error) { result <- err }}); err != nil {
		t.Fatal(err)
	}
	if err := waitDone(t, result); !errors.Is(err, unix.EBUSY) {
		t.Fatalf("Done(%v), want EBUSY after the retries", err)
	}
	if dials, txns := k.snapshot(); dials != 3 || len(txns) != 3 || onError.Load() != 3 {
		t.Errorf("%d dials, %d transactions, %d OnError calls: want 3 each (1 try + 2 retries)", dials, len(txns), onError.Load())
	}
}

// A connection that cannot be dialled counts as a failed attempt too.
func TestWriterRetriesDialUnit(t *testing.T) {
	k := &fakeKernel{t: t}
	var dialErrs atomic.Int64
	dial := func() (*nftables.Conn, error) {
		if dialErrs.Add(1) == 1 {
			return nil, unix.EMFILE
		}
		return k.dial()
	}
	w := nft.NewWriter(nft.WriterConfig{Dial: dial, RetryDelay: time.Millisecond})
	stop := startWriter(t, w)
	if err := w.Commit(context.Background(), []nft.Block{{Addr: addr4(7), Timeout: time.Minute}}); err != nil {
		t.Fatalf("Commit after a failed dial: %v", err)
	}
	stop()
	if got := k.committed(t); got[addr4(7).String()] != 1 {
		t.Errorf("committed %v", got)
	}
}

// Delete sends each address in a transaction of its own, to its family's
// set; an address the kernel does not have (ENOENT) is no error and does
// not undo the others; another error is retried, then returned.
func TestWriterDeleteUnit(t *testing.T) {
	gone, stuck := addr4(2), addr4(3)
	k := &fakeKernel{t: t}
	k.answer = func(_ int, tx txn) unix.Errno {
		// As the kernel: one missing or refused element fails the whole transaction.
		for _, m := range tx.msgs {
			for _, key := range m.keys {
				switch key {
				case gone.String():
					return unix.ENOENT
				case stuck.String():
					return unix.EBUSY
				}
			}
		}
		return 0
	}
	w := nft.NewWriter(nft.WriterConfig{Dial: k.dial, Retries: 1, RetryDelay: time.Millisecond})
	startWriter(t, w)
	ctx := context.Background()
	// Addresses all present: one transaction, one DELSETELEM per set.
	// ::ffff:10.60.0.1 is the IPv4 address: it goes to blocked.
	if err := w.Delete(ctx, netip.AddrFrom16(addr4(1).As16()), addr6(1), addr4(4)); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, txns := k.snapshot()
	if len(txns) != 1 || len(txns[0].msgs) != 2 {
		t.Fatalf("want one transaction of two DELSETELEM messages, got %+v", txns)
	}
	if got, want := fmt.Sprint(txns[0].msgs[0].set, txns[0].msgs[0].keys, txns[0].msgs[1].set, txns[0].msgs[1].keys),
		fmt.Sprint("blocked", []string{"10.60.0.1", "10.60.0.4"}, "blocked6", []string{addr6(1).String()}); got != want {
		t.Errorf("deleted %s, want %s", got, want)
	}
	// One already gone (ENOENT): the batch is refused whole, then each goes
	// alone, and the missing one is no error.
	if err := w.Delete(ctx, addr4(5), gone); err != nil {
		t.Fatalf("Delete with a missing element: %v", err)
	}
	_, txns = k.snapshot()
	var got []string
	for _, tx := range txns[1:] {
		for _, m := range tx.msgs {
			if !m.del {
				t.Fatalf("not a delete: %+v", tx)
			}
			got = append(got, fmt.Sprint(m.keys))
		}
	}
	if want := fmt.Sprint([]string{"[10.60.0.5 10.60.0.2]", "[10.60.0.5]", "[10.60.0.2]"}); fmt.Sprint(got) != want {
		t.Errorf("transactions %v, want %v (the batch, then one each)", got, want)
	}

	err := w.Delete(ctx, stuck)
	if !errors.Is(err, unix.EBUSY) {
		t.Fatalf("Delete of an element the kernel refuses: %v, want EBUSY", err)
	}
	if _, txns := k.snapshot(); len(txns) != 4+2 {
		t.Errorf("%d transactions, want 6 (the refused delete tried twice)", len(txns))
	}
}

// A large Commit goes in transactions of at most 4000 blocks, pipelined
// over two connections, each element exactly once; a transaction that
// fails is retried on its own and the Commit still succeeds.
func TestWriterCommitLargeUnit(t *testing.T) {
	k := &fakeKernel{t: t}
	k.answer = func(int, txn) unix.Errno {
		// The third transaction fails (answer runs under k.mu).
		if len(k.txns) == 2 {
			return unix.ENOBUFS
		}
		return 0
	}
	w := nft.NewWriter(nft.WriterConfig{Dial: k.dial, RetryDelay: time.Millisecond})
	stop := startWriter(t, w)
	const n4, n6 = 20000, 5000
	blocks := make([]nft.Block, 0, n4+n6)
	for i := range n4 {
		blocks = append(blocks, nft.Block{Addr: addr4(i), Timeout: time.Hour})
	}
	for i := range n6 {
		blocks = append(blocks, nft.Block{Addr: addr6(i), Timeout: time.Hour})
	}
	if err := w.Commit(context.Background(), blocks); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	stop()
	dials, txns := k.snapshot()
	// 25000 blocks in chunks of 10000: 3 transactions, plus the one retried.
	if len(txns) != 4 {
		t.Errorf("%d transactions, want 4 (3 chunks + 1 retry)", len(txns))
	}
	conns := map[int]bool{}
	for _, tx := range txns {
		conns[tx.conn] = true
		n := 0
		for _, m := range tx.msgs {
			n += len(m.keys)
		}
		if n > 10000 {
			t.Errorf("a transaction of %d elements, want at most 10000", n)
		}
	}
	// Two links, plus a new connection for the retry.
	if dials != 3 || len(conns) != 3 {
		t.Errorf("%d dials, %d connections used: want 3 (two pipelined links, one redial after the failure)", dials, len(conns))
	}
	if txns[2].errno != unix.ENOBUFS {
		t.Errorf("the third transaction was answered %v, want ENOBUFS", txns[2].errno)
	}
	got := k.committed(t)
	if len(got) != n4+n6 {
		t.Errorf("%d distinct elements committed, want %d", len(got), n4+n6)
	}
	for key, c := range got {
		if c != 1 {
			t.Errorf("%s committed %d times", key, c)
			break
		}
	}
}

func waitDone(t *testing.T, result <-chan error) error {
	t.Helper()
	select {
	case err := <-result:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Done was not called")
		return nil
	}
}
