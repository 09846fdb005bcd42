// Package capture receives the packets that the ruleset's log rules send to
// an NFLOG group, over netlink (its protocol read in place: nflog.go), and
// hands each one's bytes, and the rule that sent it (by its log prefix), to
// a callback on the receiving goroutine.
//
// It exists to keep the netlink details in one place: low-latency group
// settings (the kernel otherwise batches 100 messages or 1 s), a forced
// receive buffer so floods do not overrun it, a whole batch per receive
// with nothing allocated per message, loss accounting from sequence
// numbers and ENOBUFS, and reopening the socket after a fatal error
// instead of crashing.
package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Config tunes the NFLOG reader. Zero values take the defaults.
type Config struct {
	Group uint16
	// QueueThreshold is how many packets the kernel may hold before sending
	// (default 1: each probe at once).
	QueueThreshold uint32
	// FlushTimeout, in 1/100 s, sends a partial batch (default 1 = 10 ms).
	FlushTimeout uint32
	// Snaplen is how many bytes of each packet are copied (default
	// DefaultSnaplen).
	Snaplen uint32
	// ReadBuffer is forced on the socket (default 8 MiB).
	ReadBuffer int
	// NetNS, when set, is the network namespace to listen in.
	NetNS *os.File
	// Logger receives the reader's own problems (default slog.Default()).
	Logger *slog.Logger
}

// Stats are the reader's counters; safe to read while it runs.
type Stats struct {
	Packets  atomic.Uint64 // packets handed to the callback
	Lost     atomic.Uint64 // packets the kernel dropped, from gaps in sequence numbers
	Overruns atomic.Uint64 // ENOBUFS: the socket buffer overflowed at least once
	Reopens  atomic.Uint64 // times the socket was reopened after an error
	// Malformed: log messages (or trailing bytes of a batch) that could
	// not be read, skipped.
	Malformed atomic.Uint64
}

// DefaultSnaplen is how many bytes of each packet both readers copy by
// default: the headers, behind up to 964 bytes of IPv6 extension headers.
// A probe whose transport header lies deeper is still acted on (its source
// is in the IP header, its rule in the log prefix). The copy stays cheap in
// a flood: the kernel copies no more than the packet, and with a queue
// threshold of 1 each message takes a buffer of a page or more anyway; only
// large packets, which cost their sender as much, copy more.
const DefaultSnaplen = 1024

func (c *Config) defaults() {
	if c.QueueThreshold == 0 {
		c.QueueThreshold = 1
	}
	if c.FlushTimeout == 0 {
		c.FlushTimeout = 1
	}
	if c.Snaplen == 0 {
		c.Snaplen = DefaultSnaplen
	}
	if c.ReadBuffer == 0 {
		c.ReadBuffer = 8 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Reader receives packets from one NFLOG group.
type Reader struct {
	cfg Config
	c   *netlink.Conn
}

// Open binds the NFLOG group. Errors here (EPERM when another process
// holds the group, no nfnetlink_log) are reported to the caller.
func Open(cfg Config) (*Reader, error) {
	cfg.defaults()
	nc := &netlink.Config{}
	if cfg.NetNS != nil {
		nc.NetNS = int(cfg.NetNS.Fd())
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nc)
	if err != nil {
		return nil, fmt.Errorf("open NFLOG group %d: %w", cfg.Group, err)
	}
	if err := forceReadBuffer(c, cfg.ReadBuffer); err != nil {
		c.Close()
		return nil, fmt.Errorf("NFLOG group %d: %w", cfg.Group, err)
	}
	if err := bind(c, cfg); err != nil {
		c.Close()
		return nil, err
	}
	return &Reader{cfg: cfg, c: c}, nil
}

// forceReadBuffer sets SO_RCVBUFFORCE: SetReadBuffer is capped by
// net.core.rmem_max, far below what a flood needs.
func forceReadBuffer(c *netlink.Conn, size int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("force receive buffer of %d bytes: %w", size, serr)
	}
	return nil
}

// errFatal is how many errors in a row, other than ENOBUFS, make the
// reader give up on a socket and open a new one.
const errFatal = 50

// Run calls fn with each packet (its IP header onwards) and the rule that
// logged it until ctx is done.
// fn runs on the receive goroutine and must not block or keep the slice.
// After a fatal socket error Run reopens the group with backoff; it
// returns only when ctx is done (nil) or the group cannot be reopened.
func (r *Reader) Run(ctx context.Context, fn func(pkt []byte, rule Rule), st *Stats) error {
	backoff := 100 * time.Millisecond
	for {
		err := r.runOnce(ctx, fn, st)
		r.c.Close()
		if ctx.Err() != nil {
			return nil
		}
		r.cfg.Logger.Error(fmt.Sprintf("adminalert: NFLOG receive failed, reopening group %d: %v", r.cfg.Group, err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
		nr, oerr := Open(r.cfg)
		if oerr != nil {
			return oerr
		}
		r.c = nr.c
		st.Reopens.Add(1)
	}
}

// runOnce receives batches until ctx is done or the socket fails: each
// batch in one receive, into one buffer, its messages read in place.
func (r *Reader) runOnce(ctx context.Context, fn func(pkt []byte, rule Rule), st *Stats) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rc, err := r.c.SyscallConn()
	if err != nil {
		return err
	}
	// A receive waiting for the next batch ends when ctx does.
	defer context.AfterFunc(ctx, func() { r.c.SetReadDeadline(time.Unix(1, 0)) })()
	errs := &receiveErrors{ctx: ctx, cancel: cancel, st: st}
	handle := r.handler(fn, st, errs)
	buf := make([]byte, recvSize)
	var m logged
	for {
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN
		}); err != nil {
			if ctx.Err() != nil {
				return errs.fatal
			}
			return fmt.Errorf("receive NFLOG group %d: %w", r.cfg.Group, err)
		}
		if rerr != nil {
			if errs.handle(fmt.Errorf("recvfrom: %w", rerr)) != 0 {
				return errs.fatal
			}
			continue
		}
		if bad := eachLogged(buf[:n], &m, handle); bad > 0 {
			st.Malformed.Add(uint64(bad))
		}
	}
}

// handler accounts for each message (sequence gaps are messages the
// kernel dropped) and hands its packet to fn.
func (r *Reader) handler(fn func(pkt []byte, rule Rule), st *Stats, errs *receiveErrors) func(m *logged) {
	var (
		lastSeq uint32
		haveSeq bool
	)
	return func(m *logged) {
		if m.hasSeq {
			if haveSeq && m.seq != lastSeq+1 {
				st.Lost.Add(uint64(m.seq - lastSeq - 1))
			}
			lastSeq, haveSeq = m.seq, true
		}
		errs.run = 0
		if m.payload == nil {
			return
		}
		st.Packets.Add(1)
		fn(m.payload, prefixes[string(m.prefix)])
	}
}

// receiveErrors is the error callback both readers share: ENOBUFS (the
// kernel dropped messages; Lost or the verdict path shows how many) is
// counted and receiving goes on; errFatal other errors in a row end the
// socket, and Run reopens it.
type receiveErrors struct {
	ctx    context.Context
	cancel context.CancelFunc
	st     *Stats
	run    int   // errors in a row; the receive goroutine resets it
	fatal  error // set before cancel, read after ctx is done
}

func (e *receiveErrors) handle(err error) int {
	if e.ctx.Err() != nil {
		return 1
	}
	if errors.Is(err, unix.ENOBUFS) {
		e.st.Overruns.Add(1)
		return 0
	}
	e.run++
	if e.run >= errFatal {
		e.fatal = err
		e.cancel()
		return 1
	}
	return 0
}

// Close releases the group (use it when Run was never called): the
// kernel unbinds a group when its socket closes.
func (r *Reader) Close() error { return r.c.Close() }
