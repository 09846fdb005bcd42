// Package detect decides, probe by probe, when a source has scanned enough
// to act on: PortSentry's SCAN_TRIGGER, per source, within a time window.
//
// It keeps bounded state (a fixed number of sources; the least recently
// seen is forgotten first), allocates nothing per probe once a source is
// tracked, and does no I/O: it runs on the capture goroutine.
package detect

import (
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
	// Window bounds how far apart counted probes may be; 0 means forever.
	Window time.Duration
	// MaxSources caps the sources tracked at once.
	MaxSources int
}

// MaxPorts is how many distinct probed ports a Source remembers.
const MaxPorts = 16

// Source is what the detector knows of one address.
type Source struct {
	Addr         netip.Addr
	Count        int         // probes counted in the current window
	First, Last  time.Time   // first and last probe of the window
	LastKind     packet.Kind // scan type of the last probe
	LastPort     uint16
	Ports        [MaxPorts]uint16 // distinct ports probed, first MaxPorts
	NPorts       int
	BlockedUntil time.Time // zero unless acted on
	Times        int       // how many times the source reached the trigger
}

type entry struct {
	Source
	prev, next int32 // LRU list, most recent at head
}

// Detector tracks sources. It is not safe for concurrent use: one capture
// goroutine owns it.
type Detector struct {
	cfg     Config
	index   map[netip.Addr]int32
	entries []entry
	head    int32
	tail    int32
	// Evicted counts sources forgotten to make room.
	Evicted uint64
}

// New makes a detector with room for cfg.MaxSources sources.
func New(cfg Config) *Detector {
	if cfg.MaxSources < 1 {
		cfg.MaxSources = 1
	}
	return &Detector{
		cfg:     cfg,
		index:   make(map[netip.Addr]int32, cfg.MaxSources),
		entries: make([]entry, 0, cfg.MaxSources),
		head:    -1,
		tail:    -1,
	}
}

// SetConfig changes the trigger and window; MaxSources keeps its value
// until the detector is made anew.
func (d *Detector) SetConfig(cfg Config) {
	d.cfg.Trigger, d.cfg.Window = cfg.Trigger, cfg.Window
}

// Len is the number of sources tracked.
func (d *Detector) Len() int { return len(d.index) }

// Observe counts one probe from p.Src at now and returns the verdict and
// the source's state after it. The returned pointer is valid until the
// next call.
func (d *Detector) Observe(p *packet.Probe, now time.Time) (Verdict, *Source) {
	e := d.lookup(p.Src, now)
	s := &e.Source
	s.LastKind, s.LastPort = p.Kind, p.DstPort
	s.addPort(p.DstPort)
	if !s.BlockedUntil.IsZero() {
		if now.Before(s.BlockedUntil) {
			s.Last = now
			return AlreadyBlocked, s
		}
		s.BlockedUntil = time.Time{} // expired: a fresh start
		s.Count, s.NPorts = 0, 0
		s.addPort(p.DstPort)
	}
	if s.Count > 0 && d.cfg.Window > 0 && now.Sub(s.First) > d.cfg.Window {
		s.Count = 0
	}
	if s.Count == 0 {
		s.First = now
	}
	s.Count++
	s.Last = now
	if s.Count >= max(d.cfg.Trigger, 1) {
		s.Times++
		return Trigger, s
	}
	return Count, s
}

func (s *Source) addPort(port uint16) {
	for _, q := range s.Ports[:s.NPorts] {
		if q == port {
			return
		}
	}
	if s.NPorts < MaxPorts {
		s.Ports[s.NPorts] = port
		s.NPorts++
	}
}

// MarkBlocked records that addr is blocked until until, so later probes
// that reach user space are reported as AlreadyBlocked.
func (d *Detector) MarkBlocked(addr netip.Addr, until time.Time) {
	if i, ok := d.index[addr]; ok {
		d.entries[i].BlockedUntil = until
	}
}

// Forget drops what is known of addr (after an unblock).
func (d *Detector) Forget(addr netip.Addr) {
	if i, ok := d.index[addr]; ok {
		d.entries[i].Source = Source{Addr: addr}
	}
}

func (d *Detector) lookup(addr netip.Addr, now time.Time) *entry {
	if i, ok := d.index[addr]; ok {
		d.moveToHead(i)
		return &d.entries[i]
	}
	var i int32
	if len(d.entries) < cap(d.entries) {
		d.entries = append(d.entries, entry{})
		i = int32(len(d.entries) - 1)
	} else {
		i = d.tail // reuse the least recently seen
		d.unlink(i)
		delete(d.index, d.entries[i].Addr)
		d.Evicted++
	}
	d.entries[i] = entry{Source: Source{Addr: addr, First: now}, prev: -1, next: -1}
	d.index[addr] = i
	d.pushHead(i)
	return &d.entries[i]
}

func (d *Detector) unlink(i int32) {
	e := &d.entries[i]
	if e.prev >= 0 {
		d.entries[e.prev].next = e.next
	} else {
		d.head = e.next
	}
	if e.next >= 0 {
		d.entries[e.next].prev = e.prev
	} else {
		d.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

func (d *Detector) pushHead(i int32) {
	e := &d.entries[i]
	e.prev, e.next = -1, d.head
	if d.head >= 0 {
		d.entries[d.head].prev = i
	}
	d.head = i
	if d.tail < 0 {
		d.tail = i
	}
}

func (d *Detector) moveToHead(i int32) {
	if d.head == i {
		return
	}
	d.unlink(i)
	d.pushHead(i)
}
