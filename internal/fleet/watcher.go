package fleet

import (
	"context"
	"errors"
	"fmt"
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

// watchLoop keeps a watcher running: after a reconnect, or a watch that
// closed or stalled, it makes a new generation (with backoff), which
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
		c.putHost() // again on each connection: the servers may have lost it
		start := time.Now()
		err := c.watch(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			c.mu.Lock()
			c.bucketsOK = false // deleted by an administrator: make them again
			c.mu.Unlock()
		}
		if time.Since(start) > time.Minute {
			bo.reset()
		}
		if errors.Is(err, errReconnected) {
			// Not a failure: the link is back, replay at once (after a
			// partition this is what the host is waiting for).
			bo.reset()
			continue
		}
		c.log.Warn("fleet: watching the fleet", "err", err)
		sleep(ctx, bo.next())
	}
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
}

// watchedBuckets are the buckets a generation watches, in the order their
// current values are replayed: hosts, then lifts, then blocks, so that
// lifts are known before any block is delivered.
var watchedBuckets = []bucketWatch{
	{BucketHosts, -1, (*Client).applyHost, (*Client).hostGone},
	{BucketLifts, 0, (*Client).applyLift, (*Client).liftGone},
	{BucketBlocks, 1, (*Client).applyBlock, (*Client).blockGone},
}

// watch is one bucket's watch in a generation.
type watch struct {
	bucketWatch
	kv jetstream.KeyValue
	kw jetstream.KeyWatcher
}

// update is one delivery of a watch: an entry, nil at the end of the
// current values, or ok false when the watch closed.
type update struct {
	w  *watch
	e  jetstream.KeyValueEntry
	ok bool
}

// watcher is one generation of watches, one per watched bucket, made on
// one connection. Once its current values are replayed (bucket after
// bucket, from each watch), merge sends the updates of every bucket on
// one channel.
type watcher struct {
	ctx     context.Context // the watches' lifetime
	cancel  context.CancelFunc
	watches []*watch // in watchedBuckets' order
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
	wctx, cancel := context.WithCancel(ctx)
	w := &watcher{ctx: wctx, cancel: cancel, updates: make(chan update)}
	for _, b := range watchedBuckets {
		x, err := startWatch(wctx, cancel, js, b)
		if err != nil {
			w.stop()
			return nil, err
		}
		w.watches = append(w.watches, x)
	}
	return w, nil
}

// startWatch binds b's bucket and watches it for ctx's lifetime; cancel ends
// ctx, the whole generation's, when the watch takes too long to start.
func startWatch(ctx context.Context, cancel context.CancelFunc, js jetstream.JetStream, b bucketWatch) (*watch, error) {
	bucket := b.bucket
	rctx, rcancel := context.WithTimeout(ctx, apiTimeout)
	kv, err := js.KeyValue(rctx, bucket)
	rcancel()
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", bucket, err)
	}
	// A watch lives as long as its context: bound the requests that
	// make it by ending the whole generation if they take too long.
	timer := time.AfterFunc(apiTimeout, cancel)
	kw, err := kv.WatchAll(ctx)
	if !timer.Stop() && err == nil {
		_ = kw.Stop()
		err = context.DeadlineExceeded
	}
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", bucket, err)
	}
	return &watch{bucketWatch: b, kv: kv, kw: kw}, nil
}

// merge forwards every watch's deliveries to w.updates, one goroutine per
// watch, until the watch closes or the watcher stops.
func (w *watcher) merge() {
	for _, x := range w.watches {
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
	for _, x := range w.watches {
		_ = x.kw.Stop()
	}
	w.wg.Wait()
}

// stallChecker makes the stall check of w's watches of lifts and blocks.
func (w *watcher) stallChecker() *stallChecker {
	var kvs [2]jetstream.KeyValue
	for _, x := range w.watches {
		if x.stall >= 0 {
			kvs[x.stall] = x.kv
		}
	}
	return newStallCheck(kvs[0], kvs[1])
}

// watch runs one generation of watches: the current values, bucket after
// bucket (watchedBuckets), then the updates, until ctx is done, a
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
	c.readyOnce.Do(func() {
		c.mu.Lock()
		n, hosts := c.view.count(c.now()), len(c.view.hosts)
		c.mu.Unlock()
		c.log.Info("fleet: mirrored the fleet", "blocks", n, "hosts", hosts) // the line's words are fixed: scripts wait for it
		close(c.ready)
	})
	w.merge()
	return c.follow(ctx, w, w.stallChecker())
}

// replay handles the watches' current values, bucket after bucket, then
// forgets what vanished while this host was away (expired, its marker
// gone) and passes on the hosts' lifts it read.
func (c *Client) replay(ctx context.Context, w *watcher) error {
	c.mu.Lock()
	before := make(map[string]bool, len(c.view.revs))
	for k := range c.view.revs {
		before[k] = true
	}
	c.mu.Unlock()
	seen := map[string]bool{}
	for _, x := range w.watches {
		if err := c.replayWatch(ctx, x, seen); err != nil {
			return err
		}
	}
	for _, x := range w.watches {
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
		case r := <-c.confirmOut:
			c.confirmed(r)
		case <-ctx.Done():
			return ctx.Err()
		case <-c.reconnected:
			if c.reconnectedSince() {
				return errReconnected
			}
		}
	}
}

// follow handles the watches' updates, the counts of correlated records
// and this host's own correlated blocks, sweeps, and checks the watches
// with st, until ctx is done, a reconnect, or a watch closes or stalls.
func (c *Client) follow(ctx context.Context, w *watcher, st *stallChecker) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var maxRev [2]uint64 // delivered, by the watches' stall place: lifts, blocks
	for {
		select {
		case u := <-w.updates:
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
		case b := <-c.self:
			c.deliver(b)
		case r := <-c.confirmOut:
			c.confirmed(r)
		case now := <-tick.C:
			c.sweep()
			st.maybeStart(ctx, now)
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
