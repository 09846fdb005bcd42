package ledger

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/nft"
)

// Loaded is what Load did.
type Loaded struct {
	// Restored: the blocks put into the kernel.
	Restored int
	// Read is how long the journal took to read, Took the whole restore
	// (the kernel's insert runs during the read, and ends after it).
	Read, Took time.Duration
	// Err: blocks the kernel did not take (the record holds them all the
	// same; the watchdog's element check puts them back).
	Err error
}

// loadPart is how many blocks go to the kernel at a time while the
// journal is read: one of the writer's transactions.
const loadPart = 10000

// Load reads the journal into the record (state.Store.Load, on a Store
// from state.Prepare) and restores its blocks in force into the kernel
// with their remaining time as they are read, instead of after: at start,
// before Run, with the writer running. The kernel gets only blocks no
// later line of the journal lifts (see state.Unsettled); the rest, and
// those read again with another expiry, are settled from the record once
// it is whole. An error is the journal's: the record is not whole.
func (l *Ledger) Load(ctx context.Context, now time.Time) (Loaded, error) {
	start := time.Now()
	s := newLoadStream(ctx, l.c.Kernel)
	u, err := l.c.Store.Load(now, now.Add(minLeft), func(a netip.Addr, expires time.Time) { s.add(a, expires.Sub(now)) })
	res := Loaded{Read: time.Since(start)}
	if err != nil {
		s.end()
		return res, err
	}
	// Never sent: no element of theirs is in a transaction under way.
	for _, a := range u.Held {
		if b, ok := l.c.Store.Get(a); ok {
			s.add(a, b.Expires.Sub(now))
		}
	}
	res.Restored, res.Err = s.end()
	// Sent before with another expiry: again after the stream, so that
	// the last one the kernel commits is the record's.
	var again []nft.Block
	var gone []netip.Addr
	for _, a := range u.Again {
		if b, ok := l.c.Store.Get(a); ok && restorable(b.Expires.Sub(now)) {
			again = append(again, nft.Block{Addr: a, Timeout: b.Expires.Sub(now).Round(time.Second)})
		} else {
			gone = append(gone, a)
		}
	}
	if len(again) > 0 {
		if err := l.c.Kernel.Commit(ctx, again); err != nil {
			res.Err = errors.Join(res.Err, fmt.Errorf("restore %d blocks read again: %w", len(again), err))
		}
	}
	if len(gone) > 0 {
		if err := l.c.Kernel.Delete(ctx, gone...); err != nil {
			res.Err = errors.Join(res.Err, fmt.Errorf("lift %d blocks the journal ends: %w", len(gone), err))
		}
	}
	// Those read again were counted once already if the first was sent.
	res.Restored += len(again) - u.Told
	l.Stats.Restored.Add(uint64(res.Restored))
	res.Took = time.Since(start)
	return res, nil
}

// minLeft is the least time left to a block that goes into the kernel:
// rounded to the second, as restores give it, at least a second.
const minLeft = 500 * time.Millisecond

func restorable(left time.Duration) bool { return left >= minLeft }

// loadStream sends blocks to the kernel (Kernel.CommitStream) a part at
// a time, reusing a few parts.
type loadStream struct {
	parts chan []nft.Block
	free  chan []nft.Block
	done  chan struct{} // closed when CommitStream returned
	err   error         // CommitStream's, once done
	part  []nft.Block
	n     int
}

// loadParts is how many parts are filled, queued or under way at once.
const loadParts = 4

func newLoadStream(ctx context.Context, k Kernel) *loadStream {
	s := &loadStream{parts: make(chan []nft.Block, loadParts), free: make(chan []nft.Block, loadParts), done: make(chan struct{})}
	for range loadParts - 1 {
		s.free <- make([]nft.Block, 0, loadPart)
	}
	s.part = make([]nft.Block, 0, loadPart)
	go func() {
		s.err = k.CommitStream(ctx, s.parts, func(p []nft.Block) {
			select {
			case s.free <- p[:0]:
			default: // the stream ended early, and made a new part
			}
		})
		close(s.done)
	}()
	return s
}

// add sends a's block with left to run, when it is restorable.
func (s *loadStream) add(a netip.Addr, left time.Duration) {
	if !restorable(left) {
		return
	}
	s.part = append(s.part, nft.Block{Addr: a, Timeout: left.Round(time.Second)})
	if len(s.part) == loadPart {
		s.send()
	}
}

// send hands the part over and takes a free one; once the kernel's
// stream ended (an error), parts are dropped.
func (s *loadStream) send() {
	select {
	case s.parts <- s.part:
		s.n += len(s.part)
	case <-s.done:
		s.part = s.part[:0]
		return
	}
	select {
	case s.part = <-s.free:
	case <-s.done:
		s.part = make([]nft.Block, 0, loadPart)
	}
}

// end sends the last part, waits for the kernel and returns how many
// blocks it was sent.
func (s *loadStream) end() (int, error) {
	if len(s.part) > 0 {
		s.send()
	}
	close(s.parts)
	<-s.done
	if s.err != nil {
		return s.n, fmt.Errorf("restore %d blocks: %w", s.n, s.err)
	}
	return s.n, nil
}
