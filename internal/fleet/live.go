package fleet

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Live records: the servers republish each record a bucket stores on a
// core NATS subject (the stream's RePublish, set by BucketConfig), and a
// host that has replayed a bucket follows it there instead of through a
// JetStream consumer of its own.
//
// Why: the stream leader delivers a consumer's messages one host at a
// time, with flow control and acknowledgements: 40-45 µs of server CPU
// per block per receiving host at 1000 hosts, the figure that decides how
// large a fleet one cluster carries. A republished record is one core
// message, which the cluster fans out to its subscribers as it does any
// subject (a few µs each), and which the host does not acknowledge.
//
// JetStream stays what a host catches up with: a generation of watches
// subscribes to the live subject first, replays (or resumes) the bucket
// through its consumer, then stops the consumer and follows the
// subscription from the last revision it handled. Every record the
// stream stores (puts, deletions, purges, the servers' own expiry
// markers) takes the stream's next sequence and is republished in that
// order, so a sequence that is not the one after the last handled is a
// gap (a message dropped for a slow subscriber, a leader that changed
// under a write): the generation ends and the next one resumes from the
// last revision handled, through a consumer again. A gap at the very end
// (nothing after it) is what the stall checks catch, as for a consumer.
//
// Hosts may subscribe to the live subjects and not publish on them
// (deploy/nats): a record there is the servers' word, as a consumer's is.
// In the leaf topology the hosts watch their site's copy through a
// consumer, which already costs the hub one delivery per site; so do
// hosts whose buckets have no RePublish (made by an older version, until
// `portsentry-nft fleet setup` updates them).

// LivePrefix is the core subject prefix bucket's records are
// republished under: LivePrefix(bucket) + key.
func LivePrefix(bucket string) string { return "portsentry.live." + bucket + "." }

// liveRePublish is bucket's RePublish: every record, headers and value.
func liveRePublish(bucket string) *jetstream.RePublish {
	return &jetstream.RePublish{Source: Subject(bucket, ">"), Destination: LivePrefix(bucket) + ">"}
}

// isLive reports whether a stream's configuration republishes bucket's
// records where hosts follow them.
func isLive(bucket string, cfg jetstream.StreamConfig) bool {
	r := cfg.RePublish
	return r != nil && !r.HeadersOnly && r.Destination == LivePrefix(bucket)+">" &&
		(r.Source == "" || r.Source == ">" || r.Source == Subject(bucket, ">"))
}

// liveBuffer bounds the republished records a host holds before it
// handles them: more are dropped by the library (a slow consumer), which
// the next record shows as a gap.
const liveBuffer = 1 << 16

// errGap ends a generation whose live subscription skipped a sequence.
var errGap = errors.New("live records: a sequence was skipped")

// liveFeed is a bucket's live subscription.
type liveFeed struct {
	sub *nats.Subscription
	ch  chan *nats.Msg
}

// errLiveRefused: the server refused the live subscription (a host
// without the permission: it keeps its consumers).
var errLiveRefused = errors.New("the live subscription is refused")

// subscribeLive subscribes to bucket's live subject on nc; it fails with
// errLiveRefused when the server refuses the subscription, and with
// another error when it did not answer in time (a busy server: this
// generation keeps the bucket's consumer, the next one tries again).
func subscribeLive(nc *nats.Conn, bucket string) (*liveFeed, error) {
	ch := make(chan *nats.Msg, liveBuffer)
	sub, err := nc.ChanSubscribe(LivePrefix(bucket)+">", ch)
	if err != nil {
		return nil, fmt.Errorf("live %s: %w", bucket, err)
	}
	// A refused subscription is told asynchronously, before the PONG.
	if err := nc.FlushTimeout(apiTimeout); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("live %s: %w", bucket, err)
	}
	if e := nc.LastError(); e != nil && strings.Contains(e.Error(), LivePrefix(bucket)) {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("live %s: %w: %w", bucket, errLiveRefused, e)
	}
	return &liveFeed{sub: sub, ch: ch}, nil
}

func (f *liveFeed) stop() {
	if f != nil && f.sub != nil {
		_ = f.sub.Unsubscribe()
	}
}

// liveEntry is a republished record, as a watch's entry.
type liveEntry struct {
	bucket, key string
	value       []byte
	rev         uint64
	created     time.Time
	op          jetstream.KeyValueOp
}

func (e *liveEntry) Bucket() string                  { return e.bucket }
func (e *liveEntry) Key() string                     { return e.key }
func (e *liveEntry) Value() []byte                   { return e.value }
func (e *liveEntry) Revision() uint64                { return e.rev }
func (e *liveEntry) Created() time.Time              { return e.created }
func (e *liveEntry) Delta() uint64                   { return 0 }
func (e *liveEntry) Operation() jetstream.KeyValueOp { return e.op }

// errOtherStream marks a message on a live subject that is not a record
// of its bucket's stream (another stream republishing there, which a host
// could make before the administrator did): skipped, not a gap.
var errOtherStream = errors.New("not a record of the bucket's stream")

// lastHeader is the last value of a header: the servers append theirs
// (stream, subject, sequence, time) after the record's own headers, which
// the writing host chose and which may repeat those names to lie.
func lastHeader(h nats.Header, key string) string {
	v := h.Values(key)
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// parseLive reads a republished record of bucket from its headers: the
// stream's sequence, the record's subject and time, and the operation (a
// deletion, a purge, or an expiry marker of the servers').
func parseLive(bucket string, h nats.Header, value []byte) (*liveEntry, error) {
	if lastHeader(h, jetstream.StreamHeader) != "KV_"+bucket {
		return nil, errOtherStream
	}
	rev, err := strconv.ParseUint(lastHeader(h, jetstream.SequenceHeader), 10, 64)
	if err != nil || rev == 0 {
		return nil, fmt.Errorf("live %s: sequence %q", bucket, lastHeader(h, jetstream.SequenceHeader))
	}
	key, ok := strings.CutPrefix(lastHeader(h, jetstream.SubjectHeader), Subject(bucket, ""))
	if !ok || key == "" {
		return nil, fmt.Errorf("live %s: subject %q", bucket, lastHeader(h, jetstream.SubjectHeader))
	}
	created, err := time.Parse(time.RFC3339Nano, lastHeader(h, jetstream.TimeStampHeaer))
	if err != nil {
		return nil, fmt.Errorf("live %s: time stamp: %w", bucket, err)
	}
	e := &liveEntry{bucket: bucket, key: key, value: value, rev: rev, created: created, op: jetstream.KeyValuePut}
	// As the library reads a consumer's: an operation, else a marker.
	switch op, marker := h.Get("KV-Operation"), h.Get(jetstream.MarkerReasonHeader); {
	case op == "DEL", op == "" && marker == "Remove":
		e.op = jetstream.KeyValueDelete
	case op == "PURGE", op == "" && (marker == "MaxAge" || marker == "Purge"):
		e.op = jetstream.KeyValuePurge
	}
	return e, nil
}

// liveFor reports whether this host follows bucket's live records: the
// bucket's stream republishes them, and the host watches the buckets it
// writes to (not a site's copy: the leaf topology).
func (c *Client) liveFor(bucket string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live[bucket] && c.cfg.Domain == "" && c.cfg.LocalDomain == ""
}

// followsLive reports whether this host follows b's bucket live: not a
// watch of its own key only (the hosts bucket), whose consumer delivers
// little.
func (c *Client) followsLive(b bucketWatch) bool { return !b.own && c.liveFor(b.bucket) }

// subscribeLives subscribes to the live subjects of the buckets this
// host follows live, before their watches start (what is stored after
// a subscription reaches it, what was stored before reaches the watch).
// A subscription the server refuses leaves that bucket to its consumer,
// for the Client's life; one it did not answer in time, for this
// generation.
func (c *Client) subscribeLives(nc *nats.Conn) map[string]*liveFeed {
	feeds := map[string]*liveFeed{}
	for _, b := range watchedBuckets {
		if !c.followsLive(b) {
			continue
		}
		f, err := subscribeLive(nc, b.bucket)
		if errors.Is(err, errLiveRefused) {
			c.log.Warn("fleet: following a bucket through a consumer of its own: the live subject is refused", "bucket", b.bucket, "err", err)
			c.mu.Lock()
			c.live[b.bucket] = false
			c.mu.Unlock()
		}
		if err != nil {
			continue
		}
		feeds[b.bucket] = f
	}
	return feeds
}

// goLive stops the consumers of the watches that have a live
// subscription, once their bucket is replayed: from here on the
// subscription delivers, after the last revision handled.
//
// Only a watch that delivered the stream's records up to x.base (its last
// sequence when the subscription was made) goes live: the subscription
// holds nothing of what came before. The servers place a host's consumer
// on any peer of the stream, and one still catching up (a server just
// restarted) counts what it holds: the consumer ends its replay short of
// x.base, and delivers the rest once its peer has it. Going live then
// lost those records for good (TestServerRestartResumes, under load: h2
// never got h3's 20 blocks). Such a watch stays on its consumer for this
// generation.
func (c *Client) goLive(w *watcher) {
	short := int32(0)
	for _, x := range w.watches {
		if x.live == nil {
			continue
		}
		c.mu.Lock()
		last := c.view.last[x.bucket]
		c.mu.Unlock()
		if last < x.base {
			c.log.Info("fleet: the bucket's replay ended short of the stream (its consumer's server is catching up); following it through the consumer",
				"bucket", x.bucket, "replayed", last, "stream", x.base)
			x.live.stop()
			x.live = nil
			short++
			continue
		}
		_ = x.kw.Stop()
		x.handled = last
	}
	c.st.short.Store(short)
}

// forwardLive forwards x's live records after x.handled, in the stream's
// order; a skipped sequence ends the generation (errGap). What the
// stream held when the subscription was made (x.base) the watch
// delivered, or it was gone (expired, deleted: a sequence the watch
// skips); what came after, the subscription holds from its next
// sequence on: the first record it holds past x.handled must be the
// next one, or it missed one (a partition that cut this host and its
// server off while the others wrote, a message dropped).
func (w *watcher) forwardLive(x *watch) {
	prev := x.handled
	for {
		var m *nats.Msg
		select {
		case m = <-x.live.ch:
		case <-w.ctx.Done():
			return
		}
		u := update{w: x, ok: true}
		e, err := parseLive(x.bucket, m.Header, m.Data)
		switch {
		case errors.Is(err, errOtherStream):
			continue
		case err != nil, e.rev > prev+1:
			u.gap = true
		case e.rev <= prev:
			continue // the watch delivered it (or what replaced it), or again after a leader changed
		default:
			prev, u.e = e.rev, e
		}
		select {
		case w.updates <- u:
		case <-w.ctx.Done():
			return
		}
		if u.gap {
			return
		}
	}
}

// stopFeeds ends the subscriptions no watch took.
func stopFeeds(feeds map[string]*liveFeed) {
	for _, f := range feeds {
		f.stop()
	}
}

// liveCount is how many watched buckets this host follows live: those it
// may, less those its last generation left on their consumer.
func (c *Client) liveCount() int {
	n := 0
	for _, b := range watchedBuckets {
		if c.followsLive(b) {
			n++
		}
	}
	return max(0, n-int(c.st.short.Load()))
}
