package state

import (
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/addrkey"
)

// How a block is held in memory. A host may hold a million blocks (a
// fleet's, or a flood's), so the record is small and holds no pointer: a
// Block is ~300 bytes with its strings and times, and a map of a million
// pointers to them costs the garbage collector a scan of them all at every
// cycle (a 1M-block journal took 8-17 s to open, most of it marking).
// Here the address is 17 bytes, times are Unix nanoseconds, the few words
// a record repeats (scan type, protocol, origin, evidence, fleet host,
// tool) are indexes into the Store's table of them, and the ports are
// inline up to inlinePorts. What is rare (a resolved name, a hosts.deny
// line, more ports, a word past the table's bound) goes to a side map.

type key = addrkey.Key

func keyOf(a netip.Addr) key { return addrkey.Of(a) }

// The words of a record, by index in rec.words.
const (
	wKind = iota
	wProto
	wOrigin
	wEvidence
	wFrom
	wTool
	nwords
)

const inlinePorts = 4

// rec is a Block as the Store holds it (96 bytes).
type rec struct {
	k                    key
	expires, first, last int64 // Unix nanoseconds; 0 is the zero time
	timeout              time.Duration
	times                int32
	off                  int32 // offence count (what times holds for the others)
	words                [nwords]uint16
	port                 uint16
	ports                [inlinePorts]uint16
	nports               uint8 // inline ports; more are in ext
	weak                 bool
	ext                  bool // the side map holds the rest
}

// ext is what a few records have besides: set fields only.
type ext struct {
	host, hostsDeny string
	ports           []uint16        // when more than inlinePorts
	words           *[nwords]string // when the table of words is full
}

// words interns the short strings records repeat. It only grows, up to
// maxWords; a record with a word past it keeps its words in ext.
type words struct {
	list []string
	idx  map[string]uint16
	// last is the word interned last at each place of a record, and its
	// index: records read in a row mostly repeat them, and a comparison
	// costs less than a lookup.
	last [nwords]struct {
		s string
		i uint16
	}
}

// internAt is intern for the word at place at of a record.
func (w *words) internAt(at int, s string) (uint16, bool) {
	if l := &w.last[at]; s == l.s && s != "" {
		return l.i, true
	}
	i, ok := w.intern(s)
	if ok {
		w.last[at].s, w.last[at].i = w.list[i], i
	}
	return i, ok
}

const maxWords = math.MaxUint16

func (w *words) intern(s string) (uint16, bool) {
	if s == "" {
		return 0, true
	}
	if i, ok := w.idx[s]; ok {
		return i, true
	}
	if w.idx == nil {
		w.idx, w.list = map[string]uint16{}, []string{""}
	}
	if len(w.list) >= maxWords {
		return 0, false
	}
	i := uint16(len(w.list))
	s = strings.Clone(s) // not the journal line it was read from
	w.list = append(w.list, s)
	w.idx[s] = i
	return i, true
}

// The times Unix nanoseconds hold (1678 to 2262); a record's time past
// them is held as the nearest (a block for 292 years ends in 2262).
var minNanos, maxNanos = time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)

func nanos(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.After(maxNanos):
		return math.MaxInt64
	case t.Before(minNanos):
		return math.MinInt64
	case t.UnixNano() == 0:
		return 1 // 0 is the zero time
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// pack makes b's record, and its ext when it needs one (allocated only
// then: a restore packs a million records).
func (s *Store) pack(b *Block) (rec, *ext) {
	r := rec{expires: nanos(b.Expires), first: nanos(b.First), last: nanos(b.Last), timeout: b.Timeout,
		times: int32(min(max(b.Times, math.MinInt32), math.MaxInt32)), port: b.Port, weak: b.Weak}
	var words *[nwords]string
	ws := [nwords]string{b.Kind, b.Proto, string(b.Origin), b.Evidence, b.From, b.Tool}
	for i, w := range ws {
		idx, ok := s.words.internAt(i, w)
		if !ok {
			own := ws
			for i := range own {
				own[i] = strings.Clone(own[i])
			}
			words = &own
			break
		}
		r.words[i] = idx
	}
	var ports []uint16
	if len(b.Ports) <= inlinePorts {
		r.nports = uint8(copy(r.ports[:], b.Ports))
	} else {
		ports = append([]uint16(nil), b.Ports...)
	}
	if b.Host == "" && b.HostsDeny == "" && ports == nil && words == nil {
		return r, nil
	}
	r.ext = true
	return r, &ext{host: strings.Clone(b.Host), hostsDeny: strings.Clone(b.HostsDeny), ports: ports, words: words}
}

// unpack is the Block of k's record.
func (s *Store) unpack(k key, r *rec) Block {
	b := Block{Addr: k.Addr(), Expires: fromNanos(r.expires), First: fromNanos(r.first), Last: fromNanos(r.last),
		Timeout: r.timeout, Times: int(r.times), Port: r.port, Weak: r.weak}
	var x *ext
	if r.ext {
		x = s.ext[k]
	}
	ws := s.wordsOf(r, x)
	b.Kind, b.Proto, b.Origin, b.Evidence, b.From, b.Tool = ws[wKind], ws[wProto], Origin(ws[wOrigin]), ws[wEvidence], ws[wFrom], ws[wTool]
	if r.nports > 0 {
		b.Ports = append([]uint16(nil), r.ports[:r.nports]...)
	}
	if x != nil {
		b.Host, b.HostsDeny = x.host, x.hostsDeny
		if x.ports != nil {
			b.Ports = append([]uint16(nil), x.ports...)
		}
	}
	return b
}

func (s *Store) wordsOf(r *rec, x *ext) [nwords]string {
	if x != nil && x.words != nil {
		return *x.words
	}
	var ws [nwords]string
	for i, w := range r.words {
		ws[i] = s.words.list[w]
	}
	return ws
}

// word is one word of k's record.
func (s *Store) word(k key, r *rec, i int) string {
	if r.ext {
		if x := s.ext[k]; x != nil && x.words != nil {
			return x.words[i]
		}
	}
	return s.words.list[r.words[i]]
}

func (r *rec) expiresAfter(t time.Time) bool { return r.expires > t.UnixNano() }
