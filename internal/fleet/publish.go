package fleet

import (
	"net/netip"
	"slices"
	"time"
)

// Publish queues b, a block this host decided, for the fleet; it never
// waits (the outbox is bounded: when full, b is dropped and counted).
// Blocks taken from the fleet (Origin "fleet"), of protected
// (Options.Protected) and non-global addresses, and of less than a second
// left are not published. A block is published for fleet.max_timeout at
// most (the receivers refuse a record that claims to last longer), with
// b.Evidence (EvidenceForgeable when empty).
func (c *Client) Publish(b Block) {
	now := c.now()
	a := b.Addr.Unmap()
	if b.Origin == OriginFleet || !b.Expires.After(now.Add(time.Second)) || !c.blockable(a, "") {
		return
	}
	exp := c.capped(b.Expires, now)
	c.pub.out.put(&op{kind: opBlock, subject: Subject(BucketBlocks, HostAddrKey(c.name, a)), addr: a,
		data: marshal(newBlockRecord(a, exp, b)), expires: exp})
}

// Unblock lifts this host's block of addr on every host, as an
// administrator asked on this host: its block record purged, and a lift
// under its own name, which reaches this host's records only (a receiver
// lifts its element once no other record holds the address). Other
// hosts' blocks of addr stay: a fleet-wide lift is the fleet
// administrator's (Admin.Unblock, "portsentry-nft fleet unblock"). The
// caller has lifted it here already; this host's Sink is not called for
// it.
func (c *Client) Unblock(addr netip.Addr) {
	a := addr.Unmap()
	now := c.now()
	own := Subject(BucketBlocks, HostAddrKey(c.name, a))
	c.pub.out.remove(own)
	c.pub.out.put(&op{kind: opPurge, subject: own, addr: a, header: purgeHeader(), ttl: purgeMarkerTTL,
		expires: now.Add(c.maxTimeout)})
	c.pub.out.put(&op{kind: opLift, subject: Subject(BucketLifts, HostAddrKey(c.name, a)), addr: a,
		data: marshal(liftRecord{Addr: a.String(), By: c.name, At: now.UTC()}), expires: now.Add(c.maxTimeout)})
	c.mu.Lock()
	c.view.forget(a)
	c.mu.Unlock()
	c.log.Info("fleet: lifted this host's block on every host", "addr", a)
}

// SetOwnAddresses publishes this host's addresses in its record of the
// hosts bucket, for people and logs to read. They make no address immune
// anywhere: a receiver's fleet hosts are its own fleet.hosts (a host's
// claim about itself is what a compromised host would forge). The daemon
// calls it at start and when they change.
func (c *Client) SetOwnAddresses(addrs []netip.Addr) {
	as := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		as = append(as, a.Unmap().WithZone(""))
	}
	slices.SortFunc(as, netip.Addr.Compare)
	if out := c.unlistedOwn(as); len(out) > 0 {
		c.log.Info("fleet: this host's addresses are not in fleet.hosts; the other hosts do not protect them if their list is the same (list the fleet's hosts in fleet.hosts, on every host)",
			"addrs", out)
	}
	as = slices.Compact(as)
	c.mu.Lock()
	same := slices.Equal(as, c.ownAddrs)
	c.ownAddrs = as
	c.mu.Unlock()
	if !same {
		c.putHost()
	}
}

func (c *Client) putHost() {
	c.mu.Lock()
	rec := hostRecord{Addrs: []string{}, Updated: c.now().UTC()}
	for _, a := range c.ownAddrs {
		rec.Addrs = append(rec.Addrs, a.String())
	}
	c.mu.Unlock()
	c.pub.out.put(&op{kind: opHost, subject: Subject(BucketHosts, c.name), data: marshal(rec)})
}

// Sighting reports a tripwire probe from addr seen here, that did not (or
// not yet) make a block: one write to the sightings bucket, which the
// counting hosts watch (correlate.go). When fleet.correlate.hosts
// distinct hosts saw addr within fleet.correlate.window, every host blocks
// it with Origin "correlate". It never waits; a host publishes at most one sighting of an
// address per quarter window.
func (c *Client) Sighting(addr netip.Addr) {
	if c.cfg.Correlate.Hosts == 0 {
		return
	}
	a := addr.Unmap()
	if !c.blockable(a, "") {
		return
	}
	now := c.now()
	c.mu.Lock()
	blocked := c.view.deliveredAt(a).After(now)
	recent := now.Sub(c.lastSeen[a]) < c.window/4
	if !blocked && !recent {
		if len(c.lastSeen) >= 100000 {
			clear(c.lastSeen)
		}
		c.lastSeen[a] = now
	}
	c.mu.Unlock()
	if blocked || recent {
		return
	}
	c.pub.out.put(&op{kind: opSighting, subject: Subject(BucketSightings, SightingKey(a, c.name)), addr: a,
		data: marshal(sightingRecord{At: now.UTC()}), expires: now.Add(c.window)})
}
