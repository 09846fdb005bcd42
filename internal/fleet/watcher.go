package fleet

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// apiTimeout bounds one JetStream API request.
const apiTimeout = 5 * time.Second

var (
	errReconnected = errors.New("reconnected")
	errClosed      = errors.New("watcher closed")
	errStalled     = errors.New("watcher stalled: the bucket has records it did not deliver")
)

// resumeJitter bounds the random wait before the watches are made anew
// after a reconnect: the hosts that lost one server reconnect together,
// and their consumers are spread over it.
const resumeJitter = 2 * time.Second

// watchLoop keeps a watcher running: after a reconnect, or a watch that
// closed or stalled, it makes a new generation (with backoff, and jitter
// after a reconnect), which resumes each bucket after the last revision
// handled: a host that was away gets what it missed, not the buckets
// again. The first generation, and one after the buckets were made anew,
// replays the buckets' current values; the revisions already applied are
// skipped.
func (c *Client) watchLoop(ctx context.Context) {
	bo := newBackoff(500*time.Millisecond, retryMax)
	for ctx.Err() == nil {
		if !c.waitConnected(ctx) {
			return
		}
		// A reconnect signalled before now is the one we are starting on;
		// one signalled late for it (the library calls its handlers on a
		// goroutine of its own) is told apart by the count of reconnects.
		select {
		case <-c.reconnected:
		default:
		}
		c.startedAt.Store(c.reconnects())
		if err := c.ensureBuckets(ctx); err != nil && !c.watchWithoutHub(ctx, err) {
			c.log.Warn("fleet: buckets", "err", err)
			sleep(ctx, bo.next())
			continue
		}
		if c.hostRecordMissing() {
			c.putHost()
		}
		start := time.Now()
		err := c.watch(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			c.mu.Lock()
			c.bucketsOK = false // deleted by an administrator: make them again, replay them
			c.kvs = nil
			c.view.resume = false
			clear(c.view.last)
			c.mu.Unlock()
		}
		if time.Since(start) > time.Minute {
			bo.reset()
		}
		if errors.Is(err, errReconnected) || errors.Is(err, errGap) {
			// Not a failure: the link is back, resume soon (after a
			// partition this is what the host is waiting for); or a
			// live record was missed, which a consumer fetches (hosts
			// that missed it together spread their consumers).
			bo.reset()
			sleep(ctx, rand.N(resumeJitter))
			continue
		}
		c.log.Warn("fleet: watching the fleet", "err", err)
		sleep(ctx, bo.next())
	}
}

// hostRecordMissing reports whether this host's record must be written
// on a new connection: before the first generation, or when the hosts
// bucket as watched does not hold it as it is. A fleet of 1000 hosts that
// wrote it on every reconnect sent every host a record per reconnected
// host after a server's restart.
func (c *Client) hostRecordMissing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	as, ok := c.view.hosts[c.name]
	return !c.view.resume || !ok || !slices.Equal(as, c.ownAddrs)
}

// waitConnected waits until the connection is up; false when ctx is done.
func (c *Client) waitConnected(ctx context.Context) bool {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		if _, nc, _ := c.conn(); nc != nil && nc.IsConnected() {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-c.reconnected:
		case <-t.C:
		}
	}
}

// bucketWatch is how one watched bucket's records are applied.
type bucketWatch struct {
	bucket string
	// stall is the bucket's place among those the stall check compares
	// (lifts, blocks); -1: none.
	stall int
	// apply applies one record (del: deleted or purged; initial: a
	// current value, read while replaying).
	apply func(c *Client, e jetstream.KeyValueEntry, del, initial bool) error
	// gone forgets a key that vanished while this host was away (expired,
	// its marker gone); called with c.mu held.
	gone func(c *Client, key string)
	// stateless: the view keeps no revision of the bucket's keys (applying
	// a record again changes nothing), a full replay starts its count anew
	// (reset) instead of forgetting vanished keys, and its current values
	// are applied with the updates, not before Ready.
	stateless bool
	reset     func(c *Client)
	// optional: a watch this host can do without (the sightings: the
	// servers' permissions of an older deployment may not allow it); one
	// that cannot start is left off until the daemon restarts, and the
	// others go on (sightingsOff).
	optional bool
	// own: only this host's key is watched (the hosts bucket: a host
	// needs its own record, to write it again when it is gone or stale;
	// reading every host's made a fleet's cold start cost N x N records).
	own bool
}

// watchedBuckets are the buckets a generation watches, in the order their
// current values are replayed: hosts, then lifts, then blocks, so that
// lifts are known before any block is delivered.
var watchedBuckets = []bucketWatch{
	{bucket: BucketHosts, stall: -1, apply: (*Client).applyHost, gone: (*Client).hostGone, own: true},
	{bucket: BucketLifts, stall: 0, apply: (*Client).applyLift, gone: (*Client).liftGone},
	{bucket: BucketBlocks, stall: 1, apply: (*Client).applyBlock, gone: (*Client).blockGone},
}

// sightingsWatch is the sightings bucket's, watched after the others by a
// host that counts them (correlate.go).
var sightingsWatch = bucketWatch{bucket: BucketSightings, stall: -1, apply: (*Client).applySighting,
	gone: (*Client).sightingGone, stateless: true, optional: true, reset: func(c *Client) { c.tally.reset() }}

// watched are the buckets this host watches: watchedBuckets, and the
// sightings when it counts them.
func (c *Client) watched() []bucketWatch {
	if !c.counts() || c.noCount.Load() {
		return watchedBuckets
	}
	return append(slices.Clone(watchedBuckets), sightingsWatch)
}

// watch is one bucket's watch in a generation.
type watch struct {
	bucketWatch
	kv jetstream.KeyValue
	kw jetstream.KeyWatcher
	// resumed: it delivers what came after a revision handled before,
	// not the bucket's current values.
	resumed bool
	// live: the bucket's live subscription, which delivers once the
	// bucket is replayed (live.go), after handled; nil: the consumer does.
	// base: the stream's last sequence once the subscription was made:
	// the watch covers what came before, the subscription what came after.
	live          *liveFeed
	base, handled uint64
}

// update is one delivery of a watch: an entry, nil at the end of the
// current values, or ok false when the watch closed; gap: a live
// subscription skipped a sequence.
type update struct {
	w   *watch
	e   jetstream.KeyValueEntry
	ok  bool
	gap bool
}

// watcher is one generation of watches, one per watched bucket, made on
// one connection. Once its current values are replayed (bucket after
// bucket, from each watch), merge sends the updates of every bucket on
// one channel.
type watcher struct {
	ctx     context.Context // the watches' lifetime
	cancel  context.CancelFunc
	watches []*watch             // in watched's order
	cancels []context.CancelFunc // of the optional watches' own contexts
	updates chan update
	wg      sync.WaitGroup
}

// startWatcher binds the buckets and starts their watches, which live
// until the watcher stops (or ctx is done).
func (c *Client) startWatcher(ctx context.Context) (*watcher, error) {
	js, err := c.watchJS(ctx)
	if err != nil {
		return nil, err
	}
	var feeds map[string]*liveFeed
	if _, nc, _ := c.conn(); nc != nil {
		feeds = c.subscribeLives(nc)
	}
	c.mu.Lock()
	resume, last := c.view.resume, maps.Clone(c.view.last)
	c.mu.Unlock()
	wctx, cancel := context.WithCancel(ctx)
	w := &watcher{ctx: wctx, cancel: cancel, updates: make(chan update)}
	for _, b := range c.watched() {
		var from uint64
		if resume && last[b.bucket] > 0 {
			from = last[b.bucket] + 1
		}
		x, err := c.startBucketWatch(w, js, b, from, feeds[b.bucket] != nil)
		switch {
		case err != nil && b.optional && ctx.Err() == nil:
			c.sightingsOff(err)
		case err != nil:
			w.stop()
			stopFeeds(feeds)
			return nil, err
		default:
			x.live, feeds[b.bucket] = feeds[b.bucket], nil
			w.watches = append(w.watches, x)
		}
	}
	return w, nil
}

// startBucketWatch binds b's bucket and starts its watch in w, from
// revision from (0: its current values). An optional watch that takes
// too long to start ends only itself, not the generation.
//
// live: the bucket's live subscription is made; the stream's last
// sequence now is where the subscription takes over (live.go).
func (c *Client) startBucketWatch(w *watcher, js jetstream.JetStream, b bucketWatch, from uint64, live bool) (*watch, error) {
	ctx, cancel := w.ctx, w.cancel
	if b.optional {
		ctx, cancel = context.WithCancel(w.ctx)
		w.cancels = append(w.cancels, cancel)
	}
	kv, err := c.bucket(ctx, js, b.bucket)
	var last uint64
	switch {
	case err == nil && from > 0:
		from, last, err = c.resumable(ctx, kv, b.bucket, from)
	case err == nil && live:
		last, err = streamLast(ctx, kv, b.bucket)
	}
	if err != nil {
		return nil, err
	}
	key := ""
	if b.own {
		key = c.name
	}
	x, err := startWatch(ctx, cancel, kv, b, key, from)
	if err != nil {
		return nil, err
	}
	x.base = last
	return x, nil
}

// sightingsOff leaves the sightings' watch off until the daemon restarts:
// it could not start (err), most likely the servers' permissions of an
// older deployment (no consumer of KV_portsentry_sightings). This host
// counts nothing meanwhile; it still writes its sightings, and enforces
// the counters' correlated blocks.
func (c *Client) sightingsOff(err error) {
	c.noCount.Store(true)
	c.log.Warn("fleet: cannot watch the sightings: this host counts none until it restarts (do its permissions allow a consumer of KV_portsentry_sightings? see deploy/nats)",
		"err", err)
}

// bucket binds bucket once, for the Client's life or until the buckets
// are made anew: a request each generation would cost the servers as
// much as the watch.
func (c *Client) bucket(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.KeyValue, error) {
	c.mu.Lock()
	kv, ok := c.kvs[bucket]
	c.mu.Unlock()
	if ok {
		return kv, nil
	}
	rctx, rcancel := context.WithTimeout(ctx, apiTimeout)
	kv, err := js.KeyValue(rctx, bucket)
	rcancel()
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", bucket, err)
	}
	c.mu.Lock()
	if c.kvs == nil {
		c.kvs = map[string]jetstream.KeyValue{}
	}
	c.kvs[bucket] = kv
	c.mu.Unlock()
	return kv, nil
}

// resumable returns from if bucket's stream still holds what this host
// handled before it (the same stream, as long), else 0: replay it in full
// (it was made anew, or lost its records). One stream info request.
func (c *Client) resumable(ctx context.Context, kv jetstream.KeyValue, bucket string, from uint64) (uint64, uint64, error) {
	info, err := streamInfo(ctx, kv, bucket)
	if err != nil || info == nil {
		return 0, 0, err
	}
	c.mu.Lock()
	if created, ok := c.created[bucket]; ok && info.Created.Equal(created) && info.State.LastSeq+1 >= from {
		c.mu.Unlock()
		return from, info.State.LastSeq, nil
	}
	if c.created == nil {
		c.created = map[string]time.Time{}
	}
	c.created[bucket], c.view.last[bucket] = info.Created, 0
	c.mu.Unlock()
	c.log.Info("fleet: a bucket is not the one watched before; replaying it", "bucket", bucket)
	if bucket == BucketHosts {
		c.putHost() // this host's record may be gone with the old one
	}
	return 0, info.State.LastSeq, nil
}

// streamInfo is the information of kv's stream (nil: none given).
func streamInfo(ctx context.Context, kv jetstream.KeyValue, bucket string) (*jetstream.StreamInfo, error) {
	rctx, cancel := context.WithTimeout(ctx, apiTimeout)
	st, err := kv.Status(rctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", bucket, err)
	}
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok {
		return bs.StreamInfo(), nil
	}
	return nil, nil
}

// streamLast is the last sequence of kv's stream.
func streamLast(ctx context.Context, kv jetstream.KeyValue, bucket string) (uint64, error) {
	info, err := streamInfo(ctx, kv, bucket)
	if err != nil || info == nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// startWatch watches b's bucket (key's record only, or all with ""),
// for ctx's lifetime, from revision from on (0: its current values);
// cancel ends ctx, the whole generation's, when the watch takes too long
// to start.
func startWatch(ctx context.Context, cancel context.CancelFunc, kv jetstream.KeyValue, b bucketWatch, key string, from uint64) (*watch, error) {
	bucket := b.bucket
	var opts []jetstream.WatchOpt
	if from > 0 {
		opts = append(opts, jetstream.ResumeFromRevision(from))
	}
	// A watch lives as long as its context: bound the requests that
	// make it by ending the whole generation if they take too long.
	timer := time.AfterFunc(apiTimeout, cancel)
	var kw jetstream.KeyWatcher
	var err error
	if key != "" {
		kw, err = kv.Watch(ctx, key, opts...)
	} else {
		kw, err = kv.WatchAll(ctx, opts...)
	}
	if !timer.Stop() && err == nil {
		_ = kw.Stop()
		err = context.DeadlineExceeded
	}
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", bucket, err)
	}
	return &watch{bucketWatch: b, kv: kv, kw: kw, resumed: from > 0}, nil
}

// merge forwards every watch's deliveries to w.updates, one goroutine per
// watch, until the watch closes or the watcher stops.
func (w *watcher) merge() {
	for _, x := range w.watches {
		if x.live != nil {
			w.wg.Go(func() { w.forwardLive(x) })
			continue
		}
		w.wg.Go(func() { w.forward(x) })
	}
}

func (w *watcher) forward(x *watch) {
	for {
		u := update{w: x}
		select {
		case u.e, u.ok = <-x.kw.Updates():
		case <-w.ctx.Done():
			return
		}
		select {
		case w.updates <- u:
		case <-w.ctx.Done():
			return
		}
		if !u.ok {
			return
		}
	}
}

// stop ends the watches and waits for their forwarders.
func (w *watcher) stop() {
	w.cancel()
	for _, cancel := range w.cancels {
		cancel()
	}
	for _, x := range w.watches {
		_ = x.kw.Stop()
		x.live.stop()
	}
	w.wg.Wait()
}

// stallChecker makes the stall check of w's watches of lifts and blocks;
// early for a generation made after another.
func (w *watcher) stallChecker(early bool) *stallChecker {
	var kvs [2]jetstream.KeyValue
	for _, x := range w.watches {
		if x.stall >= 0 {
			kvs[x.stall] = x.kv
		}
	}
	return newStallCheck(kvs[0], kvs[1], early)
}

// watch runs one generation of watches: the current values, bucket after
// bucket (watched), then the updates, until ctx is done, a
// reconnect, or a watch closes or stalls.
func (c *Client) watch(ctx context.Context) error {
	w, err := c.startWatcher(ctx)
	if err != nil {
		return err
	}
	defer w.stop()
	if err := c.replay(ctx, w); err != nil {
		return err
	}
	c.mu.Lock()
	again := c.view.resume // a generation before this one replayed
	c.view.resume = true
	c.mu.Unlock()
	c.readyOnce.Do(func() {
		c.mu.Lock()
		n := c.view.count(c.now())
		c.mu.Unlock()
		c.log.Info("fleet: mirrored the fleet", "blocks", n) // the line's words are fixed: scripts wait for it
		close(c.ready)
	})
	c.goLive(w)
	w.merge()
	return c.follow(ctx, w, w.stallChecker(again))
}

// replay handles the watches' current values (or what a resumed watch
// missed), bucket after bucket, then forgets what vanished while this
// host was away from a bucket replayed in full (expired, its marker gone;
// a resumed watch's records end at their own time, expiry.go) and passes
// on the hosts' lifts it read.
func (c *Client) replay(ctx context.Context, w *watcher) error {
	full := slices.ContainsFunc(w.watches, func(x *watch) bool { return !x.resumed })
	before := map[string]bool{}
	if full {
		c.mu.Lock()
		for _, k := range c.view.revKeys() {
			before[k] = true
		}
		c.mu.Unlock()
	}
	seen := map[string]bool{}
	for _, x := range w.watches {
		if x.stateless {
			// Counted, not held: its current values come with the
			// updates, after Ready (a bucket of many sightings must not
			// hold up the blocks).
			if !x.resumed {
				x.reset(c)
			}
			continue
		}
		if err := c.replayWatch(ctx, x, seen); err != nil {
			return err
		}
	}
	for _, x := range w.watches {
		if x.resumed {
			continue
		}
		for k := range before {
			if bucket, key, _ := strings.Cut(k, "/"); bucket == x.bucket && !seen[k] {
				c.vanished(x, key)
			}
		}
	}
	c.passPendingLifts()
	return nil
}

// replayWatch handles x's current values, and marks their keys in seen.
func (c *Client) replayWatch(ctx context.Context, x *watch, seen map[string]bool) error {
	for {
		select {
		case e, ok := <-x.kw.Updates():
			switch {
			case !ok:
				return fmt.Errorf("%s: %w", x.bucket, errClosed)
			case e == nil:
				return nil
			}
			seen[x.bucket+"/"+e.Key()] = true
			c.apply(x, e, true)
		case <-ctx.Done():
			return ctx.Err()
		case <-c.reconnected:
			if c.reconnectedSince() {
				return errReconnected
			}
		}
	}
}

// follow handles the watches' updates, sweeps, and checks the watches
// with st, until ctx is done, a reconnect, or a watch closes or stalls.
func (c *Client) follow(ctx context.Context, w *watcher, st *stallChecker) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var maxRev [2]uint64 // delivered, by the watches' stall place: lifts, blocks
	var own ownWrites
	for {
		select {
		case u := <-w.updates:
			if u.gap {
				c.st.gaps.Add(1)
				return fmt.Errorf("%s: %w", u.w.bucket, errGap)
			}
			if !u.ok {
				return fmt.Errorf("%s: %w", u.w.bucket, errClosed)
			}
			if u.e == nil {
				continue
			}
			if i := u.w.stall; i >= 0 {
				maxRev[i] = max(maxRev[i], u.e.Revision())
			}
			c.apply(u.w, u.e, false)
		case r := <-st.results:
			if st.stalled(r, maxRev) {
				return errStalled
			}
		case wr := <-c.pub.wrote:
			own.stored(wr, maxRev, c.now())
		case now := <-tick.C:
			c.sweep()
			st.maybeStart(ctx, now)
			if own.stalled(maxRev, now) {
				return errStalled
			}
		case <-c.reconnected:
			if c.reconnectedSince() {
				return errReconnected
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// reconnects is the library's count of reconnects of the connection (0
// without one).
func (c *Client) reconnects() uint64 {
	if _, nc, _ := c.conn(); nc != nil {
		return nc.Stats().Reconnects
	}
	return 0
}

// reconnectedSince reports whether the connection reconnected since this
// generation of watches started: a signal for the connection it started
// on, late, is not one (it would replay every bucket for nothing).
func (c *Client) reconnectedSince() bool { return c.reconnects() != c.startedAt.Load() }

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
