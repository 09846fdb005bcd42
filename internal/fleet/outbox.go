package fleet

import (
	"math/rand/v2"
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
//
// Sightings have a lane of their own: a spoofed flood of tripwire probes
// makes one per source, and must neither crowd out nor delay a block. They
// are taken only after every other write, at most sightingRate a second
// (each costs the cluster a write and a count), and when their lane is
// full a new one replaces a random waiting one: the lane keeps a sample of
// the whole flood, so a real scanner's sighting in it is as likely to go
// out as any, not lost behind the flood's first seconds.
type outbox struct {
	mu    sync.Mutex
	max   int            // writes other than sightings
	smax  int            // sightings
	ops   map[string]*op // by subject
	order []string       // FIFO of subjects (not sightings); a subject no longer in ops is skipped
	// sightings: their subjects, in no particular order; n: how many of
	// ops are sightings.
	sorder  []string
	nsight  int
	tokens  float64 // sightings that may be taken now
	refill  time.Time
	wake    chan struct{}
	urgent  bool   // kick: send now, whatever the backoff
	dropped uint64 // full
	expired uint64 // dropped unsent, their time ran out
}

// sightingRate is how many sightings a host sends a second at most, with
// as many at once.
const sightingRate = 200

func newOutbox(size int) *outbox {
	return &outbox{max: size, smax: max(size/8, 1), ops: map[string]*op{}, wake: make(chan struct{}, 1), tokens: sightingRate}
}

// put queues o; false when the outbox is full (o is dropped and counted).
// A sighting finding its lane full takes the place of a random waiting one
// (which is counted as dropped).
func (b *outbox) put(o *op) bool {
	b.mu.Lock()
	if _, ok := b.ops[o.subject]; !ok {
		switch {
		case o.kind == opSighting && b.nsight >= b.smax:
			i := rand.IntN(len(b.sorder))
			if old, ok := b.ops[b.sorder[i]]; ok && old.kind == opSighting {
				delete(b.ops, b.sorder[i])
				b.nsight--
				b.dropped++
			}
			b.sorder[i] = o.subject
			b.nsight++
		case o.kind == opSighting:
			b.sorder = append(b.sorder, o.subject)
			b.nsight++
		case len(b.ops)-b.nsight >= b.max:
			b.dropped++
			b.mu.Unlock()
			return false
		default:
			b.order = append(b.order, o.subject)
		}
	}
	b.ops[o.subject] = o
	// A sighting joining others wakes nobody: the publisher already waits
	// for the rate to let the first ones go (take's wait), and a flood must
	// not wake it once a packet, nor cut short its backoff after a failure.
	wake := o.kind != opSighting || b.nsight == 1
	b.mu.Unlock()
	if wake {
		b.signal()
	}
	return true
}

// kick wakes the publisher to send at once, its backoff forgotten (the
// connection or the buckets just became usable).
func (b *outbox) kick() {
	b.mu.Lock()
	b.urgent = true
	b.mu.Unlock()
	b.signal()
}

// kicked reports (once) a kick since the last call.
func (b *outbox) kicked() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	u := b.urgent
	b.urgent = false
	return u
}

func (b *outbox) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// take removes up to n ops, oldest first, dropping those expired by now;
// sightings only after all the others, as many as the rate allows. wait:
// sightings are left that the rate holds back; take again after it.
func (b *outbox) take(n int, now time.Time) (out []*op, wait time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := 0
	for ; i < len(b.order) && len(out) < n; i++ {
		if o := b.takeLocked(b.order[i], now); o != nil {
			out = append(out, o)
		}
	}
	b.order = compact(b.order[i:])
	if len(out) == n || b.nsight == 0 {
		return out, 0
	}
	if b.refill.IsZero() {
		b.refill = now
	}
	b.tokens = min(b.tokens+now.Sub(b.refill).Seconds()*sightingRate, sightingRate)
	b.refill = now
	i = 0
	for ; i < len(b.sorder) && len(out) < n && b.tokens >= 1; i++ {
		if o := b.takeLocked(b.sorder[i], now); o != nil {
			out = append(out, o)
			b.tokens--
		}
	}
	b.sorder = compact(b.sorder[i:])
	if b.nsight > 0 && len(out) < n {
		wait = max(time.Duration((1-b.tokens)/sightingRate*float64(time.Second)), time.Millisecond)
	}
	return out, wait
}

// takeLocked removes subject's op and returns it, nil if gone or expired.
func (b *outbox) takeLocked(subject string, now time.Time) *op {
	o, ok := b.ops[subject]
	if !ok {
		return nil
	}
	b.forgetLocked(subject, o)
	if !o.expires.IsZero() && o.expires.Sub(now) < time.Second {
		b.expired++
		return nil
	}
	return o
}

func (b *outbox) forgetLocked(subject string, o *op) {
	delete(b.ops, subject)
	if o.kind == opSighting {
		b.nsight--
	}
}

// compact lets go of a queue's consumed front once it is most of it.
func compact(q []string) []string {
	if cap(q) > 1024 && len(q) < cap(q)/4 {
		return append([]string(nil), q...)
	}
	return q
}

// putBack returns ops that could not be sent to the front of the queue,
// unless a newer op for the same subject came meanwhile.
func (b *outbox) putBack(ops []*op) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var front, sfront []string
	for _, o := range ops {
		if _, newer := b.ops[o.subject]; newer {
			continue
		}
		if o.kind == opSighting {
			if b.nsight >= b.smax {
				b.dropped++
				continue
			}
			b.nsight++
			sfront = append(sfront, o.subject)
		} else {
			if len(b.ops)-b.nsight >= b.max {
				b.dropped++
				continue
			}
			front = append(front, o.subject)
		}
		b.ops[o.subject] = o
	}
	b.order = append(front, b.order...)
	b.sorder = append(sfront, b.sorder...)
}

// remove drops a waiting op for subject, if any.
func (b *outbox) remove(subject string) {
	b.mu.Lock()
	if o, ok := b.ops[subject]; ok {
		b.forgetLocked(subject, o)
	}
	b.mu.Unlock()
}

// depth is how many ops wait.
func (b *outbox) depth() (n int, dropped, expired uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.ops), b.dropped, b.expired
}
