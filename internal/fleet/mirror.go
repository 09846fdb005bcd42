package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// apiTimeout bounds one JetStream API request.
const apiTimeout = 5 * time.Second

// held is one host's block of an address, as the mirror keeps it: when it
// ends (capped at max_timeout when it arrived) and the record's time on the
// servers, in Unix nanoseconds. The details (scan type, ports, reason) went
// to the Sink, whose ledger keeps them; the mirror holds 100k blocks in a
// few MiB.
type held struct {
	host             string // interned: one string per fleet host
	expires, created int64
}

func (h held) ends() time.Time { return time.Unix(0, h.expires) }

// mirror is what this host knows of the fleet, from the watchers. Its
// methods are called with Client.mu held.
type mirror struct {
	// blocks: other hosts' blocks, by address; most addresses have one
	// host, so a short slice, not a map, per address.
	blocks    map[netip.Addr][]held
	names     map[string]string        // host names, interned
	delivered map[netip.Addr]time.Time // the latest Expires passed to the Sink
	own       map[netip.Addr]time.Time // this host's block records: their time on the servers
	lifts     map[netip.Addr]Lift      // the administrator's latest lift of each address
	hostLifts map[hostAddr]time.Time   // each host's latest lift of its own block of an address
	hosts     map[string][]netip.Addr  // each host's claim of its addresses: shown, never trusted
	unlisted  map[string]struct{}      // hosts whose claim fleet.hosts does not cover, logged
	revs      map[string]uint64        // bucket/key: the revision handled
	refused   map[netip.Addr]struct{}  // refusals logged
	// refusalLog bounds the refusal lines a second.
	refusalLog lineBudget
	// confirming: each host's correlated records waiting for their count.
	confirming map[string]int
	unbounded  map[string]struct{} // buckets without limits, logged
	// pendingLifts: hosts' lifts read while replaying the buckets, passed
	// on once the blocks are replayed too (whether a record still holds
	// the address is known only then).
	pendingLifts []Lift
}

func newMirror() mirror {
	return mirror{
		blocks: map[netip.Addr][]held{}, names: map[string]string{}, delivered: map[netip.Addr]time.Time{},
		own: map[netip.Addr]time.Time{}, lifts: map[netip.Addr]Lift{}, hostLifts: map[hostAddr]time.Time{}, hosts: map[string][]netip.Addr{},
		revs: map[string]uint64{}, refused: map[netip.Addr]struct{}{}, confirming: map[string]int{}, unbounded: map[string]struct{}{}, unlisted: map[string]struct{}{},
	}
}

// refusedOnce reports whether a refusal of a is the first to log.
func (m *mirror) refusedOnce(a netip.Addr) bool {
	if _, ok := m.refused[a]; ok {
		return false
	}
	if len(m.refused) >= 10000 {
		clear(m.refused)
	}
	m.refused[a] = struct{}{}
	return true
}

// forget drops what the mirror holds of a (lifted here).
func (m *mirror) forget(a netip.Addr) {
	delete(m.blocks, a)
	delete(m.delivered, a)
}

// intern returns the one copy of a host's name.
func (m *mirror) intern(host string) string {
	if n, ok := m.names[host]; ok {
		return n
	}
	host = strings.Clone(host) // not the key it was cut from
	if len(m.names) < 65536 {
		m.names[host] = host
	}
	return host
}

// hold records host's block of a, replacing the one it had, and returns
// the host's interned name.
func (m *mirror) hold(a netip.Addr, h held) string {
	h.host = m.intern(h.host)
	hs := m.blocks[a]
	for i := range hs {
		if hs[i].host == h.host {
			hs[i] = h
			return h.host
		}
	}
	m.blocks[a] = append(hs, h)
	return h.host
}

// release drops the blocks of a that drop says, and a when none is left.
func (m *mirror) release(a netip.Addr, drop func(held) bool) {
	hs, ok := m.blocks[a]
	if !ok {
		return
	}
	hs = slices.DeleteFunc(hs, drop)
	if len(hs) == 0 {
		delete(m.blocks, a)
		return
	}
	m.blocks[a] = hs
}

// list returns the blocks in force at now, by address and host (Addr,
// Host, Admin and Expires: the details went to the Sink).
func (m *mirror) list(now time.Time) []Block {
	var out []Block
	for a, hs := range m.blocks {
		for _, h := range hs {
			if h.expires > now.UnixNano() {
				out = append(out, Block{Addr: a, Host: h.host, Admin: h.host == AdminName, Expires: h.ends()})
			}
		}
	}
	slices.SortFunc(out, func(x, y Block) int {
		if c := x.Addr.Compare(y.Addr); c != 0 {
			return c
		}
		return strings.Compare(x.Host, y.Host)
	})
	return out
}

// count is how many blocks are in force at now (list's length, without
// the list).
func (m *mirror) count(now time.Time) int {
	n, t := 0, now.UnixNano()
	for _, hs := range m.blocks {
		for _, h := range hs {
			if h.expires > t {
				n++
			}
		}
	}
	return n
}

// sweep drops what has expired.
func (m *mirror) sweep(now time.Time) {
	t := now.UnixNano()
	for a := range m.blocks {
		m.release(a, func(h held) bool { return h.expires <= t })
	}
	for a, e := range m.delivered {
		if !e.After(now) {
			delete(m.delivered, a)
		}
	}
}

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

// mirrorLoop keeps the watchers running: after a reconnect or a closed
// watcher it makes new ones (with backoff), which replay the buckets'
// current values; the revisions already handled are skipped.
func (c *Client) mirrorLoop(ctx context.Context) {
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
		n, hosts := c.m.count(c.now()), len(c.m.hosts)
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
	before := make(map[string]bool, len(c.m.revs))
	for k := range c.m.revs {
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
func (c *Client) handle(bucket string, e jetstream.KeyValueEntry, initial bool) {
	rk := bucket + "/" + e.Key()
	c.mu.Lock()
	if c.m.revs[rk] == e.Revision() {
		c.mu.Unlock()
		return
	}
	c.m.revs[rk] = e.Revision()
	c.mu.Unlock()
	del := e.Operation() != jetstream.KeyValuePut
	var err error
	switch bucket {
	case BucketHosts:
		err = c.handleHost(e, del)
	case BucketLifts:
		err = c.handleLift(e, del, initial)
	case BucketBlocks:
		err = c.handleBlock(e, del, initial)
	}
	if err != nil {
		c.st.bad.Add(1)
		c.log.Warn("fleet: unreadable record", "bucket", bucket, "key", e.Key(), "err", err)
	}
}

// vanished handles a key that is gone, as if deleted.
func (c *Client) vanished(bucket, key string) {
	c.mu.Lock()
	delete(c.m.revs, bucket+"/"+key)
	switch bucket {
	case BucketHosts:
		delete(c.m.hosts, key)
	case BucketLifts:
		if host, a, err := ParseHostAddrKey(key); err == nil {
			c.m.dropLift(host, a)
		}
	case BucketBlocks:
		if host, a, err := ParseHostAddrKey(key); err == nil {
			c.dropBlockLocked(host, a)
		}
	}
	c.mu.Unlock()
}

func (c *Client) dropBlockLocked(host string, a netip.Addr) {
	if host == c.name {
		delete(c.m.own, a)
		return
	}
	c.m.release(a, func(h held) bool { return h.host == host })
}

func (c *Client) handleHost(e jetstream.KeyValueEntry, del bool) error {
	host := e.Key()
	if !validHost(host) {
		return fmt.Errorf("%q is not a fleet host name", host)
	}
	if del {
		c.mu.Lock()
		delete(c.m.hosts, host)
		c.mu.Unlock()
		return nil
	}
	var r hostRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return fmt.Errorf("host record: %w", err)
	}
	var as []netip.Addr
	for _, s := range r.Addrs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("host record: %w", err)
		}
		as = append(as, a.Unmap().WithZone(""))
	}
	// The record is the host's claim: kept to be shown, and it neither
	// protects nor lifts anything (a compromised host would list the
	// scanner). fleet.hosts, which the administrator controls, does.
	c.mu.Lock()
	c.m.hosts[host] = as
	unlisted := c.unlisted(host, as)
	c.mu.Unlock()
	if len(unlisted) > 0 {
		c.log.Info("fleet: a host publishes addresses that fleet.hosts does not list; they are not protected here (list the fleet's hosts in fleet.hosts)",
			"host", host, "addrs", unlisted)
	}
	return nil
}

// unlisted returns, the first time only for each host, the global
// addresses of as that fleet.hosts does not cover (at most 8): the hint an
// administrator needs when a host is missing from fleet.hosts.
func (c *Client) unlisted(host string, as []netip.Addr) []netip.Addr {
	if _, told := c.m.unlisted[host]; told || host == c.name || len(c.m.unlisted) >= 4096 {
		return nil
	}
	var out []netip.Addr
	for _, a := range as {
		listed := slices.ContainsFunc(c.cfg.HostPrefixes, func(p netip.Prefix) bool { return p.Contains(a) })
		if !listed && global(a) && len(out) < 8 {
			out = append(out, a)
		}
	}
	if len(out) > 0 {
		c.m.unlisted[host] = struct{}{}
	}
	return out
}

func (c *Client) handleBlock(e jetstream.KeyValueEntry, del, initial bool) error {
	host, a, err := ParseHostAddrKey(e.Key())
	if err != nil {
		return err
	}
	if del {
		c.mu.Lock()
		c.dropBlockLocked(host, a)
		c.mu.Unlock()
		return nil
	}
	created := e.Created()
	c.mu.Lock()
	lifted := c.m.liftedAt(host, a, created)
	if host == c.name {
		c.m.own[a] = created
		c.mu.Unlock()
		if lifted {
			c.purgeOwn(a)
		}
		return nil
	}
	c.mu.Unlock()
	b, err := decodeBlock(host, a, e.Value())
	if err != nil {
		return err
	}
	if lifted {
		return nil
	}
	now := c.now()
	if !initial {
		c.lag(now.Sub(created))
	}
	if !c.acceptable(&b, created, now) {
		return nil
	}
	if b.Origin == OriginCorrelate {
		c.askConfirm(confirmReq{b: b, key: e.Key(), rev: e.Revision(), created: created})
		return nil
	}
	c.enforce(b, created)
	return nil
}

// enforce holds b, another host's record created at created, and passes it
// to the Sink.
func (c *Client) enforce(b Block, created time.Time) {
	c.mu.Lock()
	// The Sink's record shares the interned name, not the key's bytes.
	b.Host = c.m.hold(b.Addr, held{host: b.Host, expires: b.Expires.UnixNano(), created: created.UnixNano()})
	c.mu.Unlock()
	c.deliver(b)
}

// clockSlack is how far the clocks of a publishing host and of the
// servers may disagree (NTP keeps them far closer): a record may claim to
// last this much beyond fleet.max_timeout from its creation.
const clockSlack = time.Minute

// acceptable says whether b, another host's record created on the servers
// at created, may be enforced at now: it has time left, lasts no longer
// than fleet.max_timeout from its creation (a record that claims more is
// refused, not shortened: written with no TTL, or "never", it would
// otherwise come back at every restart), and blockable. Its expiry is
// then capped at now + fleet.max_timeout.
func (c *Client) acceptable(b *Block, created, now time.Time) bool {
	if !b.Expires.After(now) {
		return false
	}
	if lim := created.Add(c.maxTimeout + clockSlack); b.Expires.After(lim) {
		c.refuse(b.Host, b.Addr, fmt.Sprintf("it claims to last %s from its creation, more than fleet.max_timeout (%s)",
			b.Expires.Sub(created).Round(time.Second), c.maxTimeout))
		return false
	}
	if !c.blockable(b.Addr, b.Host) {
		return false
	}
	b.Expires = c.capped(b.Expires, now)
	return true
}

// deliver passes b to the Sink unless a block of its address that lasts as
// long was passed already.
func (c *Client) deliver(b Block) {
	c.mu.Lock()
	prev := c.m.delivered[b.Addr]
	extends := b.Expires.Sub(prev) >= time.Second
	if extends {
		c.m.delivered[b.Addr] = b.Expires
	}
	c.mu.Unlock()
	if !extends {
		return
	}
	c.st.mirrored.Add(1)
	c.opts.Sink.FleetBlock(b)
}

func (c *Client) sweep() {
	now := c.now()
	c.mu.Lock()
	c.m.sweep(now)
	for a, t := range c.lastSeen {
		if now.Sub(t) > c.window {
			delete(c.lastSeen, a)
		}
	}
	c.mu.Unlock()
}

func validHost(h string) bool {
	_, _, err := ParseHostAddrKey(h + ".1-2-3-4")
	return err == nil
}

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
