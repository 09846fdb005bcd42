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
	drainFor   time.Duration // DrainFor, but for tests
}

// NewQueue makes a queue writing to log.
func NewQueue(log *Log) *Queue {
	q := &Queue{log: log, ch: make(chan Event, 4096), drainFor: DrainFor}
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

// NameWait bounds how long a probe's line waits for the name of its
// source (resolve_host): a name that a hosts file or a working DNS gives
// comes well within it; the line is written without the name past it (the
// resolver does not wait at all when it is backed up or the name is known
// to fail, see Resolver.NameWithin).
const NameWait = 200 * time.Millisecond

// DrainFor bounds the writing of what is queued when Run is stopped: the
// lines are written without waiting for names, and those still queued
// after DrainFor are counted as suppressed, so a stop completes in time
// whatever the log and DNS do.
const DrainFor = 2 * time.Second

// Run writes events until done is closed, then what is still queued
// (without names it would have to wait for, and for at most DrainFor).
func (q *Queue) Run(done <-chan struct{}) {
	for {
		select {
		case e := <-q.ch:
			q.write(e, NameWait)
		case <-done:
			q.drain(time.Now().Add(q.drainFor))
			return
		}
	}
}

// Drain writes what is queued now, with the names known now.
func (q *Queue) Drain() { q.drain(time.Time{}) }

// drain writes what is queued now without waiting for names; past
// deadline (unless zero) the rest is counted as suppressed.
func (q *Queue) drain(deadline time.Time) {
	for {
		select {
		case e := <-q.ch:
			if !deadline.IsZero() && time.Now().After(deadline) {
				q.suppressed.Add(1)
				continue
			}
			q.write(e, 0)
		default:
			return
		}
	}
}

// Write formats one event, with the name of its source if it is known now.
func (q *Queue) Write(e Event) { q.write(e, 0) }

// write formats one event; a probe's line waits up to wait for the name
// of its source.
func (q *Queue) write(e Event, wait time.Duration) {
	p := &e.Probe
	switch e.What {
	case KindProbe:
		q.log.Attack(ProbeLine(p, q.log.HostWithin(p.Src, wait)))
	case KindAlreadyBlocked:
		q.log.Attack(AlreadyBlockedLine(q.log.HostWithin(p.Src, wait)))
	case KindProtected:
		q.log.AttackWarn(ProtectedLine(p.Src, e.Reason))
	case KindRefused:
		q.log.AttackWarn(RefusedLine(p.Src, e.Reason))
	case KindSetFull:
		q.log.Warn(SetFullLine(e.Reason, p.Src, e.N))
	}
}
