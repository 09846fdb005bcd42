package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Leaf nodes (deploy/nats/leaf): the buckets live in the hub cluster's
// JetStream domain (fleet.domain); each site runs a leaf server with a
// domain of its own (fleet.local_domain) that holds a copy of the watched
// buckets, a mirror of the hub's, and the site's hosts connect to it. The
// hub then delivers each record once per site, and the hosts' watches
// are served by their leaf, which keeps serving what it holds while the
// site is cut off from the hub.
//
//   - Writes go to the hub: a leaf server does not pass $KV.> between
//     domains, so they are published to $JS.<domain>.API.$KV.<bucket>.<key>,
//     which the hub's servers map to $KV.<bucket>.<key> (domainJS); the
//     keys, and so the permissions per host, are the same.
//   - Binding and creating the buckets, and counting sightings, go to the
//     hub's JetStream API ($JS.<domain>.API).
//   - Watches read the local copy ($JS.<local_domain>.API). A mirror keeps
//     the hub's sequence numbers, so revisions are the same on every site.
//     It cannot make subject delete markers of its own (the servers refuse
//     them on a mirror): an expiry reaches the watchers as the hub's
//     marker, mirrored, while the hub is reachable; cut off, the copy
//     drops expired records by their Nats-TTL without a marker, and the
//     host expires its blocks itself (view.sweep: each record's expiry).
//
// A host creates a missing copy on its leaf (as it creates a missing
// bucket on the hub), with the hub bucket's limits.

// newJS is the JetStream context of domain ("" the servers' own): the
// one the buckets live in.
func newJS(nc *nats.Conn, domain string, opts ...jetstream.JetStreamOpt) (jetstream.JetStream, error) {
	if domain == "" {
		return jetstream.New(nc, opts...)
	}
	js, err := jetstream.NewWithDomain(nc, domain, opts...)
	if err != nil {
		return nil, err
	}
	return domainJS{JetStream: js, prefix: "$JS." + domain + ".API."}, nil
}

// domainJS publishes the records to their bucket in another domain: the
// subject $KV.<bucket>.<key> with the domain's API prefix in front.
type domainJS struct {
	jetstream.JetStream
	prefix string
}

func (d domainJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return d.JetStream.PublishMsg(ctx, d.toDomain(m), opts...)
}

func (d domainJS) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	return d.JetStream.PublishMsgAsync(d.toDomain(m), opts...)
}

func (d domainJS) toDomain(m *nats.Msg) *nats.Msg {
	return &nats.Msg{Subject: d.prefix + m.Subject, Reply: m.Reply, Header: m.Header, Data: m.Data}
}

// watchJS is the JetStream context the watches read: the leaf's, whose
// copies of the watched buckets it makes sure of, or the buckets' own.
func (c *Client) watchJS(ctx context.Context) (jetstream.JetStream, error) {
	c.mu.Lock()
	hub, local := c.js, c.local
	c.mu.Unlock()
	if local == nil {
		return hub, nil
	}
	for _, b := range c.watched() {
		err := c.ensureCopy(ctx, hub, local, b.bucket)
		switch {
		case err != nil && b.optional && ctx.Err() == nil:
			c.sightingsOff(err)
		case err != nil:
			return nil, err
		}
	}
	return local, nil
}

// ensureCopy makes sure the leaf holds a copy of bucket: a mirror of the
// hub's, made with the hub bucket's limits when missing.
func (c *Client) ensureCopy(ctx context.Context, hub, local jetstream.JetStream, bucket string) error {
	name := "KV_" + bucket
	rctx, cancel := context.WithTimeout(ctx, apiTimeout)
	s, err := local.Stream(rctx, name)
	cancel()
	if err == nil {
		if s.CachedInfo().Config.Mirror == nil {
			return fmt.Errorf("the bucket %s in domain %s is not a copy of the hub's: delete it, or leave fleet.local_domain unset", bucket, c.cfg.LocalDomain)
		}
		c.noteCreated(bucket, s.CachedInfo().Created)
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("copy of %s in domain %s: %w", bucket, c.cfg.LocalDomain, err)
	}
	rctx, cancel = context.WithTimeout(ctx, apiTimeout)
	hs, err := hub.Stream(rctx, name)
	cancel()
	if err != nil {
		return fmt.Errorf("bucket %s in domain %s: %w", bucket, c.cfg.Domain, err)
	}
	rctx, cancel = context.WithTimeout(ctx, apiTimeout)
	ls, err := local.CreateStream(rctx, CopyConfig(hs.CachedInfo().Config, c.cfg.Domain))
	cancel()
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("create the copy of %s in domain %s: %w", bucket, c.cfg.LocalDomain, err)
	}
	if err == nil {
		c.noteCreated(bucket, ls.CachedInfo().Created)
	}
	c.log.Info("fleet: created the site's copy of a bucket", "bucket", bucket, "domain", c.cfg.LocalDomain, "of", c.cfg.Domain)
	return nil
}

// CopyConfig is the configuration of a leaf's copy of the bucket whose
// stream has configuration hub, in domain: a mirror with the same name,
// limits and history on one server, whose records expire by their own
// TTL (AllowMsgTTL) but which makes no markers (the servers forbid them on
// a mirror), and which drops its oldest record rather than stop copying
// when full.
func CopyConfig(hub jetstream.StreamConfig, domain string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              hub.Name,
		Description:       "portsentry-nft: this site's copy of the hub's bucket (" + domain + ")",
		Mirror:            &jetstream.StreamSource{Name: hub.Name, Domain: domain},
		MirrorDirect:      true,
		AllowDirect:       true,
		MaxMsgsPerSubject: hub.MaxMsgsPerSubject,
		MaxBytes:          hub.MaxBytes,
		MaxAge:            hub.MaxAge,
		MaxMsgSize:        hub.MaxMsgSize,
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		Storage:           jetstream.FileStorage,
		Replicas:          1,
		Discard:           jetstream.DiscardOld,
		AllowRollup:       true,
		DenyDelete:        true,
		AllowMsgTTL:       true,
	}
}

// watchWithoutHub decides, when the hub's buckets could not be bound
// (err), whether to watch the leaf's copies all the same: with a leaf
// (fleet.local_domain), a host that starts while its site is cut off from
// the hub reads what its site's copy holds, and binds the hub's buckets
// in the background, for its writes, until it can (bindHub). The outbox
// keeps the writes meanwhile.
func (c *Client) watchWithoutHub(ctx context.Context, err error) bool {
	c.mu.Lock()
	leaf := c.local != nil
	start := leaf && !c.binding
	c.binding = c.binding || start
	c.mu.Unlock()
	if !leaf {
		return false
	}
	c.log.Warn("fleet: the hub's buckets cannot be bound: watching the site's copies, writes wait", "err", err)
	if start {
		go c.bindHub(ctx)
	}
	return true
}

// bindHub retries binding the hub's buckets until it can, or ctx is done,
// at most every 10 s once it has failed a few times (a hub that answers
// but refuses costs it four requests a try).
func (c *Client) bindHub(ctx context.Context) {
	defer func() {
		c.mu.Lock()
		c.binding = false
		c.mu.Unlock()
	}()
	bo := newBackoff(time.Second, 10*time.Second)
	for ctx.Err() == nil {
		sleep(ctx, bo.next())
		if err := c.ensureBuckets(ctx); err == nil {
			c.log.Info("fleet: bound the hub's buckets")
			return
		}
	}
}

// noteCreated notes when the stream this host watches of bucket was made,
// the first time it binds it: a later generation resumes on it only if it
// is still that stream (resumable), which it then notes anew.
func (c *Client) noteCreated(bucket string, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.created == nil {
		c.created = map[string]time.Time{}
	}
	if _, ok := c.created[bucket]; !ok {
		c.created[bucket] = t
	}
}
