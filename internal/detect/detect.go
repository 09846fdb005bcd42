// Package detect decides, probe by probe, when a source has scanned enough
// to act on: PortSentry's SCAN_TRIGGER, per source, within a time window.
//
// It keeps bounded, compact state (a spoofed flood brings a new source with
// every packet): at most MaxSources sources, 32 bytes each for IPv4 and 44
// for IPv6 plus 4 to 8 bytes of index, in memory mapped apart from the Go
// heap (mem.go); the least recently seen are forgotten first (CLOCK).
// Nothing is allocated per probe once a source is tracked, and there is no
// I/O: it runs on the capture goroutine.
package detect

import (
	"hash/maphash"
	"net/netip"
	"time"
	"unsafe"

	"github.com/portsentry-nft/portsentry-nft/internal/packet"
	"github.com/portsentry-nft/portsentry-nft/internal/scanner"
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
	Addr        netip.Addr
	Count       int       // probes counted in the current window
	First, Last time.Time // first and last probe of the window
	LastKind    packet.Kind
	// Tool is the tool that sent the first probe of the window
	// (internal/scanner): the name a block carries.
	Tool         scanner.Tool
	Ports        [MaxPorts]uint16 // distinct ports probed, first MaxPorts
	NPorts       int
	BlockedUntil time.Time // zero unless acted on
	Times        int       // how many times the source reached the trigger
}

// A kind and a tool share entry.kind, a nibble each.
var (
	_ [16 - packet.NumKinds]struct{}
	_ [16 - scanner.NumTools]struct{}
)

// entry is the stored form of a Source: 32 bytes for IPv4, 44 for IPv6.
// Times are seconds after the detector's base time, 0 meaning unset.
type entry[K addrKey] struct {
	addr        K
	first, last uint32
	blocked     uint32
	count       uint16
	ports       [MaxPorts]uint16
	times       uint8 // saturates at 255
	nports      uint8
	kind        uint8 // the last probe's kind (low nibble), the window's first probe's tool (high nibble)
	ref         bool  // CLOCK: seen again since the hand last passed
}

// addrKey is an address as a table stores it.
type addrKey interface{ [4]byte | [16]byte }

// table holds the sources of one address family: entries in fixed chunks
// that grow as sources arrive, and an open-addressing index over them.
type table[K addrKey] struct {
	chunks [][]entry[K]
	n      int32
	index  []int32 // linear probing; entry number + 1, 0 is empty
	hand   int32   // CLOCK hand
}

// Detector tracks sources. It is not safe for concurrent use: one
// goroutine owns it.
type Detector struct {
	cfg  Config
	base time.Time
	seed maphash.Seed
	v4   table[[4]byte]
	v6   table[[16]byte]
	mem  *mappings
	// Evicted counts sources forgotten to make room.
	Evicted uint64
}

const chunkBits = 12 // 4096 entries a chunk

// New makes a detector with room for cfg.MaxSources sources.
func New(cfg Config) *Detector {
	if cfg.MaxSources < 1 {
		cfg.MaxSources = 1
	}
	d := &Detector{cfg: cfg, seed: maphash.MakeSeed(), mem: &mappings{}}
	track(d)
	d.v4.index = alloc[int32](d.mem, 1024)
	d.v6.index = alloc[int32](d.mem, 64)
	return d
}

// SetConfig changes the trigger and window; MaxSources keeps its value
// until the detector is made anew.
func (d *Detector) SetConfig(cfg Config) {
	d.cfg.Trigger, d.cfg.Window = cfg.Trigger, cfg.Window
}

// Len is the number of sources tracked.
func (d *Detector) Len() int { return int(d.v4.n + d.v6.n) }

func (t *table[K]) at(i int32) *entry[K] {
	return &t.chunks[i>>chunkBits][i&(1<<chunkBits-1)]
}

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

// Observe counts one probe from p.Src at now and returns the verdict and
// the source's state after it.
func (d *Detector) Observe(p *packet.Probe, now time.Time) (Verdict, Source) {
	if p.Src.Is4() {
		return observe(d, &d.v4, &d.v6, p.Src.As4(), p, now)
	}
	return observe(d, &d.v6, &d.v4, p.Src.As16(), p, now)
}

// observe is Observe for the table t of p's family; other is the table of
// the other family, which may have to give up a source to make room.
func observe[K, O addrKey](d *Detector, t *table[K], other *table[O], k K, p *packet.Probe, now time.Time) (Verdict, Source) {
	e := lookup(d, t, other, k, now)
	r := d.rel(now)
	e.kind = e.kind&0xf0 | uint8(p.Kind)&0x0f
	e.addPort(p.DstPort)
	if e.blocked != 0 {
		if r < e.blocked {
			e.last = r
			return AlreadyBlocked, source(d, e, p.Src)
		}
		e.blocked, e.count, e.nports = 0, 0, 0 // expired: a fresh start
		e.addPort(p.DstPort)
	}
	if e.count > 0 && d.cfg.Window > 0 && time.Duration(r-e.first)*time.Second > d.cfg.Window {
		// A fresh window: the ports too (a peer needs decide.PeerPorts
		// ports within one window, not over hours).
		e.count, e.nports = 0, 0
		e.addPort(p.DstPort)
	}
	if e.count == 0 {
		e.first = r
		e.kind = uint8(p.Tool)<<4 | e.kind&0x0f
	}
	if e.count < 1<<16-1 {
		e.count++
	}
	e.last = r
	if int(e.count) >= max(d.cfg.Trigger, 1) {
		if e.times < 1<<8-1 {
			e.times++
		}
		return Trigger, source(d, e, p.Src)
	}
	return Count, source(d, e, p.Src)
}

func (e *entry[K]) addPort(port uint16) {
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

func source[K addrKey](d *Detector, e *entry[K], addr netip.Addr) Source {
	return Source{Addr: addr, Count: int(e.count), First: d.abs(e.first), Last: d.abs(e.last),
		LastKind: packet.Kind(e.kind & 0x0f), Tool: scanner.Tool(e.kind >> 4), Ports: e.ports, NPorts: int(e.nports),
		BlockedUntil: d.abs(e.blocked), Times: int(e.times)}
}

// MarkBlocked records that addr is blocked until until (zero: not
// blocked), so later probes that reach user space are AlreadyBlocked.
func (d *Detector) MarkBlocked(addr netip.Addr, until time.Time) {
	var r uint32
	if !until.IsZero() {
		r = d.rel(until.Add(time.Second - 1)) // round up: never early
	}
	if addr.Is4() {
		if e := find(d, &d.v4, addr.As4()); e != nil {
			e.blocked = r
		}
	} else if e := find(d, &d.v6, addr.As16()); e != nil {
		e.blocked = r
	}
}

// Forget drops what is known of addr (after an unblock).
func (d *Detector) Forget(addr netip.Addr) {
	if addr.Is4() {
		if e := find(d, &d.v4, addr.As4()); e != nil {
			*e = entry[[4]byte]{addr: e.addr}
		}
	} else if e := find(d, &d.v6, addr.As16()); e != nil {
		*e = entry[[16]byte]{addr: e.addr}
	}
}

func home[K addrKey](d *Detector, t *table[K], k *K) int {
	b := unsafe.Slice((*byte)(unsafe.Pointer(k)), unsafe.Sizeof(*k))
	return int(maphash.Bytes(d.seed, b) & uint64(len(t.index)-1))
}

// slot finds k: the index position holding it, or the empty one where it
// would go.
func slot[K addrKey](d *Detector, t *table[K], k *K) int {
	mask := len(t.index) - 1
	for s := home(d, t, k); ; s = (s + 1) & mask {
		i := t.index[s]
		if i == 0 || t.at(i-1).addr == *k {
			return s
		}
	}
}

// find returns k's entry, nil if it is not tracked.
func find[K addrKey](d *Detector, t *table[K], k K) *entry[K] {
	if i := t.index[slot(d, t, &k)]; i != 0 {
		return t.at(i - 1)
	}
	return nil
}

// lookup returns k's entry, making one if k is new: in a free place while
// there is room, else in place of a source the CLOCK hand picks from the
// larger table (so that a flood of one family does not starve the other).
func lookup[K, O addrKey](d *Detector, t *table[K], other *table[O], k K, now time.Time) *entry[K] {
	s := slot(d, t, &k)
	if i := t.index[s] - 1; i >= 0 {
		e := t.at(i)
		e.ref = true
		return e
	}
	var i int32
	full := d.Len() >= d.cfg.MaxSources
	if full && t.n >= other.n {
		i = t.victim()
		remove(d, t, &t.at(i).addr)
		d.Evicted++
	} else {
		if full {
			evict(d, other)
			d.Evicted++
		}
		if 2*(int(t.n)+1) > len(t.index) {
			grow(d, t) // keeps the load at most one half
		}
		i = t.n
		t.n++
		if int(i>>chunkBits) == len(t.chunks) {
			t.chunks = append(t.chunks, alloc[entry[K]](d.mem, 1<<chunkBits))
		}
	}
	// A new source starts unreferenced: sources seen again outlive
	// one-packet spoofed sources.
	*t.at(i) = entry[K]{addr: k, first: d.rel(now)}
	t.index[slot(d, t, &k)] = i + 1
	return t.at(i)
}

// victim runs the CLOCK hand to an entry not seen since its last pass.
func (t *table[K]) victim() int32 {
	for {
		i := t.hand
		t.hand = (t.hand + 1) % t.n
		if e := t.at(i); e.ref {
			e.ref = false
		} else {
			return i
		}
	}
}

// evict forgets the source the CLOCK hand picks in t and moves t's last
// entry into its place, so t's entries stay contiguous.
func evict[K addrKey](d *Detector, t *table[K]) {
	i := t.victim()
	remove(d, t, &t.at(i).addr)
	t.n--
	if i != t.n {
		*t.at(i) = *t.at(t.n)
		last := t.at(i).addr
		t.index[slot(d, t, &last)] = i + 1
	}
	*t.at(t.n) = entry[K]{}
	if t.n > 0 {
		t.hand %= t.n
	} else {
		t.hand = 0
	}
}

// remove deletes k from the index, shifting back the entries after it
// (linear probing without tombstones).
func remove[K addrKey](d *Detector, t *table[K], k *K) {
	mask := len(t.index) - 1
	i := slot(d, t, k)
	if t.index[i] == 0 {
		return
	}
	for j := i; ; {
		j = (j + 1) & mask
		if t.index[j] == 0 {
			break
		}
		h := home(d, t, &t.at(t.index[j]-1).addr)
		if (i <= j && i < h && h <= j) || (i > j && (i < h || h <= j)) {
			continue // already between its home and j: stays
		}
		t.index[i] = t.index[j]
		i = j
	}
	t.index[i] = 0
}

// grow doubles the index and re-inserts every tracked source.
func grow[K addrKey](d *Detector, t *table[K]) {
	old := t.index
	t.index = alloc[int32](d.mem, 2*len(old))
	release(d.mem, old)
	for i := int32(0); i < t.n; i++ {
		t.index[slot(d, t, &t.at(i).addr)] = i + 1
	}
}
