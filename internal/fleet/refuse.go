package fleet

import (
	"fmt"
	"net/netip"
	"time"
)

// What a receiver refuses (doc.go, "What a receiver believes"): the
// checks of an address and of a record's expiry, and the refusals' count
// and log.

// blockable says whether the fleet may block a: a global address that
// Protected does not protect (the fleet's own hosts and servers among
// them, as this host's configuration lists them; never as a host's record
// claims). With from (a received record's key host), a refusal is counted
// and logged (refuse).
func (c *Client) blockable(a netip.Addr, from string) bool {
	why := ""
	switch {
	case !a.IsValid():
		why = "invalid address"
	case !global(a):
		why = "not a global address"
	case c.opts.Protected != nil:
		if w, ok := c.opts.Protected(a); ok {
			why = "protected: " + w
		}
	}
	if why == "" {
		return true
	}
	if from != "" {
		c.refuse(from, a, why)
	}
	return false
}

// refusalLines bounds the refusal lines logged a second: a host writing
// records to be refused must not flood the log.
const refusalLines = 10

// refuse counts a received record of a from host that is not enforced
// here, and logs it once per address, refusalLines a second at most (the
// next line says how many were not logged).
func (c *Client) refuse(host string, a netip.Addr, why string) {
	c.st.refused.Add(1)
	now := c.now()
	c.mu.Lock()
	first := c.view.refusedOnce(a)
	ok, unlogged := false, 0
	if first {
		ok, unlogged = c.view.refusalLog.allow(now)
	}
	c.mu.Unlock()
	if ok {
		c.log.Warn("fleet: refused a fleet block", "addr", a, "host", host, "why", why, "unlogged_before", unlogged)
	}
}

// lineBudget allows refusalLines lines a second and counts the others.
type lineBudget struct {
	start    time.Time
	n        int
	unlogged int
}

// allow reports whether a line may be logged at now, and how many were
// not since the last one that was.
func (b *lineBudget) allow(now time.Time) (bool, int) {
	if now.Sub(b.start) >= time.Second {
		b.start, b.n = now, 0
	}
	if b.n >= refusalLines {
		b.unlogged++
		return false, 0
	}
	b.n++
	u := b.unlogged
	b.unlogged = 0
	return true, u
}

// global reports whether a may be blocked at all: not loopback,
// link-local, multicast, unspecified, or IPv4's broadcast or 0.0.0.0/8.
func global(a netip.Addr) bool {
	a = a.Unmap()
	if a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() ||
		a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	if a.Is4() {
		b := a.As4()
		return b[0] != 0 && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	return true
}

// capped is e capped at now + max_timeout.
func (c *Client) capped(e, now time.Time) time.Time {
	if m := now.Add(c.maxTimeout); e.After(m) {
		return m
	}
	return e
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
