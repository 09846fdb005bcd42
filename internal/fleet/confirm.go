package fleet

import (
	"context"
	"fmt"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// A correlated block (origin correlate) says that K hosts saw its address:
// a claim any one host can make. Each receiver counts the hosts itself
// before it enforces one, from the per-host sighting keys
// $KV.portsentry_sightings.<addr>.*, which each host writes under its own
// identity (sightingHosts: one stream info request, as the publisher
// counts), and refuses the record when fewer than fleet.correlate.hosts
// hosts saw the address. A compromised host adds one host to a count, its
// own, never K.
//
// The counts run on a goroutine of their own (confirmer), off the
// watcher's, with a bounded queue and a bounded share of it per publishing
// host: a host flooding the bucket with correlated records gets its own
// refused, not the others'.

const (
	// confirmQueue bounds the correlated records waiting for their count.
	confirmQueue = 1024
	// hostConfirms bounds one publishing host's records in the queue.
	hostConfirms = confirmQueue / 4
	// confirmTries is how often a count that failed (no answer in time) is
	// tried before the record is refused.
	confirmTries = 3
)

// confirmReq is a correlated record waiting for its count: the record,
// its key and revision (it is enforced only if they are still current),
// and its creation on the servers.
type confirmReq struct {
	b       Block
	key     string
	rev     uint64
	created time.Time
}

// confirmRes is a count: the hosts whose sightings of the address exist.
type confirmRes struct {
	confirmReq
	hosts []string
	err   error
}

// confirmHosts is how many distinct hosts must have seen an address for
// this host to enforce a correlated block of it: fleet.correlate.hosts, or
// its default where this host's own correlation is off.
func (c *Client) confirmHosts() int {
	if k := c.cfg.Correlate.Hosts; k > 0 {
		return k
	}
	return config.DefaultFleetCorrelateHosts
}

// askConfirm queues r for its count, within the queue's bound and the
// publishing host's share of it; a record that does not fit is refused.
func (c *Client) askConfirm(r confirmReq) {
	host := r.b.Host
	c.mu.Lock()
	room := c.view.confirming[host] < hostConfirms
	if room {
		c.view.confirming[host]++
	}
	c.mu.Unlock()
	if room {
		select {
		case c.confirmIn <- r:
			return
		default:
			c.doneConfirming(host)
		}
	}
	c.refuse(host, r.b.Addr, "a correlated block not counted here: too many wait for their count")
}

func (c *Client) doneConfirming(host string) {
	c.mu.Lock()
	if c.view.confirming[host]--; c.view.confirming[host] <= 0 {
		delete(c.view.confirming, host)
	}
	c.mu.Unlock()
}

// confirmer counts the sightings of each queued record's address, and
// hands the counts to the watcher's goroutine (confirmed).
func (c *Client) confirmer(ctx context.Context) {
	for {
		var r confirmReq
		select {
		case <-ctx.Done():
			return
		case r = <-c.confirmIn:
		}
		res := confirmRes{confirmReq: r}
		for try := 1; ; try++ {
			res.hosts, res.err = c.sightingHosts(ctx, r.b.Addr)
			if res.err == nil || try == confirmTries || ctx.Err() != nil {
				break
			}
			sleep(ctx, time.Duration(try)*250*time.Millisecond)
		}
		select {
		case c.confirmOut <- res:
		case <-ctx.Done():
			return
		}
	}
}

// confirmed enforces a counted record whose count reaches confirmHosts,
// Corroborated and naming the hosts counted here, if the record is still
// current (not replaced, deleted or lifted meanwhile); it refuses the
// others. Called on the watcher's goroutine.
func (c *Client) confirmed(r confirmRes) {
	c.doneConfirming(r.b.Host)
	c.mu.Lock()
	current := c.view.rev(BucketBlocks, r.key) == r.rev && !c.view.liftedAt(r.b.Host, r.b.Addr, r.created)
	c.mu.Unlock()
	if !current || !r.b.Expires.After(c.now()) {
		return
	}
	need := c.confirmHosts()
	switch {
	case r.err != nil:
		c.refuse(r.b.Host, r.b.Addr, fmt.Sprintf("a correlated block whose sightings could not be counted here: %v", r.err))
	case len(r.hosts) < need:
		c.refuse(r.b.Host, r.b.Addr, fmt.Sprintf("a correlated block not confirmed here: the sightings name %d hosts %v, fewer than %d",
			len(r.hosts), r.hosts, need))
	default:
		r.b.Corroborated, r.b.Seen = true, r.hosts
		c.enforce(r.b, r.created)
	}
}
