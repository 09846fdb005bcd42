package fleet

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketReport is one bucket as Setup left it.
type BucketReport struct {
	Bucket   string
	MaxBytes int64
	MaxAge   time.Duration // 0: none
	Replicas int
	Bytes    uint64 // in use
}

// SetupReport is what Setup did, and the account's room for it.
type SetupReport struct {
	Buckets []BucketReport
	// Reserved is what the buckets reserve of the account's file storage:
	// their MaxBytes times their replicas. AccountMax is the account's
	// max_file (-1: no limit).
	Reserved, AccountMax int64
}

// Setup creates the four buckets, or updates them, with the limits of a
// fleet of hosts hosts (BucketBytes; MaxAge fleet.max_timeout on blocks
// and lifts, fleet.correlate.window on sightings) and replicas replicas:
// the administrator's step, since hosts may create a bucket but not
// change one. It checks first that the account's max_file has room for
// them.
func (a *Admin) Setup(ctx context.Context, hosts, replicas int) (SetupReport, error) {
	l := BucketLimits{Hosts: hosts, Replicas: replicas, MaxTimeout: a.maxTimeout, Window: a.window}
	r := SetupReport{AccountMax: -1}
	for _, b := range Buckets {
		r.Reserved += BucketBytes(b, hosts) * int64(replicas)
	}
	ai, err := a.js.AccountInfo(ctx)
	if err != nil {
		return r, fmt.Errorf("fleet: account info: %w", err)
	}
	r.AccountMax = ai.Limits.MaxStore
	if r.AccountMax >= 0 && r.Reserved > r.AccountMax {
		return r, fmt.Errorf("fleet: the buckets of %d hosts at %d replicas need %d bytes of the account's max_file, which is %d: raise it (deploy/nats/accounts.conf)",
			hosts, replicas, r.Reserved, r.AccountMax)
	}
	for _, b := range Buckets {
		kc := BucketConfig(b, l)
		kv, err := a.js.CreateOrUpdateKeyValue(ctx, kc)
		if err != nil {
			return r, fmt.Errorf("fleet: bucket %s: %w", b, err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			return r, fmt.Errorf("fleet: bucket %s: %w", b, err)
		}
		r.Buckets = append(r.Buckets, BucketReport{Bucket: b, MaxBytes: kc.MaxBytes, MaxAge: kc.TTL, Replicas: replicas, Bytes: st.Bytes()})
	}
	return r, nil
}

// Record is a block record as the administrator lists it: the block and
// its creation on the servers.
type Record struct {
	Block
	Created time.Time
}

// Listing is what the fleet's buckets hold: every host's blocks and the
// lifts, by address; Unreadable counts the records that could not be read.
type Listing struct {
	Blocks     []Record
	Lifts      []Lift
	Unreadable int
}

// List reads the blocks and lifts buckets.
func (a *Admin) List(ctx context.Context) (Listing, error) {
	var out Listing
	err := a.each(ctx, BucketBlocks, func(host string, ad netip.Addr, e jetstream.KeyValueEntry) {
		b, err := decodeBlock(host, ad, e.Value())
		if err != nil {
			out.Unreadable++
			return
		}
		out.Blocks = append(out.Blocks, Record{Block: b, Created: e.Created()})
	})
	if err != nil {
		return out, err
	}
	err = a.each(ctx, BucketLifts, func(host string, ad netip.Addr, e jetstream.KeyValueEntry) {
		out.Lifts = append(out.Lifts, Lift{Addr: ad, By: host, At: e.Created(), Admin: host == AdminName})
	})
	slices.SortFunc(out.Blocks, func(x, y Record) int {
		if c := x.Addr.Compare(y.Addr); c != 0 {
			return c
		}
		return strings.Compare(x.Host, y.Host)
	})
	slices.SortFunc(out.Lifts, func(x, y Lift) int { return x.Addr.Compare(y.Addr) })
	return out, err
}

// each calls f with every current record of bucket (a <host>.<addr> key).
func (a *Admin) each(ctx context.Context, bucket string, f func(string, netip.Addr, jetstream.KeyValueEntry)) error {
	kv, err := a.js.KeyValue(ctx, bucket)
	if err != nil {
		return fmt.Errorf("fleet: bucket %s: %w", bucket, err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("fleet: read %s: %w", bucket, err)
	}
	defer w.Stop()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("fleet: read %s: the watcher closed", bucket)
			}
			if e == nil {
				return nil
			}
			if host, ad, err := ParseHostAddrKey(e.Key()); err == nil {
				f(host, ad, e)
			}
		case <-ctx.Done():
			return fmt.Errorf("fleet: read %s: %w", bucket, ctx.Err())
		}
	}
}
