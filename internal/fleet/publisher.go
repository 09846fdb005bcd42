package fleet

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// batchSize is how many writes are in flight at once: published
	// asynchronously, their acknowledgements awaited together.
	batchSize = 4096
	// ackTimeout bounds the wait for one write's acknowledgement.
	ackTimeout = 4 * time.Second
	// flusherTimeout: a write to the server stalled this long ends the
	// connection (see connect).
	flusherTimeout = 5 * time.Second
	// retryMax caps the delay between tries (publishing, watching): after
	// a partition heals, a host catches up within it. Jitter spreads the
	// hosts of a large fleet.
	retryMax = 2 * time.Second
	// purgeMarkerTTL is how long a purged block's marker stays, so that
	// watchers that were briefly away still see the purge.
	purgeMarkerTTL = time.Minute
)

func purgeHeader() nats.Header {
	return nats.Header{"KV-Operation": []string{"PURGE"}, jetstream.MsgRollup: []string{jetstream.MsgRollupSubject}}
}

// publisher is the Client's sending part: the outbox, which the Client's
// writers (Publish, Unblock, Sighting, SetOwnAddresses) fill without
// waiting, and the goroutine (run) that sends it while connected, in
// batches, and retries what failed with backoff.
type publisher struct {
	out *outbox
	// conn is the JetStream context and whether it can be used now
	// (Client.conn: connected, the buckets bound).
	conn              func() (jetstream.JetStream, bool)
	now               func() time.Time
	log               *slog.Logger
	published, failed atomic.Uint64
	// wrote: this host's blocks, purges and lifts the servers stored, by
	// their sequence, for the watches' own check (ownWrites); full: one is
	// skipped, a later one stands for it.
	wrote chan wrote
}

// wrote is a record of this host stored at seq, in the bucket of the
// watches' stall place (0 lifts, 1 blocks).
type wrote struct {
	stall int
	seq   uint64
}

func newPublisher(size int, conn func() (jetstream.JetStream, bool), now func() time.Time, log *slog.Logger) *publisher {
	return &publisher{out: newOutbox(size), conn: conn, now: now, log: log, wrote: make(chan wrote, 64)}
}

// run sends the outbox while connected, in batches, and puts back what
// failed, retrying with backoff: after a failure nothing is sent before
// the backoff ends, however many writes wake it meanwhile (a flood queues
// one a packet), unless the connection or the buckets just became usable
// (kick).
func (p *publisher) run(ctx context.Context) {
	bo := newBackoff(200*time.Millisecond, retryMax)
	var timer <-chan time.Time
	var notBefore time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.out.wake:
		case <-timer:
			timer = nil
		}
		if p.out.kicked() {
			notBefore = time.Time{}
			bo.reset()
		}
		if d := time.Until(notBefore); d > 0 {
			if timer == nil {
				timer = time.After(d)
			}
			continue
		}
		for ctx.Err() == nil {
			js, ok := p.conn()
			if !ok {
				break // a reconnect or the buckets made ready wake us
			}
			ops, wait := p.out.take(batchSize, p.now())
			if wait > 0 && timer == nil {
				timer = time.After(wait) // sightings the rate holds back
			}
			if len(ops) == 0 {
				break
			}
			if failed := p.send(ctx, js, ops); len(failed) > 0 {
				p.out.putBack(failed)
				d := bo.next()
				notBefore, timer = time.Now().Add(d), time.After(d)
				break
			}
			bo.reset()
		}
	}
}

// send publishes ops asynchronously and waits for their acknowledgements
// together; it returns those that failed.
func (p *publisher) send(ctx context.Context, js jetstream.JetStream, ops []*op) (failed []*op) {
	type inflight struct {
		o *op
		f jetstream.PubAckFuture
	}
	now := p.now()
	var fl []inflight
	var firstErr error
	for _, o := range ops {
		m, opts := o.msg(now)
		f, err := js.PublishMsgAsync(m, opts...)
		if err != nil {
			firstErr = err
			failed = append(failed, o)
			continue
		}
		fl = append(fl, inflight{o, f})
	}
	for i, x := range fl {
		select {
		case ack := <-x.f.Ok():
			p.published.Add(1)
			p.stored(x.o.kind, ack)
		case err := <-x.f.Err():
			if firstErr == nil {
				firstErr = err
			}
			failed = append(failed, x.o)
		case <-ctx.Done():
			for _, y := range fl[i:] {
				failed = append(failed, y.o)
			}
			return failed
		}
	}
	if len(failed) > 0 {
		p.failed.Add(uint64(len(failed)))
		p.log.Warn("fleet: publishing failed; retrying", "failed", len(failed), "of", len(ops), "err", firstErr)
	}
	return failed
}

// stored passes on the sequence of a stored block, purge or lift.
func (p *publisher) stored(k opKind, ack *jetstream.PubAck) {
	if ack == nil || k == opSighting || k == opHost {
		return
	}
	w := wrote{stall: 1, seq: ack.Sequence}
	if k == opLift {
		w.stall = 0
	}
	select {
	case p.wrote <- w:
	default:
	}
}

// msg is o's message and its TTL, the time o has left at now.
func (o *op) msg(now time.Time) (*nats.Msg, []jetstream.PublishOpt) {
	m := &nats.Msg{Subject: o.subject, Data: o.data, Header: nats.Header{}}
	for k, v := range o.header {
		m.Header[k] = slices.Clone(v)
	}
	switch {
	case o.ttl > 0:
		return m, []jetstream.PublishOpt{jetstream.WithMsgTTL(o.ttl)}
	case !o.expires.IsZero():
		// Whole seconds, rounded up: the servers take no less than 1s.
		ttl := (o.expires.Sub(now) + time.Second - 1).Truncate(time.Second)
		return m, []jetstream.PublishOpt{jetstream.WithMsgTTL(max(ttl, time.Second))}
	}
	return m, nil
}

// backoff is an exponential delay with jitter.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(lo, hi time.Duration) *backoff { return &backoff{min: lo, max: hi} }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}

func (b *backoff) reset() { b.cur = 0 }
