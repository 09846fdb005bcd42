package decide

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
	"github.com/portsentry-nft/portsentry-nft/internal/state"
)

// prefixGuard is a Guard that can list what it protects (guard.Guard):
// a /64 is refused when any protected address or prefix lies in it.
type prefixGuard interface {
	Prefixes() []netip.Prefix
}

// DecidePrefix decides on an IPv6 /64 of which n distinct addresses probed
// within the detector's window (detect.prefix6_sources), the last one with
// protocol proto. A /64 that holds a protected address is refused, and so
// is one the response does not block or the rate does not admit. Its block
// rests on forgeable probes: local, block.timeout, never an offence.
func (d *Decider) DecidePrefix(p netip.Prefix, n int, proto packet.Proto, now time.Time) Decision {
	cfg := d.cfg.Load()
	dec := Decision{Addr: p.Addr(), Origin: state.OriginDetect, Evidence: Forgeable, Reach: Local}
	if Response(cfg, proto) != config.ResponseBlock {
		dec.Action = LogOnly
		return dec
	}
	if why, ok := d.prefixProtected(p); ok {
		dec.Reason, dec.Why = Protected, why
		return dec
	}
	if !d.rate.AllowAbove(now, float64(int(d.rate.Rate())/2)) {
		dec.Reason = RateLimited
		return dec
	}
	dec.Action, dec.Timeout, dec.Times = Block, cfg.BlockTimeout(), 1
	dec.Why = fmt.Sprintf("%d addresses of %s probed", n, p)
	return dec
}

// prefixProtected reports a protected address or prefix inside p (or one
// holding p).
func (d *Decider) prefixProtected(p netip.Prefix) (string, bool) {
	if g, ok := d.guard.(prefixGuard); ok {
		for _, q := range g.Prefixes() {
			if q.Overlaps(p) {
				return fmt.Sprintf("%s holds protected %s", p, q), true
			}
		}
		return "", false
	}
	why, ok := d.guard.Protected(p.Addr())
	return why, ok
}
