package detect

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// Prefixes counts, per IPv6 /64, the distinct addresses that probed within
// a window, so that a scanner taking a new address of its /64 for every
// probe is seen as one (detect.prefix6_sources). Its table is fixed
// (PrefixSlots slots, about 180 bytes each, allocated once): a /64 takes
// the slot its hash names, and a new /64 there replaces the old one, so a
// flood of spoofed /64s costs no memory, only the count of a /64 it
// happens to displace. Not safe for concurrent use: the capture goroutine
// owns it.
type Prefixes struct {
	slots   []prefixSlot
	trigger int
	window  time.Duration
}

// PrefixSlots is the number of /64s followed at once.
const PrefixSlots = 1 << 12

// maxPrefixIDs is the most addresses kept for one /64
// (config.MaxPrefix6Sources).
const maxPrefixIDs = 16

type prefixSlot struct {
	prefix  uint64
	first   int64 // when the first address of this count probed (unix ns)
	blocked int64 // no trigger before this (unix ns): blocked or refused
	ids     [maxPrefixIDs]uint64
	n       uint8
	used    bool
}

// NewPrefixes follows /64s: Observe triggers at trigger distinct addresses
// within window (0: no window). trigger 0 turns it off.
func NewPrefixes(trigger int, window time.Duration) *Prefixes {
	p := &Prefixes{slots: make([]prefixSlot, PrefixSlots)}
	p.SetConfig(trigger, window)
	return p
}

// SetConfig changes the trigger and the window (a reload).
func (p *Prefixes) SetConfig(trigger int, window time.Duration) {
	p.trigger, p.window = min(trigger, maxPrefixIDs), window
}

// Observe counts a probe from a (IPv6 only) and reports how many distinct
// addresses of its /64 probed in the window, and whether this probe made
// it reach the trigger.
func (p *Prefixes) Observe(a netip.Addr, now time.Time) (n int, trigger bool) {
	if p.trigger < 2 || !a.Is6() || a.Is4In6() {
		return 0, false
	}
	b := a.As16()
	pfx, id := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	s := p.slot(pfx)
	t := now.UnixNano()
	if !s.used || s.prefix != pfx {
		*s = prefixSlot{prefix: pfx, first: t, used: true}
	}
	if p.window > 0 && time.Duration(t-s.first) > p.window {
		s.n, s.first = 0, t
	}
	for _, x := range s.ids[:s.n] {
		if x == id {
			return int(s.n), false
		}
	}
	if int(s.n) < len(s.ids) {
		s.ids[s.n] = id
		s.n++
	}
	return int(s.n), int(s.n) >= p.trigger && t >= s.blocked
}

// Hold stops a's /64 from triggering again before until (it is blocked,
// or it was refused).
func (p *Prefixes) Hold(a netip.Addr, until time.Time) {
	b := a.As16()
	pfx := binary.BigEndian.Uint64(b[:8])
	if s := p.slot(pfx); s.used && s.prefix == pfx {
		s.blocked = until.UnixNano()
	}
}

// Forget drops what is known of a's /64 (its block was lifted).
func (p *Prefixes) Forget(a netip.Addr) {
	b := a.As16()
	pfx := binary.BigEndian.Uint64(b[:8])
	if s := p.slot(pfx); s.used && s.prefix == pfx {
		*s = prefixSlot{}
	}
}

// slot is the slot of prefix pfx (a multiplicative hash: the low bits of
// a /64 often differ little).
func (p *Prefixes) slot(pfx uint64) *prefixSlot {
	h := (pfx * 0x9e3779b97f4a7c15) >> (64 - 12)
	return &p.slots[h&(PrefixSlots-1)]
}
