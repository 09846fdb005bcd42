package state

import "encoding/binary"

// index maps the addresses of the blocks in force to their records in
// Store.recs. IPv4 addresses, nearly every block, are keyed by 4 bytes: a
// map of 1M of them takes a third of the room of one keyed by the 17
// bytes of a key, and a restore's million lookups miss the caches a
// third as often (they were most of the replay's time).
type index struct {
	v4 map[uint32]int32
	v6 map[[16]byte]int32 // and IPv4-mapped IPv6 addresses, which are not v4
}

func newIndex(hint int) index {
	return index{v4: make(map[uint32]int32, hint), v6: map[[16]byte]int32{}}
}

func v4Of(k key) uint32 { a := k.As16(); return binary.BigEndian.Uint32(a[12:]) }

func (x *index) get(k key) (int32, bool) {
	if k.Is4() {
		i, ok := x.v4[v4Of(k)]
		return i, ok
	}
	i, ok := x.v6[k.As16()]
	return i, ok
}

func (x *index) set(k key, i int32) {
	if k.Is4() {
		x.v4[v4Of(k)] = i
		return
	}
	x.v6[k.As16()] = i
}

func (x *index) del(k key) {
	if k.Is4() {
		delete(x.v4, v4Of(k))
		return
	}
	delete(x.v6, k.As16())
}

func (x *index) len() int { return len(x.v4) + len(x.v6) }
