package fleet

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/nats-io/nats.go/jetstream"
)

// Lifts are records of BucketLifts: <host>.<addr>, written at the servers'
// time At. Whose they are decides what they reach, and only the key says
// whose they are (the servers' permissions vouch for it):
//
//   - the administrator's (key host AdminName, which only the
//     administrator's NATS user may write): every host's block of addr
//     that began before it, whatever its origin; every host purges its
//     own record of addr older than the lift;
//   - a host's (any other key host): that host's own block of addr only.
//     Every receiver drops that host's record from its view, and lifts
//     its element only once no record (another host's, or its own) holds
//     the address any longer. A compromised host can lift nothing but
//     what it published itself.

// applyLift applies a record of the lifts bucket.
func (c *Client) applyLift(e jetstream.KeyValueEntry, del, initial bool) error {
	host, a, err := ParseHostAddrKey(e.Key())
	if err != nil {
		return err
	}
	if del {
		c.mu.Lock()
		c.view.dropLift(host, a)
		c.mu.Unlock()
		return nil
	}
	var r liftRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return fmt.Errorf("lift record: %w", err)
	}
	l := Lift{Addr: a, By: host, At: e.Created(), Admin: host == AdminName}
	if l.Admin {
		c.adminLift(l)
	} else {
		c.hostLift(l, initial)
	}
	return nil
}

// adminLift applies the administrator's lift: every host's block of
// l.Addr that began before it ends here, and this host purges its own
// record older than it.
func (c *Client) adminLift(l Lift) {
	c.mu.Lock()
	if old, ok := c.view.lifts[l.Addr]; !ok || old.At.Before(l.At) {
		c.view.lifts[l.Addr] = l
		c.view.expireAt(l.At.Add(c.maxTimeout), expLift, l.Addr, AdminName)
	}
	c.view.release(l.Addr, func(h held) bool { return h.created < l.At.UnixNano() })
	c.ballots.drop(l.Addr, func(v vote) bool { return v.created < l.At.UnixNano() })
	c.view.undeliver(l.Addr)
	o, own := c.view.own[l.Addr]
	c.mu.Unlock()
	if own && o.created.Before(l.At) {
		c.purgeOwn(l.Addr)
	}
	c.st.lifted.Add(1)
	c.log.Info("fleet: lifted fleet-wide by the fleet's administrator", "addr", l.Addr)
	c.opts.Sink.FleetUnblock(l)
}

// hostLift applies host l.By's lift of its own block of l.Addr: that
// host's record older than the lift ends here, and the Sink hears of the
// lift once no record holds the address. One read while replaying waits
// until the blocks are replayed too (passPendingLifts).
func (c *Client) hostLift(l Lift, initial bool) {
	k := hostAddr{l.By, l.Addr}
	c.mu.Lock()
	if at, ok := c.view.hostLifts[k]; !ok || at.Before(l.At) {
		c.view.hostLifts[k] = l.At
		c.view.expireAt(l.At.Add(c.maxTimeout), expLift, l.Addr, l.By)
	}
	if l.By == c.name {
		c.mu.Unlock()
		return // Unblock: lifted here already, own record purged
	}
	c.view.release(l.Addr, func(h held) bool { return h.host == l.By && h.created < l.At.UnixNano() })
	c.ballots.drop(l.Addr, func(v vote) bool { return v.host == l.By && v.created < l.At.UnixNano() })
	if initial {
		c.view.pendingLifts = append(c.view.pendingLifts, l)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.liftIfFree(l)
}

// passPendingLifts passes on the hosts' lifts read while replaying.
func (c *Client) passPendingLifts() {
	c.mu.Lock()
	ls := c.view.pendingLifts
	c.view.pendingLifts = nil
	c.mu.Unlock()
	for _, l := range ls {
		c.liftIfFree(l)
	}
}

// liftIfFree passes a host's lift to the Sink unless a record of the
// fleet still holds its address here.
func (c *Client) liftIfFree(l Lift) {
	c.mu.Lock()
	held := c.view.holds(l.Addr, c.now())
	if !held {
		c.view.undeliver(l.Addr)
	}
	c.mu.Unlock()
	if held {
		c.log.Debug("fleet: a host lifted its block; other records still hold the address", "addr", l.Addr, "by", l.By)
		return
	}
	c.st.lifted.Add(1)
	c.log.Info("fleet: a host lifted its block", "addr", l.Addr, "by", l.By)
	c.opts.Sink.FleetUnblock(l)
}

// purgeOwn queues the purge of this host's block record of a.
func (c *Client) purgeOwn(a netip.Addr) {
	s := Subject(BucketBlocks, HostAddrKey(c.name, a))
	c.pub.out.remove(s)
	c.pub.out.put(&op{kind: opPurge, subject: s, addr: a, header: purgeHeader(), ttl: purgeMarkerTTL,
		expires: c.now().Add(c.maxTimeout)})
}
