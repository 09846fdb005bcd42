package fleet

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Correlation: a host whose tripwire probe did not block writes a
// sighting, $KV.portsentry_sightings.<addr>.<host>, under its own identity
// (a host can write no other host's). The hosts that count the sightings
// watch that bucket, as they watch the others (watcher.go), and count in
// memory (the tally): no request to the servers per sighting, nor per
// correlated block.
//
//   - fleet.correlate.counters empty (a small fleet): every host with
//     correlation on counts, and enforces its own count when K
//     (fleet.correlate.hosts) distinct hosts saw an address within the
//     window. Nothing is published; a correlated record from any host is
//     refused.
//   - Counters named (a large fleet: each sighting reaches every counting
//     host): only they count; each that counts K publishes a correlated
//     block under its own name, and every host enforces one once a
//     majority of the counters hold a record of the address (quorum.go).
//     A correlated record of a host that is not a counter is refused.
//
// Either way a compromised host adds one host to a count, its own, never
// K; a compromised counter is one vote of a majority of at least two.

// counts reports whether this host counts the sightings: correlation on,
// and no counters named, or this host among them.
func (c *Client) counts() bool {
	if c.cfg.Correlate.Hosts == 0 {
		return false
	}
	cs := c.cfg.Correlate.Counters
	return len(cs) == 0 || slices.Contains(cs, c.name)
}

// applySighting applies a record of the sightings bucket to the tally, and
// correlates its address when K hosts saw it. Sightings keep no revision
// in the view (the bucket's watch is stateless: applying one again
// changes nothing), so a flood of their keys does not grow the view.
func (c *Client) applySighting(e jetstream.KeyValueEntry, del, _ bool) error {
	a, host, err := ParseSightingKey(e.Key())
	if err != nil {
		return err
	}
	defer c.tallied()
	if del {
		c.tally.remove(a, host)
		return nil
	}
	now := c.now()
	exp := e.Created().Add(c.window)
	if !exp.After(now) {
		return nil
	}
	if c.tally.add(a, host, exp.UnixNano()) >= c.cfg.Correlate.Hosts {
		c.correlate(a, now)
	}
	return nil
}

// tallied publishes the tally's size and drops for Stats.
func (c *Client) tallied() {
	c.st.sightings.Store(int64(c.tally.n))
	c.st.sightDropped.Store(c.tally.dropped)
}

// sightingGone forgets a sighting key that vanished; called with c.mu
// held.
func (c *Client) sightingGone(key string) {
	if a, host, err := ParseSightingKey(key); err == nil {
		c.tally.remove(a, host)
	}
}

// correlate blocks a here, K hosts having seen it, unless it is blocked
// already, and as a named counter publishes the block for the others.
func (c *Client) correlate(a netip.Addr, now time.Time) {
	c.mu.Lock()
	blocked := c.view.deliveredAt(a).After(now)
	c.mu.Unlock()
	if blocked || !c.blockable(a, "") {
		return
	}
	hosts := c.tally.hostsOf(a, now.UnixNano())
	b := Block{Addr: a, Host: c.name, Expires: now.Add(c.corrTimeout), Origin: OriginCorrelate, Seen: hosts,
		Corroborated: true, Evidence: EvidenceForgeable,
		Reason: fmt.Sprintf("tripwire probes seen by %d hosts within %s: %s", len(hosts), c.window, strings.Join(hosts, ", "))}
	c.st.correlated.Add(1)
	c.log.Info("fleet: correlated block", "addr", a, "hosts", strings.Join(hosts, ","), "timeout", c.corrTimeout)
	if len(c.cfg.Correlate.Counters) > 0 {
		c.Publish(b)
	}
	c.deliver(b)
}
