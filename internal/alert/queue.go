package alert

import (
	"sync/atomic"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/bucket"
	"github.com/portsentry-nft/portsentry-nft/internal/packet"
)

// Event is one line about a probe, queued as a value.
type Event struct {
	What   Kind
	Probe  packet.Probe
	Reason string // protected, refused: why; set full: the set size
	N      uint64 // set full: refusals so far
}

// Kind is the kind of an Event's line.
type Kind uint8

const (
	KindProbe          Kind = iota // ProbeLine
	KindAlreadyBlocked             // AlreadyBlockedLine
	KindProtected                  // ProtectedLine
	KindRefused                    // RefusedLine
	KindSetFull                    // SetFullLine
)

// LinesPerSecond bounds the lines for probes that lead to no block: a scan
// of every port is logged in full (the bucket holds a second's worth), a
// spoofed flood is summarised by the "suppressed" line.
const LinesPerSecond = 2000

// Queue formats events on its own goroutine, so the capture goroutine
// neither allocates nor waits for the log.
type Queue struct {
	log        *Log
	ch         chan Event
	lines      bucket.Bucket
	suppressed atomic.Uint64
}

// NewQueue makes a queue writing to log.
func NewQueue(log *Log) *Queue {
	q := &Queue{log: log, ch: make(chan Event, 4096)}
	q.lines.Set(LinesPerSecond)
	return q
}

// Send queues an event that must be written (the probe of a block); when
// the log cannot keep up, it is counted as suppressed.
func (q *Queue) Send(e Event) {
	select {
	case q.ch <- e:
	default:
		q.suppressed.Add(1)
	}
}

// Capped queues an event that leads to no block: within LinesPerSecond it
// is written, past that counted as suppressed.
func (q *Queue) Capped(e Event, now time.Time) {
	if q.lines.Allow(now) {
		q.Send(e)
	} else {
		q.suppressed.Add(1)
	}
}

// Suppressed is how many lines were not written to keep up.
func (q *Queue) Suppressed() uint64 { return q.suppressed.Load() }

// Len is how many events wait.
func (q *Queue) Len() int { return len(q.ch) }

// Run writes events until done is closed, then what is still queued.
func (q *Queue) Run(done <-chan struct{}) {
	for {
		select {
		case e := <-q.ch:
			q.Write(e)
		case <-done:
			q.Drain()
			return
		}
	}
}

// Drain writes what is queued now.
func (q *Queue) Drain() {
	for {
		select {
		case e := <-q.ch:
			q.Write(e)
		default:
			return
		}
	}
}

// Write formats one event.
func (q *Queue) Write(e Event) {
	p := &e.Probe
	switch e.What {
	case KindProbe:
		q.log.Attack(ProbeLine(p, q.log.Host(p.Src)))
	case KindAlreadyBlocked:
		q.log.Attack(AlreadyBlockedLine(q.log.Host(p.Src)))
	case KindProtected:
		q.log.AttackWarn(ProtectedLine(p.Src, e.Reason))
	case KindRefused:
		q.log.AttackWarn(RefusedLine(p.Src, e.Reason))
	case KindSetFull:
		q.log.Warn(SetFullLine(e.Reason, p.Src, e.N))
	}
}
