package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// apiTimeout bounds one JetStream API request.
const apiTimeout = 5 * time.Second

// watchers are the three watches of one connection.
type watchers struct {
	hosts, lifts, blocks jetstream.KeyWatcher
}

func (w watchers) stop() {
	for _, x := range []jetstream.KeyWatcher{w.hosts, w.lifts, w.blocks} {
		if x != nil {
			_ = x.Stop()
		}
	}
}

var (
	errReconnected = errors.New("reconnected")
	errClosed      = errors.New("watcher closed")
	errStalled     = errors.New("watcher stalled: the bucket has records it did not deliver")
)

// stallCheck is how often the watchers are checked against their
// buckets: an ordered consumer whose server was cut off from the cluster
// can stop delivering without the connection dropping (its re-creation
// fails while the streams elect new leaders; after the partition its
// server catches up from a snapshot, which the consumer does not
// deliver), and nothing else would notice. Each check is two stream info
// requests; a stalled watcher is made anew within one to two checks.
const stallCheck = time.Second

// watchLoop keeps the watchers running: after a reconnect or a closed
// watcher it makes new ones (with backoff), which replay the buckets'
// current values; the revisions already handled are skipped.
func (c *Client) watchLoop(ctx context.Context) {
	bo := newBackoff(500*time.Millisecond, retryMax)
	for ctx.Err() == nil {
		if !c.waitConnected(ctx) {
			return
		}
		// A reconnect signalled before now is the one we are starting on.
		select {
		case <-c.reconnected:
		default:
		}
		if err := c.ensureBuckets(ctx); err != nil {
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

// watch runs one generation of watchers: the initial values (hosts, then
// lifts, then blocks, so that lifts are known before any block is
// delivered), then updates, until ctx is done, a reconnect or a watcher
// closes.
func (c *Client) watch(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var w watchers
	defer w.stop()
	kvs, err := c.startWatchers(wctx, cancel, &w)
	if err != nil {
		return err
	}
	if err := c.replay(ctx, w); err != nil {
		return err
	}
	c.readyOnce.Do(func() {
		c.mu.Lock()
		n, hosts := c.view.count(c.now()), len(c.view.hosts)
		c.mu.Unlock()
		c.log.Info("fleet: mirrored the fleet", "blocks", n, "hosts", hosts)
		close(c.ready)
	})
	return c.follow(ctx, w, newStallCheck(kvs[BucketLifts], kvs[BucketBlocks]))
}

// startWatchers binds the buckets and starts their watchers in w; cancel
// ends wctx, the watchers' lifetime, when one takes too long to start.
func (c *Client) startWatchers(wctx context.Context, cancel context.CancelFunc, w *watchers) (map[string]jetstream.KeyValue, error) {
	js, _, _ := c.conn()
	kvs := map[string]jetstream.KeyValue{}
	for _, x := range []struct {
		bucket string
		to     *jetstream.KeyWatcher
	}{{BucketHosts, &w.hosts}, {BucketLifts, &w.lifts}, {BucketBlocks, &w.blocks}} {
		rctx, rcancel := context.WithTimeout(wctx, apiTimeout)
		kv, err := js.KeyValue(rctx, x.bucket)
		rcancel()
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", x.bucket, err)
		}
		kvs[x.bucket] = kv
		// A watcher lives as long as its context: bound the requests that
		// make it by ending the whole generation if they take too long.
		timer := time.AfterFunc(apiTimeout, cancel)
		*x.to, err = kv.WatchAll(wctx)
		if !timer.Stop() && err == nil {
			err = context.DeadlineExceeded
		}
		if err != nil {
			return nil, fmt.Errorf("watch %s: %w", x.bucket, err)
		}
	}
	return kvs, nil
}

// replay handles the watchers' initial values, bucket after bucket, then
// forgets what vanished while this host was away (expired, its marker
// gone) and passes on the hosts' lifts it read.
func (c *Client) replay(ctx context.Context, w watchers) error {
	c.mu.Lock()
	before := make(map[string]bool, len(c.view.revs))
	for k := range c.view.revs {
		before[k] = true
	}
	c.mu.Unlock()
	seen := map[string]bool{}
	for _, x := range []struct {
		bucket string
		w      jetstream.KeyWatcher
	}{{BucketHosts, w.hosts}, {BucketLifts, w.lifts}, {BucketBlocks, w.blocks}} {
		for initial := true; initial; {
			select {
			case e, ok := <-x.w.Updates():
				switch {
				case !ok:
					return fmt.Errorf("%s: %w", x.bucket, errClosed)
				case e == nil:
					initial = false
				default:
					seen[x.bucket+"/"+e.Key()] = true
					c.handle(x.bucket, e, true)
				}
			case r := <-c.confirmOut:
				c.confirmed(r)
			case <-ctx.Done():
				return ctx.Err()
			case <-c.reconnected:
				return errReconnected
			}
		}
	}
	for k := range before {
		if !seen[k] {
			bucket, key, _ := strings.Cut(k, "/")
			c.vanished(bucket, key)
		}
	}
	c.passPendingLifts()
	return nil
}

// follow handles the watchers' updates, the counts of correlated records
// and this host's own correlated blocks, sweeps, and checks the watchers
// with st, until ctx is done, a reconnect, or a watcher closes or stalls.
func (c *Client) follow(ctx context.Context, w watchers, st *stallChecker) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var maxRev [2]uint64 // delivered: lifts, blocks
	for {
		var bucket string
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case r := <-st.results:
			if st.stalled(r, maxRev) {
				return errStalled
			}
			continue
		case e, ok = <-w.hosts.Updates():
			bucket = BucketHosts
		case e, ok = <-w.lifts.Updates():
			bucket = BucketLifts
		case e, ok = <-w.blocks.Updates():
			bucket = BucketBlocks
		case b := <-c.self:
			c.deliver(b)
			continue
		case r := <-c.confirmOut:
			c.confirmed(r)
			continue
		case now := <-tick.C:
			c.sweep()
			st.maybeStart(ctx, now)
			continue
		case <-c.reconnected:
			return errReconnected
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			return fmt.Errorf("%s: %w", bucket, errClosed)
		}
		if e == nil {
			continue
		}
		switch bucket {
		case BucketLifts:
			maxRev[0] = max(maxRev[0], e.Revision())
		case BucketBlocks:
			maxRev[1] = max(maxRev[1], e.Revision())
		}
		c.handle(bucket, e, false)
	}
}

// handle applies one watched entry, once per revision.

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// stallChecker compares the watchers of lifts and blocks with their
// buckets' last sequence, now and then, off the watch loop.
type stallChecker struct {
	kvs     [2]jetstream.KeyValue
	results chan [2]uint64
	next    time.Time
	running bool
	// base: the buckets' last sequences at the first check of this
	// generation (what was there before may never be delivered: a purged
	// marker leaves a gap); pending: sequences a check found undelivered;
	// prev: what had been delivered at that check.
	base, pending, prev [2]uint64
	checked             bool
}

func newStallCheck(lifts, blocks jetstream.KeyValue) *stallChecker {
	return &stallChecker{kvs: [2]jetstream.KeyValue{lifts, blocks}, results: make(chan [2]uint64, 1), next: time.Now().Add(stallCheck)}
}

// maybeStart asks the buckets' last sequences when a check is due.
func (s *stallChecker) maybeStart(ctx context.Context, now time.Time) {
	if s.running || now.Before(s.next) {
		return
	}
	s.running, s.next = true, now.Add(stallCheck)
	go func() {
		var last [2]uint64
		for i, kv := range s.kvs {
			rctx, cancel := context.WithTimeout(ctx, apiTimeout)
			st, err := kv.Status(rctx)
			cancel()
			if bs, ok := st.(*jetstream.KeyValueBucketStatus); err == nil && ok && bs.StreamInfo() != nil {
				last[i] = bs.StreamInfo().State.LastSeq
			}
		}
		s.results <- last
	}()
}

// stalled reports a watcher that delivered nothing since the check
// before this one although that check found records it had not delivered
// (and that came after this generation began). A watcher still working
// through a burst advances, and is left alone however far behind it is.
func (s *stallChecker) stalled(last, delivered [2]uint64) bool {
	s.running = false
	if !s.checked {
		s.checked, s.base, s.prev = true, last, delivered
		return false
	}
	stalled := false
	for i := range last {
		if s.pending[i] > s.base[i] && delivered[i] < s.pending[i] && delivered[i] == s.prev[i] {
			stalled = true
		}
		s.pending[i] = 0
		if last[i] > delivered[i] {
			s.pending[i] = last[i]
		}
	}
	s.prev = delivered
	return stalled
}
