package fleet

import (
	"net/netip"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// opKind is what an outbox entry writes.
type opKind uint8

const (
	opBlock    opKind = iota // this host's block: BucketBlocks, TTL until it expires
	opPurge                  // this host's block lifted: a purge marker of its key
	opLift                   // an admin's lift: BucketLifts, TTL max_timeout
	opSighting               // a tripwire probe seen here: BucketSightings, TTL correlate.window
	opHost                   // this host's addresses: BucketHosts, no TTL
)

// op is one write waiting to be published. A later op for the same
// subject replaces an earlier one still waiting (the last word counts).
type op struct {
	kind    opKind
	subject string
	data    []byte
	header  nats.Header
	addr    netip.Addr
	// expires: the record is worth nothing after this (its TTL runs out);
	// the TTL sent is the time left. Zero: no TTL.
	expires time.Time
	// ttl, when set, is sent as it is (purge markers).
	ttl time.Duration
}

// outbox is the bounded queue between Publish (and the other writers),
// which never wait, and the publisher goroutine, which sends in batches
// once connected and puts back what failed.
type outbox struct {
	mu      sync.Mutex
	max     int
	ops     map[string]*op // by subject
	order   []string       // FIFO of subjects; a subject no longer in ops is skipped
	wake    chan struct{}
	dropped uint64 // full
	expired uint64 // dropped unsent, their time ran out
}

func newOutbox(max int) *outbox {
	return &outbox{max: max, ops: map[string]*op{}, wake: make(chan struct{}, 1)}
}

// put queues o; false when the outbox is full (o is dropped and counted).
func (b *outbox) put(o *op) bool {
	b.mu.Lock()
	if _, ok := b.ops[o.subject]; !ok {
		if len(b.ops) >= b.max {
			b.dropped++
			b.mu.Unlock()
			return false
		}
		b.order = append(b.order, o.subject)
	}
	b.ops[o.subject] = o
	b.mu.Unlock()
	b.signal()
	return true
}

func (b *outbox) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// take removes up to n ops, oldest first, dropping those expired by now.
func (b *outbox) take(n int, now time.Time) []*op {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*op
	i := 0
	for ; i < len(b.order) && len(out) < n; i++ {
		o, ok := b.ops[b.order[i]]
		if !ok {
			continue
		}
		delete(b.ops, b.order[i])
		if !o.expires.IsZero() && o.expires.Sub(now) < time.Second {
			b.expired++
			continue
		}
		out = append(out, o)
	}
	b.order = b.order[i:]
	if cap(b.order) > 1024 && len(b.order) < cap(b.order)/4 {
		b.order = append([]string(nil), b.order...)
	}
	return out
}

// putBack returns ops that could not be sent to the front of the queue,
// unless a newer op for the same subject came meanwhile.
func (b *outbox) putBack(ops []*op) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var front []string
	for _, o := range ops {
		if _, newer := b.ops[o.subject]; newer {
			continue
		}
		if len(b.ops) >= b.max {
			b.dropped++
			continue
		}
		b.ops[o.subject] = o
		front = append(front, o.subject)
	}
	b.order = append(front, b.order...)
}

// remove drops a waiting op for subject, if any.
func (b *outbox) remove(subject string) {
	b.mu.Lock()
	delete(b.ops, subject)
	b.mu.Unlock()
}

// depth is how many ops wait.
func (b *outbox) depth() (n int, dropped, expired uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.ops), b.dropped, b.expired
}
