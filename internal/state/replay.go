package state

import (
	"bufio"
	"unsafe"
)

// A journal is replayed by two goroutines: one splits its lines and
// decodes them a batch at a time, the other applies each batch to the
// Store, so that a restart with 1M blocks decodes the next batch while
// the last one goes in (1.0 -> 0.78-0.84 s for 1M, BenchmarkOpen1M).

// replayBatch is a batch of decoded lines. The strings of its Blocks
// share buf, which is not written again until the batch comes back.
type replayBatch struct {
	buf    []byte
	ents   []entry
	blocks [replayLines]Block
}

const (
	replayLines = 4096
	replayBytes = 1 << 20
	replayDepth = 3 // batches in flight
)

// replay reads sc's lines into r's counts and applies them.
func (s *Store) replay(sc *bufio.Scanner, r *loaded) {
	free := make(chan *replayBatch, replayDepth)
	for range replayDepth {
		free <- &replayBatch{buf: make([]byte, 0, replayBytes)}
	}
	full := make(chan *replayBatch, replayDepth)
	go decodeBatches(sc, r, free, full)
	for b := range full {
		for _, e := range b.ents {
			s.replayEntry(e)
		}
		free <- b
	}
}

// decodeBatches splits and decodes sc's lines, counting them in r, and
// sends them on in batches taken from free; it closes full at the end.
func decodeBatches(sc *bufio.Scanner, r *loaded, free <-chan *replayBatch, full chan<- *replayBatch) {
	defer close(full)
	b := <-free
	b.buf, b.ents = b.buf[:0], b.ents[:0]
	for ; sc.Scan(); r.lines++ {
		line := sc.Bytes()
		if len(b.ents) == replayLines || len(b.buf)+len(line) > cap(b.buf) {
			full <- b
			b = <-free
			b.buf, b.ents = b.buf[:0], b.ents[:0]
			if len(line) > cap(b.buf) {
				b.buf = make([]byte, 0, len(line))
			}
		}
		// Appended within buf's room: the strings of earlier lines stay.
		start := len(b.buf)
		b.buf = append(b.buf, line...)
		text := b.buf[start:]
		e, err := decodeInto(unsafe.String(unsafe.SliceData(text), len(text)), &b.blocks[len(b.ents)])
		if err != nil {
			r.bad++
			continue
		}
		b.ents = append(b.ents, e)
	}
	full <- b
}

// replayEntry applies one line of the journal. put clones the few strings
// it keeps (words.intern, ext): the Block's share a batch's buffer.
func (s *Store) replayEntry(e entry) {
	switch e.Op {
	case "add":
		if e.Block.Addr.IsValid() {
			old, again := s.put(e.Block)
			s.rememberBlock(e.Block)
			if s.follow != nil {
				s.follow.told(e.Block, old.expires, again)
			}
		}
	case "del":
		s.drop(e.Addr)
	case "times":
		s.setOffender(keyOf(e.Addr), offender{int32(e.Times), nanos(e.Last)})
	}
}
