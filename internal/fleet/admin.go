package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// Admin acts as the fleet's administrator, from an administrator's
// machine ("portsentry-nft fleet"): one connection with the
// administrator's credentials, which are never deployed on a host, and no
// daemon. What it writes is under the key host AdminName, which only the
// administrator's NATS user may write: the records every host trusts as
// the administrator's (Block.Admin, Lift.Admin).
type Admin struct {
	nc         *nats.Conn
	js         jetstream.JetStream
	maxTimeout time.Duration
	window     time.Duration
	now        func() time.Time
}

// DialAdmin connects to the fleet's servers with cfg, the fleet section of
// the administrator's file (config.LoadFleetAdmin: name admin); opts are
// added to the connection's options (tests: an in-process server).
func DialAdmin(cfg config.Fleet, opts ...nats.Option) (*Admin, error) {
	if !cfg.Enabled() {
		return nil, errors.New("fleet: no servers configured")
	}
	if cfg.Name != AdminName {
		return nil, fmt.Errorf("fleet: the administrator's name is %s, not %q", AdminName, cfg.Name)
	}
	auth, err := authOptions(cfg)
	if err != nil {
		return nil, err
	}
	all := append([]nats.Option{nats.Name("portsentry-nft fleet administrator"), nats.Timeout(10 * time.Second),
		nats.CustomInboxPrefix("_INBOX_" + AdminName)}, auth...)
	nc, err := nats.Connect(strings.Join(cfg.Servers, ","), append(all, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("fleet: connect: %w", err)
	}
	js, err := newJS(nc, cfg.Domain, jetstream.WithPublishAsyncMaxPending(batchSize), jetstream.WithPublishAsyncTimeout(ackTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("fleet: jetstream: %w", err)
	}
	a := &Admin{nc: nc, js: js, maxTimeout: time.Duration(cfg.MaxTimeout), window: time.Duration(cfg.Correlate.Window), now: time.Now}
	if a.maxTimeout <= 0 {
		a.maxTimeout = config.DefaultFleetMaxTimeout
	}
	if a.window <= 0 {
		a.window = config.DefaultFleetCorrelateWindow
	}
	return a, nil
}

// Close closes the connection.
func (a *Admin) Close() { a.nc.Close() }

// Block blocks addrs on every host for timeout (at most fleet.max_timeout:
// the hosts refuse a record that claims more), origin manual, evidence
// admin, with reason. The hosts' own guard rails still apply: a host does
// not enforce the block of an address it protects. It returns once the
// servers have acknowledged every record.
func (a *Admin) Block(ctx context.Context, addrs []netip.Addr, timeout time.Duration, reason string) error {
	timeout = min(timeout, a.maxTimeout)
	if timeout < time.Second {
		return fmt.Errorf("fleet: a block of %s is too short (1s at least)", timeout)
	}
	now := a.now()
	var ws []write
	for _, ad := range addrs {
		ad = ad.Unmap()
		if !global(ad) {
			return fmt.Errorf("fleet: %s is not an address the fleet blocks (loopback, link-local, multicast or unspecified)", ad)
		}
		rec := newBlockRecord(ad, now.Add(timeout), Block{Origin: OriginManual, Evidence: EvidenceAdmin, Reason: reason})
		ws = append(ws, write{m: &nats.Msg{Subject: Subject(BucketBlocks, HostAddrKey(AdminName, ad)), Data: marshal(rec)}, ttl: timeout})
	}
	return publishAll(ctx, a.js, ws)
}

// Unblock lifts addrs on every host: each host's block that began before
// the lift ends, whatever its origin and whichever host published it, and
// each host purges its own record; the administrator's own block record
// of each is purged.
func (a *Admin) Unblock(ctx context.Context, addrs []netip.Addr) error {
	now := a.now()
	var lifts, purges []write
	for _, ad := range addrs {
		ad = ad.Unmap()
		if !ad.IsValid() {
			return errors.New("fleet: an invalid address")
		}
		lifts = append(lifts, write{m: &nats.Msg{Subject: Subject(BucketLifts, HostAddrKey(AdminName, ad)),
			Data: marshal(liftRecord{Addr: ad.String(), By: AdminName, At: now.UTC()})}, ttl: a.maxTimeout})
		purges = append(purges, write{m: &nats.Msg{Subject: Subject(BucketBlocks, HostAddrKey(AdminName, ad)), Header: purgeHeader()}, ttl: purgeMarkerTTL})
	}
	// The lifts are what every host reads; the administrator's own block
	// records they reach are purged after, best effort: a purge the full
	// blocks bucket refuses leaves a record the lift already reaches.
	if err := publishAll(ctx, a.js, lifts); err != nil {
		return err
	}
	if err := publishAll(ctx, a.js, purges); err != nil && !bucketFull(err) {
		return err
	}
	return nil
}

// bucketFull reports whether err is the servers' refusal of a write beyond
// a bucket's max_bytes.
func bucketFull(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && strings.Contains(apiErr.Description, "maximum bytes exceeded")
}

// write is one record to publish, with its TTL.
type write struct {
	m   *nats.Msg
	ttl time.Duration
}

// publishAll publishes ws asynchronously, batchSize at a time, and waits
// for every acknowledgement; the first failure ends it.
func publishAll(ctx context.Context, js jetstream.JetStream, ws []write) error {
	for len(ws) > 0 {
		n := min(len(ws), batchSize)
		futs := make([]jetstream.PubAckFuture, 0, n)
		for _, w := range ws[:n] {
			ttl := (w.ttl + time.Second - 1).Truncate(time.Second)
			f, err := js.PublishMsgAsync(w.m, jetstream.WithMsgTTL(max(ttl, time.Second)))
			if err != nil {
				return fmt.Errorf("fleet: publish %s: %w", w.m.Subject, err)
			}
			futs = append(futs, f)
		}
		for _, f := range futs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return fmt.Errorf("fleet: publish %s: %w", f.Msg().Subject, err)
			case <-ctx.Done():
				return fmt.Errorf("fleet: waiting for the servers: %w", ctx.Err())
			}
		}
		ws = ws[n:]
	}
	return nil
}
