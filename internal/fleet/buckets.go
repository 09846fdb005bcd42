package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The buckets' limits, enforced by the servers whatever a host writes:
// blocks and lifts live fleet.max_timeout at most (MaxAge: a record a
// compromised host writes with no TTL goes too), sightings the correlation
// window, and each bucket holds at most MaxBytes (new writes are refused
// beyond: DiscardNew). JetStream's limits are per bucket and per account,
// not per host: MaxBytes grows with the number of hosts the fleet is
// sized for (BucketBytes), and the account's max_file in deploy/nats
// bounds them all on the servers' disks.
//
// Hosts may create a missing bucket (with the limits of a fleet of
// DefaultFleetSize hosts) but never change one; the administrator's setup
// (Admin.Setup, "portsentry-nft fleet setup") creates or updates the four
// with the limits of the fleet's size. A host that binds to a bucket
// without limits says so once.

// DefaultFleetSize is the number of hosts the buckets are sized for when a
// host creates them, and by default in Admin.Setup.
const DefaultFleetSize = 8

// perHostBytes is what each host of the fleet adds to a bucket's MaxBytes:
// about 30,000 blocks of 64 ports (a block record takes 250-560 bytes on
// the servers' disks), 2,000 lifts, 8,000 sightings, its host record.
var perHostBytes = map[string]int64{
	BucketBlocks:    16 << 20,
	BucketLifts:     1 << 20,
	BucketSightings: 4 << 20,
	BucketHosts:     64 << 10,
}

// Buckets are the fleet's buckets, in the order they are made.
var Buckets = []string{BucketHosts, BucketLifts, BucketBlocks, BucketSightings}

// BucketBytes is the MaxBytes of bucket for a fleet of hosts hosts.
func BucketBytes(bucket string, hosts int) int64 { return int64(max(hosts, 1)) * perHostBytes[bucket] }

// BucketLimits are what a bucket's configuration takes from the fleet's:
// its size in hosts, the replicas, fleet.max_timeout and
// fleet.correlate.window.
type BucketLimits struct {
	Hosts, Replicas    int
	MaxTimeout, Window time.Duration
}

// BucketConfig is the configuration of bucket under l.
func BucketConfig(bucket string, l BucketLimits) jetstream.KeyValueConfig {
	kc := jetstream.KeyValueConfig{Bucket: bucket, History: 1, Replicas: l.Replicas, MaxValueSize: 16 << 10,
		MaxBytes: BucketBytes(bucket, l.Hosts), Storage: jetstream.FileStorage, LimitMarkerTTL: time.Minute}
	switch bucket {
	case BucketBlocks:
		kc.Description = "portsentry-nft: each host's blocks, key <host>.<address>, TTL the block's time left"
		kc.TTL = l.MaxTimeout
	case BucketLifts:
		kc.Description = "portsentry-nft: lifts, key <host>.<address>: admin's lift every host's block, a host's its own"
		kc.TTL = l.MaxTimeout
	case BucketSightings:
		kc.Description = "portsentry-nft: tripwire probes seen, key <address>.<host>, TTL correlate.window"
		kc.LimitMarkerTTL = time.Second // expired sightings must stop counting at once
		kc.TTL = l.Window
	case BucketHosts:
		kc.Description = "portsentry-nft: each host's own addresses, key <host>, as it claims them (they protect nothing)"
	}
	if bucket != BucketSightings {
		kc.RePublish = liveRePublish(bucket) // the hosts follow these live (live.go)
	}
	return kc
}

// ensureBuckets creates the buckets that do not exist (or binds to them).
func (c *Client) ensureBuckets(ctx context.Context) error {
	js, _, _ := c.conn()
	c.mu.Lock()
	ok := c.bucketsOK
	c.mu.Unlock()
	if ok {
		return nil
	}
	// Each request has a bound of its own: while a cluster has no leader,
	// requests go unanswered, and the next try is better than a long wait.
	created, live := map[string]time.Time{}, map[string]bool{}
	for _, name := range Buckets {
		s, err := c.bindBucket(ctx, js, name)
		if err != nil {
			return err
		}
		created[name], live[name] = s.CachedInfo().Created, isLive(name, s.CachedInfo().Config)
	}
	c.mu.Lock()
	c.live = live
	if c.local == nil {
		// The streams watched; a site's host watches its copies, whose
		// creation ensureCopy notes.
		c.created = created
	}
	c.bucketsOK = true
	c.mu.Unlock()
	c.pub.out.kick()
	return nil
}

// bindBucket binds to bucket's stream, or creates the bucket when it does
// not exist, and says once when it has no limits.
func (c *Client) bindBucket(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.Stream, error) {
	rctx, cancel := context.WithTimeout(ctx, apiTimeout)
	s, err := js.Stream(rctx, "KV_"+bucket)
	cancel()
	if err == nil {
		c.checkLimits(bucket, s.CachedInfo().Config)
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("bucket %s: %w", bucket, err)
	}
	l := BucketLimits{Hosts: DefaultFleetSize, Replicas: c.replicas, MaxTimeout: c.maxTimeout, Window: c.window}
	rctx, cancel = context.WithTimeout(ctx, apiTimeout)
	_, err = js.CreateKeyValue(rctx, BucketConfig(bucket, l))
	cancel()
	if err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
		return nil, fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	c.log.Info("fleet: created bucket", "bucket", bucket, "replicas", c.replicas, "max_bytes", BucketBytes(bucket, l.Hosts))
	rctx, cancel = context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	if s, err = js.Stream(rctx, "KV_"+bucket); err != nil {
		return nil, fmt.Errorf("bucket %s: %w", bucket, err)
	}
	return s, nil
}

// checkLimits logs, once per bucket, a bucket that the servers do not
// bound: any host could fill it, or keep its records for ever.
func (c *Client) checkLimits(bucket string, cfg jetstream.StreamConfig) {
	aged := bucket == BucketHosts || cfg.MaxAge > 0
	if cfg.MaxBytes > 0 && aged {
		return
	}
	c.mu.Lock()
	_, told := c.view.unbounded[bucket]
	c.view.unbounded[bucket] = struct{}{}
	c.mu.Unlock()
	if !told {
		c.log.Warn("fleet: a bucket without limits (max_bytes, max_age): any host may fill it; run portsentry-nft fleet setup as the administrator",
			"bucket", bucket, "max_bytes", cfg.MaxBytes, "max_age", cfg.MaxAge)
	}
}
