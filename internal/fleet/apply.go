package fleet

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// apply applies one entry of x's bucket, once per revision (a stateless
// bucket's, whenever delivered).
func (c *Client) apply(x *watch, e jetstream.KeyValueEntry, initial bool) {
	c.st.records.Add(1)
	del := e.Operation() != jetstream.KeyValuePut
	c.mu.Lock()
	c.view.last[x.bucket] = max(c.view.last[x.bucket], e.Revision())
	// The revision of a record held, to skip it when delivered again; a
	// deleted key's is forgotten (applying a deletion twice is harmless).
	// A stateless bucket's records are applied whenever delivered.
	fresh := x.stateless || c.view.handle(x.bucket, e.Key(), e.Revision(), del)
	c.mu.Unlock()
	if !fresh {
		return
	}
	if err := x.apply(c, e, del, initial); err != nil {
		c.st.bad.Add(1)
		c.log.Warn("fleet: unreadable record", "bucket", x.bucket, "key", e.Key(), "err", err)
	}
}

// vanished applies the loss of a key of x's bucket that is gone, as if
// deleted.
func (c *Client) vanished(x *watch, key string) {
	c.mu.Lock()
	c.view.dropRev(x.bucket, key)
	x.gone(c, key)
	c.mu.Unlock()
}

// hostGone, liftGone and blockGone forget a key of their bucket that is
// gone; called with c.mu held.
func (c *Client) hostGone(key string) { delete(c.view.hosts, key) }

func (c *Client) liftGone(key string) {
	if host, a, err := ParseHostAddrKey(key); err == nil {
		c.view.dropLift(host, a)
	}
}

func (c *Client) blockGone(key string) {
	if host, a, err := ParseHostAddrKey(key); err == nil {
		c.dropBlockLocked(host, a)
	}
}

func (c *Client) dropBlockLocked(host string, a netip.Addr) {
	c.ballots.drop(a, func(v vote) bool { return v.host == host })
	if host == c.name {
		delete(c.view.own, a)
		return
	}
	c.view.release(a, func(h held) bool { return h.host == host })
}

// applyHost applies this host's own record of the hosts bucket (the only
// key its watch reads): whether it is there as it should be
// (hostRecordMissing).
func (c *Client) applyHost(e jetstream.KeyValueEntry, del, _ bool) error {
	host := e.Key()
	if !validHost(host) {
		return fmt.Errorf("%q is not a fleet host name", host)
	}
	if del {
		c.mu.Lock()
		delete(c.view.hosts, host)
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
	c.view.hosts[host] = as
	c.mu.Unlock()
	return nil
}

// unlistedOwn returns, the first time only, this host's global addresses
// that its fleet.hosts does not cover (at most 8): the hint an
// administrator needs when the list misses a host (it should be the same
// on every host, so the others miss it too, and may block it).
func (c *Client) unlistedOwn(as []netip.Addr) []netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, told := c.view.unlisted[c.name]; told {
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
		c.view.unlisted[c.name] = struct{}{}
	}
	return out
}

// applyBlock applies a record of the blocks bucket.
func (c *Client) applyBlock(e jetstream.KeyValueEntry, del, initial bool) error {
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
	b, err := decodeBlock(host, a, e.Value())
	if host == c.name {
		c.own(a, created, b.Expires)
		return nil
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	lifted := c.view.liftedAt(host, a, created)
	c.mu.Unlock()
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
		c.vote(b, created)
		return nil
	}
	c.enforce(b, created)
	return nil
}

// own holds this host's own record of a, created at created, until exp
// (if it can be read; else as long as the bucket keeps it), and purges it
// if a lift reached it.
func (c *Client) own(a netip.Addr, created, exp time.Time) {
	if end := created.Add(c.maxTimeout); exp.IsZero() || exp.After(end) {
		exp = end
	}
	c.mu.Lock()
	lifted := c.view.liftedAt(c.name, a, created)
	c.view.own[a] = ownRecord{created: created, expires: exp.UnixNano()}
	c.view.expireAt(exp, expOwn, a, "")
	c.mu.Unlock()
	if lifted {
		c.purgeOwn(a)
	}
}

// enforce holds b, another host's record created at created, and passes it
// to the Sink.
func (c *Client) enforce(b Block, created time.Time) {
	c.mu.Lock()
	// The Sink's record shares the interned name, not the key's bytes.
	b.Host = c.view.hold(b.Addr, held{host: b.Host, expires: b.Expires.UnixNano(), created: created.UnixNano()})
	c.mu.Unlock()
	c.deliver(b)
}

// deliver passes b to the Sink unless a block of its address that lasts as
// long was passed already.
func (c *Client) deliver(b Block) {
	c.mu.Lock()
	prev := c.view.deliveredAt(b.Addr)
	extends := b.Expires.Sub(prev) >= time.Second
	if extends {
		c.view.setDelivered(b.Addr, b.Expires)
	}
	c.mu.Unlock()
	if !extends {
		return
	}
	c.st.delivered.Add(1)
	c.opts.Sink.FleetBlock(b)
}

func (c *Client) sweep() {
	now := c.now()
	c.mu.Lock()
	c.view.sweep(now)
	c.tally.expire(now.UnixNano())
	c.tallied()
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
