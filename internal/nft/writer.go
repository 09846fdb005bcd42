package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Block asks for one address to be in blocked/blocked6 for Timeout.
type Block struct {
	Addr    netip.Addr
	Timeout time.Duration
	// Prefix64: the element is Addr's /64, in blocked6_64 (IPv6 only).
	Prefix64 bool
	// Done, when set, is called on the writer goroutine once the element is
	// committed (err nil) or could not be (after the retries). It must not block.
	Done func(err error)
}

// WriterConfig tunes a Writer. Zero values take the defaults.
type WriterConfig struct {
	// Dial opens a new connection; it is called again after any failed Flush.
	Dial func() (*nftables.Conn, error)
	// DialLink, when set, is used instead of Dial: a connection and its
	// netlink socket (DialLink in this package), on which the writer
	// sends the transactions of element additions it encodes itself
	// (see elements.go).
	DialLink func() (*nftables.Conn, *netlink.Conn, error)
	// Queue is how many blocks may wait (default 8192: the ledger has at
	// most ledger.MaxInflight on their way). Add fails when full.
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
	reqs chan request
	// links are the writer's connections: the first for everything, the
	// second only while a large Commit is pipelined (see commitMany).
	links [2]link
	sets  [3]*nftables.Set // blocked, blocked6, blocked6_64
}

// link is a lasting connection, dialled when first needed and dropped
// after a failure.
type link struct {
	dial     func() (*nftables.Conn, error)
	dialLink func() (*nftables.Conn, *netlink.Conn, error)
	conn     *nftables.Conn
	raw      *netlink.Conn // conn's socket, with dialLink
	enc      elemBatch
}

func (l *link) get() (*nftables.Conn, error) {
	if l.conn == nil {
		var c *nftables.Conn
		var raw *netlink.Conn
		var err error
		if l.dialLink != nil {
			c, raw, err = l.dialLink()
		} else {
			c, err = l.dial()
		}
		if err != nil {
			return nil, err
		}
		l.conn, l.raw = c, raw
	}
	return l.conn, nil
}

func (l *link) close() {
	if l.conn != nil {
		l.conn.CloseLasting()
		l.conn, l.raw = nil, nil
	}
}

// request is a batch add or a delete that a caller waits for.
type request struct {
	blocks []Block
	// stream: blocks arrive a part at a time (CommitStream).
	stream  <-chan []Block
	release func([]Block)
	del     []netip.Addr
	// prefix: del are /64s (their first address) in blocked6_64.
	prefix bool
	flush  bool
	done   chan error
}

// ErrQueueFull is returned by Add when the writer is too far behind.
var ErrQueueFull = errors.New("nft writer: queue full")

// NewWriter makes a Writer; call Run to start it.
func NewWriter(cfg WriterConfig) *Writer {
	if cfg.Queue <= 0 {
		cfg.Queue = 8192
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
		cfg:   cfg,
		q:     make(chan Block, cfg.Queue),
		reqs:  make(chan request),
		links: [2]link{{dial: cfg.Dial, dialLink: cfg.DialLink}, {dial: cfg.Dial, dialLink: cfg.DialLink}},
		sets: [3]*nftables.Set{
			{Table: t, Name: SetBlocked, KeyType: nftables.TypeIPAddr, HasTimeout: true},
			{Table: t, Name: SetBlocked6, KeyType: nftables.TypeIP6Addr, HasTimeout: true},
			{Table: t, Name: SetBlocked64, KeyType: nftables.TypeIP6Addr, HasTimeout: true},
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
	defer w.links[0].close()
	defer w.links[1].close()
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
		case r := <-w.reqs:
			var err error
			switch {
			case r.flush:
				err = w.flushSets(ctx)
			case len(r.del) > 0:
				err = w.deleteErr(ctx, r.del, r.prefix)
			case r.stream != nil:
				err = w.commitStream(ctx, r.stream, r.release)
			default:
				err = w.commitMany(ctx, r.blocks)
			}
			r.done <- err
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

// Commit adds the blocks (restores, manual blocks) and waits until they
// are committed, in transactions of at most MaxBatch. Run must be running.
func (w *Writer) Commit(ctx context.Context, blocks []Block) error {
	return w.call(ctx, request{blocks: blocks, done: make(chan error, 1)})
}

// CommitStream adds the blocks of every part received from parts, as
// they come, until parts is closed, and waits until they are all
// committed; release (if not nil) is given each part once it is, on
// another goroutine, so that the sender may fill it again. A restore
// sends the blocks while it reads them. Run must be running; nothing else
// is committed until parts is closed.
func (w *Writer) CommitStream(ctx context.Context, parts <-chan []Block, release func([]Block)) error {
	return w.call(ctx, request{stream: parts, release: release, done: make(chan error, 1)})
}

// Delete removes addresses from blocked/blocked6 and waits, in one
// transaction. Deleting a missing element fails a whole transaction, so
// when one address is already gone (expired) each goes in its own, and
// one cannot undo the others. An address that is not in its set is not an
// error.
func (w *Writer) Delete(ctx context.Context, addrs ...netip.Addr) error {
	return w.call(ctx, request{del: addrs, done: make(chan error, 1)})
}

// DeletePrefixes removes IPv6 /64s from blocked6_64 and waits, as Delete
// does addresses.
func (w *Writer) DeletePrefixes(ctx context.Context, prefixes ...netip.Prefix) error {
	firsts := make([]netip.Addr, 0, len(prefixes))
	for _, p := range prefixes {
		if !IsPrefix64(p) {
			return fmt.Errorf("delete prefix %s: blocked6_64 holds IPv6 /64s only", p)
		}
		firsts = append(firsts, p.Addr())
	}
	return w.call(ctx, request{del: firsts, prefix: true, done: make(chan error, 1)})
}

func (w *Writer) call(ctx context.Context, r request) error {
	select {
	case w.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *Writer) deleteErr(ctx context.Context, addrs []netip.Addr, prefix bool) error {
	if len(addrs) > 1 {
		missing, err := w.deleteTx(ctx, addrs, prefix)
		if err != nil || !missing {
			return err
		}
		// One of them is not in its set (it expired): deleting a missing
		// element fails the whole transaction, so one transaction each.
	}
	var errs []error
	for _, a := range addrs {
		if _, err := w.deleteTx(ctx, []netip.Addr{a}, prefix); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deleteTx deletes addrs in one transaction (from blocked6_64 when
// prefix). missing reports that the kernel refused it because an element
// was not in its set (ENOENT): nothing was deleted then.
func (w *Writer) deleteTx(ctx context.Context, addrs []netip.Addr, prefix bool) (missing bool, err error) {
	var keys [3][]nftables.SetElement
	for _, a := range addrs {
		a = a.Unmap()
		i := 0
		switch {
		case prefix:
			i = 2
		case a.Is6():
			i = 1
		}
		keys[i] = append(keys[i], nftables.SetElement{Key: a.AsSlice()})
	}
	l := &w.links[0]
	err = w.withRetry(ctx, l, func(c *nftables.Conn) error {
		for i, ks := range keys {
			if len(ks) == 0 {
				continue
			}
			for j := 0; j < len(ks); j += maxElemsPerCall {
				if err := c.SetDeleteElements(w.sets[i], ks[j:min(j+maxElemsPerCall, len(ks))]); err != nil {
					return err
				}
			}
		}
		if err := c.Flush(); err != nil {
			if errors.Is(err, unix.ENOENT) || strings.Contains(err.Error(), "no such file or directory") {
				l.close() // the failed Flush may leave the connection unusable
				missing = true
				return nil
			}
			return err
		}
		return nil
	})
	if err != nil {
		if len(addrs) == 1 {
			return false, fmt.Errorf("delete element %s: %w", addrs[0].Unmap(), err)
		}
		return false, fmt.Errorf("delete %d elements: %w", len(addrs), err)
	}
	return missing, nil
}

// FlushSets empties blocked and blocked6 (and blocked6_64, where the
// ruleset has it) in one transaction and waits.
func (w *Writer) FlushSets(ctx context.Context) error {
	return w.call(ctx, request{flush: true, done: make(chan error, 1)})
}

func (w *Writer) flushSets(ctx context.Context) error {
	err := w.withRetry(ctx, &w.links[0], func(c *nftables.Conn) error {
		c.FlushSet(w.sets[0])
		c.FlushSet(w.sets[1])
		if s, err := c.GetSetByName(Table(), SetBlocked64); err == nil && s != nil {
			c.FlushSet(w.sets[2])
		}
		return c.Flush()
	})
	if err != nil {
		return fmt.Errorf("flush sets %s and %s: %w", SetBlocked, SetBlocked6, err)
	}
	return nil
}

func (w *Writer) commit(ctx context.Context, batch []Block) {
	err := w.commitErr(ctx, &w.links[0], batch)
	if errors.Is(err, ErrSetFull) && len(batch) > 1 {
		// One element that does not fit fails the whole transaction: each
		// on its own, so that those that fit go in.
		for _, b := range batch {
			w.commit(ctx, []Block{b})
		}
		return
	}
	for _, b := range batch {
		if b.Done != nil {
			b.Done(err)
		}
	}
}

// ErrSetFull is the kernel's refusal of an element beyond a set's size
// (ENFILE): retrying the same transaction cannot help.
var ErrSetFull = errors.New("nft: the set is full")

// setFull wraps a transaction's error as ErrSetFull when the kernel said
// the set is full.
func setFull(err error) error {
	if err != nil && (errors.Is(err, unix.ENFILE) || strings.Contains(err.Error(), "too many open files in system")) {
		return fmt.Errorf("%w: %w", ErrSetFull, err)
	}
	return err
}

func (w *Writer) commitErr(ctx context.Context, l *link, batch []Block) error {
	if len(batch) == 0 {
		return nil
	}
	return w.withRetry(ctx, l, func(c *nftables.Conn) error {
		if l.raw != nil {
			return l.enc.send(l.raw, w, batch)
		}
		return w.flush(c, batch)
	})
}

// pipeChunk is the transaction size of a pipelined Commit: small enough
// that encoding one and the kernel's commit of the previous overlap, large
// enough that a transaction's fixed cost is spread (at 4000 the writer was
// 0.93-1.01x the library alone, at 10000 0.97-1.22x, BenchmarkInsert).
const pipeChunk = 10000

// commitMany commits blocks in transactions on two connections in turn
// (see pipeline).
func (w *Writer) commitMany(ctx context.Context, blocks []Block) error {
	chunk := min(w.cfg.MaxBatch, pipeChunk)
	if len(blocks) <= chunk {
		return w.commitErr(ctx, &w.links[0], blocks)
	}
	p := w.pipeline(ctx)
	for start := 0; start < len(blocks); start += chunk {
		p.commit(blocks[start:min(start+chunk, len(blocks))], nil)
	}
	return p.wait()
}

// commitStream commits each part received from parts in transactions of
// at most pipeChunk, on two connections in turn, and releases it once
// committed.
func (w *Writer) commitStream(ctx context.Context, parts <-chan []Block, release func([]Block)) error {
	chunk := min(w.cfg.MaxBatch, pipeChunk)
	p := w.pipeline(ctx)
	for part := range parts {
		// Released once every transaction of it is done, on either link.
		left := new(atomic.Int32)
		left.Store(int32((len(part) + chunk - 1) / chunk))
		done := func() {
			if left.Add(-1) == 0 && release != nil {
				release(part)
			}
		}
		for start := 0; start < len(part); start += chunk {
			p.commit(part[start:min(start+chunk, len(part))], done)
		}
		if len(part) == 0 && release != nil {
			release(part)
		}
	}
	return p.wait()
}

// pipeline commits transactions on two connections in turn: while the
// kernel commits one transaction (in the sending thread's system call),
// the next is encoded on another thread. On two cores this takes a 100k
// restore from the library's serial rate to well above it. Every
// transaction is retried on its own; the errors are joined.
type pipeline struct {
	w    *Writer
	ctx  context.Context
	i    int
	errs [2][]error
	free [2]chan struct{}
}

func (w *Writer) pipeline(ctx context.Context) *pipeline {
	p := &pipeline{w: w, ctx: ctx, free: [2]chan struct{}{make(chan struct{}, 1), make(chan struct{}, 1)}}
	p.free[0] <- struct{}{}
	p.free[1] <- struct{}{}
	return p
}

// commit commits part on the next connection once its previous
// transaction is done, and then calls done (if not nil).
func (p *pipeline) commit(part []Block, done func()) {
	k := p.i % 2
	p.i++
	<-p.free[k] // the previous transaction on this link is done
	go func() {
		if err := p.w.commitErr(p.ctx, &p.w.links[k], part); err != nil {
			p.errs[k] = append(p.errs[k], err)
		}
		if done != nil {
			done()
		}
		p.free[k] <- struct{}{}
	}()
}

// wait waits for both connections and returns the errors.
func (p *pipeline) wait() error {
	<-p.free[0]
	<-p.free[1]
	return errors.Join(append(p.errs[0], p.errs[1]...)...)
}

// withRetry runs f on l's connection, and again on a new connection after
// a failure.
func (w *Writer) withRetry(ctx context.Context, l *link, f func(c *nftables.Conn) error) error {
	var err error
	delay := w.cfg.RetryDelay
	for attempt := 0; attempt <= w.cfg.Retries; attempt++ {
		var c *nftables.Conn
		if c, err = l.get(); err == nil {
			if err = f(c); err == nil {
				return nil
			}
		}
		// A failed Flush can leave the connection unusable: start afresh.
		l.close()
		if err = setFull(err); errors.Is(err, ErrSetFull) {
			return err
		}
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

func (w *Writer) flush(c *nftables.Conn, batch []Block) error {
	// One backing array for every key of the batch (capacity for all of
	// them, so it never moves): no allocation per element.
	keys := make([]byte, 0, 16*len(batch))
	var v4, v6, v64 []nftables.SetElement
	for _, b := range batch {
		a := b.Addr.Unmap()
		off := len(keys)
		switch {
		case a.Is4():
			k := a.As4()
			keys = append(keys, k[:]...)
			v4 = append(v4, nftables.SetElement{Key: keys[off:len(keys):len(keys)], Timeout: b.Timeout})
		case b.Prefix64:
			k := Prefix64(a).Addr().As16()
			keys = append(keys, k[:]...)
			v64 = append(v64, nftables.SetElement{Key: keys[off:len(keys):len(keys)], Timeout: b.Timeout})
		default:
			k := a.As16()
			keys = append(keys, k[:]...)
			v6 = append(v6, nftables.SetElement{Key: keys[off:len(keys):len(keys)], Timeout: b.Timeout})
		}
	}
	for i, els := range [][]nftables.SetElement{v4, v6, v64} {
		for j := 0; j < len(els); j += maxElemsPerCall {
			if err := c.SetAddElements(w.sets[i], els[j:min(j+maxElemsPerCall, len(els))]); err != nil {
				return fmt.Errorf("add elements to %s: %w", w.sets[i].Name, err)
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("commit %d blocks: %w", len(batch), err)
	}
	return nil
}
