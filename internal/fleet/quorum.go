package fleet

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// With fleet.correlate.counters named, a correlated record is one
// counter's vote (correlate.go): a host enforces a correlated block of an
// address once a majority of the counters (config.CounterQuorum) hold a
// record of it in force, read from the blocks watch it has anyway. The
// block lasts while the majority does: until the quorum-th latest expiry.
//
// The ballots are bounded: each counter holds ballotShare addresses at
// most (votes that ended are dropped first, in a walk made once a second
// at most); a counter past its share has its new votes refused, the
// others' still count.

// ballotShare bounds one counter's votes held here.
const ballotShare = 1 << 14

// vote is one counter's correlated record of an address: until exp,
// created at created (Unix ns).
type vote struct {
	host         string
	exp, created int64
}

type ballots struct {
	votes map[netip.Addr][]vote
	per   map[string]int // votes held, by counter
	share int
	swept int64 // when dropEnded last walked the votes (Unix ns)
}

func newBallots() ballots {
	return ballots{votes: map[netip.Addr][]vote{}, per: map[string]int{}, share: ballotShare}
}

// put holds v for a, replacing v.host's vote of a; false: v.host's share is
// full of votes in force at now.
func (b *ballots) put(a netip.Addr, v vote, now int64) bool {
	vs := b.votes[a]
	if i := slices.IndexFunc(vs, func(x vote) bool { return x.host == v.host }); i >= 0 {
		vs[i] = v
		return true
	}
	if b.per[v.host] >= b.share {
		if now-b.swept < int64(time.Second) {
			return false
		}
		b.dropEnded(now)
		if b.per[v.host] >= b.share {
			return false
		}
	}
	b.votes[a] = append(vs, v)
	b.per[v.host]++
	return true
}

// drop forgets a's votes that gone says.
func (b *ballots) drop(a netip.Addr, gone func(vote) bool) {
	vs, ok := b.votes[a]
	if !ok {
		return
	}
	for _, v := range vs {
		if gone(v) {
			if b.per[v.host]--; b.per[v.host] <= 0 {
				delete(b.per, v.host)
			}
		}
	}
	if vs = slices.DeleteFunc(vs, gone); len(vs) == 0 {
		delete(b.votes, a)
	} else {
		b.votes[a] = vs
	}
}

// dropEnded forgets the votes that ended at now.
func (b *ballots) dropEnded(now int64) {
	b.swept = now
	for a := range b.votes {
		b.drop(a, func(v vote) bool { return v.exp <= now })
	}
}

// quorum returns, when q counters hold a vote of a in force at now, them
// (sorted) and until when q of them do.
func (b *ballots) quorum(a netip.Addr, q int, now int64) ([]string, int64) {
	var hosts []string
	var exps []int64
	for _, v := range b.votes[a] {
		if v.exp > now {
			hosts = append(hosts, v.host)
			exps = append(exps, v.exp)
		}
	}
	if len(hosts) < q {
		return nil, 0
	}
	slices.Sort(hosts)
	slices.Sort(exps)
	return hosts, exps[len(exps)-q]
}

// vote applies b, another host's correlated record created at created:
// refused unless its host is a named counter; enforced, Corroborated,
// once a majority of the counters hold one.
func (c *Client) vote(b Block, created time.Time) {
	cs := c.cfg.Correlate.Counters
	if !slices.Contains(cs, b.Host) {
		c.refuse(b.Host, b.Addr, "a correlated block from a host that fleet.correlate.counters does not name")
		return
	}
	now := c.now().UnixNano()
	c.mu.Lock()
	ok := c.ballots.put(b.Addr, vote{host: cs[slices.Index(cs, b.Host)], exp: b.Expires.UnixNano(), created: created.UnixNano()}, now)
	voters, until := c.ballots.quorum(b.Addr, config.CounterQuorum(len(cs)), now)
	c.mu.Unlock()
	if !ok {
		c.refuse(b.Host, b.Addr, "a correlated block beyond its counter's share of the votes held here")
		return
	}
	if voters == nil {
		return
	}
	b.Expires, b.Corroborated = time.Unix(0, until), true
	b.Reason = fmt.Sprintf("%s (counted by %s, %d of the %d counters)", b.Reason, strings.Join(voters, ", "), len(voters), len(cs))
	c.enforce(b, created)
}
