// Package detect decides, probe by probe, when a source has scanned enough
// to act on: PortSentry's SCAN_TRIGGER, per source, within a time window.
//
// It keeps bounded, compact state (a spoofed flood brings a new source with
// every packet): at most MaxSources sources of 44 bytes each plus a 4-byte
// index slot, the least recently seen forgotten first (CLOCK). Nothing is
// allocated per probe once a source is tracked, and there is no I/O: it
// runs on the capture goroutine.
package detect

import (
	"hash/maphash"
	"net/netip"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/packet"
)

// Verdict is what the detector says about one probe.
type Verdict uint8

const (
	// Count: the probe is counted; the source has not reached the trigger.
	Count Verdict = iota
	// Trigger: this probe reached the trigger; act on the source now.
	Trigger
	// AlreadyBlocked: the source was acted on and its block has not expired
	// (the probe slipped past the kernel before the element landed).
	AlreadyBlocked
)

// Config is the detector's settings.
type Config struct {
	// Trigger is PortSentry's SCAN_TRIGGER: 0 and 1 act on the first probe,
	// N on the Nth probe from one source within Window.
	Trigger int
	// Window bounds how far apart counted probes may be (whole seconds); 0
	// means forever.
	Window time.Duration
	// MaxSources caps the sources tracked at once.
	MaxSources int
}

// MaxPorts is how many distinct probed ports a Source remembers.
const MaxPorts = 4

// Source is what the detector knows of one address (times to the second).
type Source struct {
	Addr         netip.Addr
	Count        int       // probes counted in the current window
	First, Last  time.Time // first and last probe of the window
	LastKind     packet.Kind
	Ports        [MaxPorts]uint16 // distinct ports probed, first MaxPorts
	NPorts       int
	BlockedUntil time.Time // zero unless acted on
	Times        int       // how many times the source reached the trigger
}

// entry is the stored form of a Source: 44 bytes. Times are seconds after
// the detector's base time, 0 meaning unset.
type entry struct {
	addr        [16]byte
	first, last uint32
	blocked     uint32
	count       uint16
	times       uint16
	ports       [MaxPorts]uint16
	nports      uint8
	kind        uint8
	is4         bool
	ref         bool // CLOCK: seen again since the hand last passed
}

// Detector tracks sources. It is not safe for concurrent use: one
// goroutine owns it.
type Detector struct {
	cfg    Config
	base   time.Time
	seed   maphash.Seed
	chunks [][]entry // grow in fixed chunks as sources arrive, up to MaxSources
	n      int32
	index  []int32 // open addressing, linear probing; -1 is empty
	hand   int32   // CLOCK hand
	// Evicted counts sources forgotten to make room.
	Evicted uint64
}

const chunkBits = 12 // 4096 entries a chunk

// New makes a detector with room for cfg.MaxSources sources.
func New(cfg Config) *Detector {
	if cfg.MaxSources < 1 {
		cfg.MaxSources = 1
	}
	d := &Detector{cfg: cfg, seed: maphash.MakeSeed()}
	d.index = make([]int32, 64)
	for i := range d.index {
		d.index[i] = -1
	}
	return d
}

// SetConfig changes the trigger and window; MaxSources keeps its value
// until the detector is made anew.
func (d *Detector) SetConfig(cfg Config) {
	d.cfg.Trigger, d.cfg.Window = cfg.Trigger, cfg.Window
}

// Len is the number of sources tracked.
func (d *Detector) Len() int { return int(d.n) }

func (d *Detector) at(i int32) *entry { return &d.chunks[i>>chunkBits][i&(1<<chunkBits-1)] }

// rel converts a time to seconds after base, at least 1.
func (d *Detector) rel(t time.Time) uint32 {
	if d.base.IsZero() {
		d.base = t.Add(-time.Second).Truncate(time.Second)
	}
	s := t.Sub(d.base) / time.Second
	switch {
	case s < 1:
		return 1
	case s > 1<<32-1:
		return 1<<32 - 1
	}
	return uint32(s)
}

func (d *Detector) abs(r uint32) time.Time {
	if r == 0 {
		return time.Time{}
	}
	return d.base.Add(time.Duration(r) * time.Second)
}

func key(a netip.Addr) ([16]byte, bool) { return a.As16(), a.Is4() }

// Observe counts one probe from p.Src at now and returns the verdict and
// the source's state after it.
func (d *Detector) Observe(p *packet.Probe, now time.Time) (Verdict, Source) {
	e := d.lookup(p.Src, now)
	t := d.rel(now)
	e.kind = uint8(p.Kind)
	e.addPort(p.DstPort)
	if e.blocked != 0 {
		if t < e.blocked {
			e.last = t
			return AlreadyBlocked, d.source(e)
		}
		e.blocked, e.count, e.nports = 0, 0, 0 // expired: a fresh start
		e.addPort(p.DstPort)
	}
	if e.count > 0 && d.cfg.Window > 0 && time.Duration(t-e.first)*time.Second > d.cfg.Window {
		e.count = 0
	}
	if e.count == 0 {
		e.first = t
	}
	if e.count < 1<<16-1 {
		e.count++
	}
	e.last = t
	if int(e.count) >= max(d.cfg.Trigger, 1) {
		if e.times < 1<<16-1 {
			e.times++
		}
		return Trigger, d.source(e)
	}
	return Count, d.source(e)
}

func (e *entry) addPort(port uint16) {
	for _, q := range e.ports[:e.nports] {
		if q == port {
			return
		}
	}
	if e.nports < MaxPorts {
		e.ports[e.nports] = port
		e.nports++
	}
}

func (d *Detector) source(e *entry) Source {
	a := netip.AddrFrom16(e.addr)
	if e.is4 {
		a = a.Unmap()
	}
	return Source{Addr: a, Count: int(e.count), First: d.abs(e.first), Last: d.abs(e.last),
		LastKind: packet.Kind(e.kind), Ports: e.ports, NPorts: int(e.nports),
		BlockedUntil: d.abs(e.blocked), Times: int(e.times)}
}

// MarkBlocked records that addr is blocked until until (zero: not
// blocked), so later probes that reach user space are AlreadyBlocked.
func (d *Detector) MarkBlocked(addr netip.Addr, until time.Time) {
	if i := d.find(addr); i >= 0 {
		e := d.at(i)
		if until.IsZero() {
			e.blocked = 0
			return
		}
		e.blocked = d.rel(until.Add(time.Second - 1)) // round up: never early
	}
}

// Forget drops what is known of addr (after an unblock).
func (d *Detector) Forget(addr netip.Addr) {
	if i := d.find(addr); i >= 0 {
		e := d.at(i)
		*e = entry{addr: e.addr, is4: e.is4}
	}
}

func (d *Detector) home(k *[16]byte) int {
	return int(maphash.Bytes(d.seed, k[:]) & uint64(len(d.index)-1))
}

// slot finds k: the index position holding it, or the empty one where it
// would go.
func (d *Detector) slot(k *[16]byte) int {
	mask := len(d.index) - 1
	for s := d.home(k); ; s = (s + 1) & mask {
		i := d.index[s]
		if i < 0 || d.at(i).addr == *k {
			return s
		}
	}
}

func (d *Detector) find(addr netip.Addr) int32 {
	k, _ := key(addr)
	return d.index[d.slot(&k)]
}

func (d *Detector) lookup(addr netip.Addr, now time.Time) *entry {
	k, is4 := key(addr)
	s := d.slot(&k)
	if i := d.index[s]; i >= 0 {
		e := d.at(i)
		e.ref = true
		return e
	}
	var i int32
	if int(d.n) < d.cfg.MaxSources {
		if 2*(int(d.n)+1) > len(d.index) {
			d.grow() // keeps the load at most one half
		}
		i = d.n
		d.n++
		if int(i>>chunkBits) == len(d.chunks) {
			d.chunks = append(d.chunks, make([]entry, 1<<chunkBits))
		}
	} else {
		i = d.victim()
		d.remove(&d.at(i).addr)
		d.Evicted++
	}
	// A new source starts unreferenced: sources seen again outlive
	// one-packet spoofed sources.
	*d.at(i) = entry{addr: k, is4: is4, first: d.rel(now)}
	d.index[d.slot(&k)] = i
	return d.at(i)
}

// victim runs the CLOCK hand to an entry not seen since its last pass.
func (d *Detector) victim() int32 {
	for {
		i := d.hand
		d.hand = (d.hand + 1) % d.n
		if e := d.at(i); e.ref {
			e.ref = false
		} else {
			return i
		}
	}
}

// remove deletes k from the index, shifting back the entries after it
// (linear probing without tombstones).
func (d *Detector) remove(k *[16]byte) {
	mask := len(d.index) - 1
	i := d.slot(k)
	if d.index[i] < 0 {
		return
	}
	for j := i; ; {
		j = (j + 1) & mask
		if d.index[j] < 0 {
			break
		}
		h := d.home(&d.at(d.index[j]).addr)
		if (i <= j && i < h && h <= j) || (i > j && (i < h || h <= j)) {
			continue // already between its home and j: stays
		}
		d.index[i] = d.index[j]
		i = j
	}
	d.index[i] = -1
}

// grow doubles the index and re-inserts every tracked source.
func (d *Detector) grow() {
	d.index = make([]int32, 2*len(d.index))
	for i := range d.index {
		d.index[i] = -1
	}
	for i := int32(0); i < d.n; i++ {
		d.index[d.slot(&d.at(i).addr)] = i
	}
}
