package fleet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
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
	// pingInterval: how often the connection is checked (see connect).
	pingInterval = 2 * time.Second
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

// publisher sends the outbox while connected, in batches, and puts back
// what failed, retrying with backoff: after a failure nothing is sent
// before the backoff ends, however many writes wake it meanwhile (a flood
// queues one a packet), unless the connection or the buckets just became
// usable (kick).
func (c *Client) publisher(ctx context.Context) {
	bo := newBackoff(200*time.Millisecond, retryMax)
	var timer <-chan time.Time
	var notBefore time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.out.wake:
		case <-timer:
			timer = nil
		}
		if c.out.kicked() {
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
			js, _, ok := c.conn()
			if !ok {
				break // a reconnect or the buckets made ready wake us
			}
			ops, wait := c.out.take(batchSize, c.now())
			if wait > 0 && timer == nil {
				timer = time.After(wait) // sightings the rate holds back
			}
			if len(ops) == 0 {
				break
			}
			if failed := c.send(ctx, js, ops); len(failed) > 0 {
				c.out.putBack(failed)
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
func (c *Client) send(ctx context.Context, js jetstream.JetStream, ops []*op) (failed []*op) {
	type inflight struct {
		o *op
		f jetstream.PubAckFuture
	}
	now := c.now()
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
	var sightings []netip.Addr
	for i, x := range fl {
		select {
		case <-x.f.Ok():
			c.st.published.Add(1)
			if x.o.kind == opSighting {
				sightings = append(sightings, x.o.addr)
			}
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
		c.st.publishErrors.Add(uint64(len(failed)))
		c.log.Warn("fleet: publishing failed; retrying", "failed", len(failed), "of", len(ops), "err", firstErr)
	}
	for _, a := range sightings {
		select {
		case c.counts <- a:
		default: // the correlator is behind: a flood; this count is skipped
		}
	}
	return failed
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

// Sighting reports a tripwire probe from addr seen here, that did not (or
// not yet) make a block. When fleet.correlate.hosts distinct hosts saw
// addr within fleet.correlate.window, this host publishes a block with
// Origin "correlate" naming them, and every host (this one included)
// enforces it. It never waits; a host publishes at most one sighting of an
// address per quarter window.
func (c *Client) Sighting(addr netip.Addr) {
	if c.cfg.Correlate.Hosts == 0 {
		return
	}
	a := addr.Unmap()
	if !c.blockable(a, "") {
		return
	}
	now := c.now()
	c.mu.Lock()
	blocked := c.view.delivered[a].After(now)
	recent := now.Sub(c.lastSeen[a]) < c.window/4
	if !blocked && !recent {
		if len(c.lastSeen) >= 100000 {
			clear(c.lastSeen)
		}
		c.lastSeen[a] = now
	}
	c.mu.Unlock()
	if blocked || recent {
		return
	}
	c.out.put(&op{kind: opSighting, subject: Subject(BucketSightings, SightingKey(a, c.name)), addr: a,
		data: marshal(sightingRecord{At: now.UTC()}), expires: now.Add(c.window)})
}

// correlator counts, one address at a time, the hosts that saw each
// address whose sighting went out: off the publisher, whose next block must
// not wait for a count's round trip.
func (c *Client) correlator(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-c.counts:
			c.correlate(ctx, a)
		}
	}
}

// correlate counts the hosts that saw a (one request: the subjects of a's
// sightings) and blocks it fleet-wide when there are enough.
func (c *Client) correlate(ctx context.Context, a netip.Addr) {
	c.mu.Lock()
	blocked := c.view.delivered[a].After(c.now())
	c.mu.Unlock()
	if blocked {
		return
	}
	hosts, err := c.sightingHosts(ctx, a)
	if err != nil {
		c.log.Warn("fleet: counting sightings", "addr", a, "err", err)
		return
	}
	if len(hosts) < c.cfg.Correlate.Hosts {
		return
	}
	now := c.now()
	b := Block{Addr: a, Host: c.name, Expires: now.Add(c.corrTimeout), Origin: OriginCorrelate, Seen: hosts,
		Corroborated: true, Evidence: EvidenceForgeable,
		Reason: fmt.Sprintf("tripwire probes seen by %d hosts within %s: %s", len(hosts), c.window, strings.Join(hosts, ", "))}
	c.st.correlated.Add(1)
	c.log.Info("fleet: correlated block", "addr", a, "hosts", strings.Join(hosts, ","), "timeout", c.corrTimeout)
	c.Publish(b)
	select {
	case c.self <- b:
	default:
	}
}

// sightingHosts counts the hosts that saw a, sorted: one stream info
// request, whose subject filter lists the keys $KV.portsentry_sightings.<a>.*,
// each written under its own host's identity.
func (c *Client) sightingHosts(ctx context.Context, a netip.Addr) ([]string, error) {
	c.mu.Lock()
	s := c.sightings
	c.mu.Unlock()
	if s == nil {
		return nil, errors.New("the sightings bucket is not bound yet")
	}
	ictx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	info, err := s.Info(ictx, jetstream.WithSubjectFilter(Subject(BucketSightings, EncodeAddr(a)+".*")))
	if err != nil {
		return nil, fmt.Errorf("counting the sightings of %s: %w", a, err)
	}
	var hosts []string
	pre := Subject(BucketSightings, "")
	for subj := range info.State.Subjects {
		if b, h, err := ParseSightingKey(strings.TrimPrefix(subj, pre)); err == nil && b == a {
			hosts = append(hosts, h)
		}
	}
	slices.Sort(hosts)
	return hosts, nil
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
