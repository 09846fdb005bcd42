package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"
)

// Block asks for one address to be in blocked/blocked6 for Timeout.
type Block struct {
	Addr    netip.Addr
	Timeout time.Duration
	// Done, when set, is called on the writer goroutine once the element is
	// committed (err nil) or could not be (after the retries). It must not block.
	Done func(err error)
}

// WriterConfig tunes a Writer. Zero values take the defaults.
type WriterConfig struct {
	// Dial opens a new connection; it is called again after any failed Flush.
	Dial func() (*nftables.Conn, error)
	// Queue is how many blocks may wait (default 65536). Add fails when full.
	Queue int
	// MaxBatch is the most blocks committed in one transaction (default 20000).
	MaxBatch int
	// Retries after a failed transaction, on a new connection (default 3),
	// with RetryDelay doubling from 10ms.
	Retries    int
	RetryDelay time.Duration
	// OnError is told about every failed attempt (for logging).
	OnError func(err error, attempt int)
}

// Writer commits blocks to the kernel from one goroutine. Blocks that
// arrive while a transaction is in flight are coalesced into the next one,
// so a burst of thousands costs a handful of netlink round trips, and the
// capture path never waits for the kernel.
type Writer struct {
	cfg  WriterConfig
	q    chan Block
	conn *nftables.Conn
	sets [2]*nftables.Set
}

// ErrQueueFull is returned by Add when the writer is too far behind.
var ErrQueueFull = errors.New("nft writer: queue full")

// NewWriter makes a Writer; call Run to start it.
func NewWriter(cfg WriterConfig) *Writer {
	if cfg.Queue <= 0 {
		cfg.Queue = 65536
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 20000
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 3
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 10 * time.Millisecond
	}
	t := Table()
	return &Writer{
		cfg: cfg,
		q:   make(chan Block, cfg.Queue),
		sets: [2]*nftables.Set{
			{Table: t, Name: SetBlocked, KeyType: nftables.TypeIPAddr, HasTimeout: true},
			{Table: t, Name: SetBlocked6, KeyType: nftables.TypeIP6Addr, HasTimeout: true},
		},
	}
}

// Add queues a block without waiting.
func (w *Writer) Add(b Block) error {
	select {
	case w.q <- b:
		return nil
	default:
		return ErrQueueFull
	}
}

// Run commits queued blocks until ctx is done, then commits what is
// still queued and returns.
func (w *Writer) Run(ctx context.Context) {
	defer w.closeConn()
	batch := make([]Block, 0, 256)
	for {
		select {
		case <-ctx.Done():
			batch = batch[:0]
			for {
				select {
				case b := <-w.q:
					batch = append(batch, b)
					if len(batch) < w.cfg.MaxBatch {
						continue
					}
				default:
				}
				if len(batch) == 0 {
					return
				}
				w.commit(context.Background(), batch)
				batch = batch[:0]
			}
		case b := <-w.q:
			batch = append(batch[:0], b)
		drain:
			for len(batch) < w.cfg.MaxBatch {
				select {
				case b := <-w.q:
					batch = append(batch, b)
				default:
					break drain
				}
			}
			w.commit(ctx, batch)
			batch = batch[:0]
		}
	}
}

// Commit adds the blocks in one transaction now, on the caller's goroutine
// (for restores at start, before Run). It retries like Run does.
func (w *Writer) Commit(blocks []Block) error {
	return w.commitErr(context.Background(), blocks)
}

func (w *Writer) commit(ctx context.Context, batch []Block) {
	err := w.commitErr(ctx, batch)
	for _, b := range batch {
		if b.Done != nil {
			b.Done(err)
		}
	}
}

func (w *Writer) commitErr(ctx context.Context, batch []Block) error {
	if len(batch) == 0 {
		return nil
	}
	var err error
	delay := w.cfg.RetryDelay
	for attempt := 0; attempt <= w.cfg.Retries; attempt++ {
		if err = w.flush(batch); err == nil {
			return nil
		}
		// A failed Flush can leave the connection unusable: start afresh.
		w.closeConn()
		if w.cfg.OnError != nil {
			w.cfg.OnError(err, attempt+1)
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
		}
		delay *= 2
	}
	return err
}

func (w *Writer) flush(batch []Block) error {
	if w.conn == nil {
		c, err := w.cfg.Dial()
		if err != nil {
			return err
		}
		w.conn = c
	}
	var v4, v6 []nftables.SetElement
	for _, b := range batch {
		a := b.Addr.Unmap()
		el := nftables.SetElement{Key: a.AsSlice(), Timeout: b.Timeout}
		if a.Is4() {
			v4 = append(v4, el)
		} else {
			v6 = append(v6, el)
		}
	}
	for i, els := range [][]nftables.SetElement{v4, v6} {
		for j := 0; j < len(els); j += maxElemsPerCall {
			if err := w.conn.SetAddElements(w.sets[i], els[j:min(j+maxElemsPerCall, len(els))]); err != nil {
				return fmt.Errorf("add elements to %s: %w", w.sets[i].Name, err)
			}
		}
	}
	if err := w.conn.Flush(); err != nil {
		return fmt.Errorf("commit %d blocks: %w", len(batch), err)
	}
	return nil
}

func (w *Writer) closeConn() {
	if w.conn != nil {
		w.conn.CloseLasting()
		w.conn = nil
	}
}
