package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// correlator counts, one address at a time, the hosts that saw each
// address whose sighting went out: off the publisher, whose next block must
// not wait for a count's round trip.
func (c *Client) correlator(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-c.pub.acked:
			c.correlate(ctx, a)
		}
	}
}

// correlate counts the hosts that saw a (one request: the subjects of a's
// sightings) and blocks it fleet-wide when there are enough.
func (c *Client) correlate(ctx context.Context, a netip.Addr) {
	c.mu.Lock()
	blocked := c.view.deliveredAt(a).After(c.now())
	c.mu.Unlock()
	if blocked {
		return
	}
	hosts, err := c.sightingHosts(ctx, a)
	if err != nil {
		c.log.Warn("fleet: counting sightings", "addr", a, "err", err)
		return
	}
	if len(hosts) < c.cfg.Correlate.Hosts {
		return
	}
	now := c.now()
	b := Block{Addr: a, Host: c.name, Expires: now.Add(c.corrTimeout), Origin: OriginCorrelate, Seen: hosts,
		Corroborated: true, Evidence: EvidenceForgeable,
		Reason: fmt.Sprintf("tripwire probes seen by %d hosts within %s: %s", len(hosts), c.window, strings.Join(hosts, ", "))}
	c.st.correlated.Add(1)
	c.log.Info("fleet: correlated block", "addr", a, "hosts", strings.Join(hosts, ","), "timeout", c.corrTimeout)
	c.Publish(b)
	select {
	case c.self <- b:
	default:
	}
}

// sightingHosts counts the hosts that saw a, sorted: one stream info
// request, whose subject filter lists the keys $KV.portsentry_sightings.<a>.*,
// each written under its own host's identity.
func (c *Client) sightingHosts(ctx context.Context, a netip.Addr) ([]string, error) {
	c.mu.Lock()
	s := c.sightings
	c.mu.Unlock()
	if s == nil {
		return nil, errors.New("the sightings bucket is not bound yet")
	}
	ictx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	info, err := s.Info(ictx, jetstream.WithSubjectFilter(Subject(BucketSightings, EncodeAddr(a)+".*")))
	if err != nil {
		return nil, fmt.Errorf("counting the sightings of %s: %w", a, err)
	}
	var hosts []string
	pre := Subject(BucketSightings, "")
	for subj := range info.State.Subjects {
		if b, h, err := ParseSightingKey(strings.TrimPrefix(subj, pre)); err == nil && b == a {
			hosts = append(hosts, h)
		}
	}
	slices.Sort(hosts)
	return hosts, nil
}
