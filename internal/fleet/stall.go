package fleet

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The stall check compares the watches with their buckets now and then:
// an ordered consumer whose server was cut off from the cluster can stop
// delivering without the connection dropping (its re-creation fails while
// the streams elect new leaders; after the partition its server catches
// up from a snapshot, which the consumer does not deliver), and nothing
// else would notice. Each check is two stream info requests (a few ms of
// server CPU each after replicated writes): a fleet of 1000 hosts checking
// every second or two spent most of its idle server CPU on them. So a
// generation made after a reconnect checks a few times soon after it
// starts (it may have started on a server that is catching up, or on a
// cluster that lost a stream leader), stallEarly apart, then rarely,
// stallCheck apart; each interval is jittered (x1 to x2) so that hosts
// reconnected together do not check together. A stalled watch's
// generation is made anew within two checks. The library's own heartbeats
// re-create a consumer that stops (missed heartbeats); this catches the
// rest.
const (
	stallEarly       = 5 * time.Second
	stallEarlyChecks = 3
	stallCheck       = 30 * time.Second
)

// stallChecker compares the watches of lifts and blocks with their
// buckets' last sequence, now and then, off the watch loop.
type stallChecker struct {
	kvs     [2]jetstream.KeyValue
	results chan [2]uint64
	next    time.Time
	running bool
	started int // checks started in this generation
	// base: the buckets' last sequences at the first check of this
	// generation (what was there before may never be delivered: a purged
	// marker leaves a gap); pending: sequences a check found undelivered;
	// prev: what had been delivered at that check.
	base, pending, prev [2]uint64
	checked             bool
}

// newStallCheck makes the check of a generation; early: it starts with
// the checks stallEarly apart (a generation made after a reconnect).
func newStallCheck(lifts, blocks jetstream.KeyValue, early bool) *stallChecker {
	s := &stallChecker{kvs: [2]jetstream.KeyValue{lifts, blocks}, results: make(chan [2]uint64, 1)}
	if !early {
		s.started = stallEarlyChecks
	}
	s.next = time.Now().Add(s.interval())
	return s
}

// interval is the time until the next check: stallEarly for the first
// checks of a generation, stallCheck after, jittered.
func (s *stallChecker) interval() time.Duration {
	d := stallCheck
	if s.started < stallEarlyChecks {
		d = stallEarly
	}
	return d + rand.N(d)
}

// maybeStart asks the buckets' last sequences when a check is due.
func (s *stallChecker) maybeStart(ctx context.Context, now time.Time) {
	if s.running || now.Before(s.next) {
		return
	}
	s.started++
	s.running, s.next = true, now.Add(s.interval())
	go func() {
		var last [2]uint64
		for i, kv := range s.kvs {
			rctx, cancel := context.WithTimeout(ctx, apiTimeout)
			st, err := kv.Status(rctx)
			cancel()
			if bs, ok := st.(*jetstream.KeyValueBucketStatus); err == nil && ok && bs.StreamInfo() != nil {
				last[i] = bs.StreamInfo().State.LastSeq
			}
		}
		s.results <- last
	}()
}

// stalled reports a watch that delivered nothing since the check
// before this one although that check found records it had not delivered
// (and that came after this generation began). A watch still working
// through a burst advances, and is left alone however far behind it is.
func (s *stallChecker) stalled(last, delivered [2]uint64) bool {
	s.running = false
	if !s.checked {
		s.checked, s.base, s.prev = true, last, delivered
		return false
	}
	stalled := false
	for i := range last {
		if s.pending[i] > s.base[i] && delivered[i] < s.pending[i] && delivered[i] == s.prev[i] {
			stalled = true
		}
		s.pending[i] = 0
		if last[i] > delivered[i] {
			s.pending[i] = last[i]
		}
	}
	s.prev = delivered
	return stalled
}

// ownWriteGrace is how long a watch may take to deliver a record this
// host stored before the watch counts as stalled.
const ownWriteGrace = 2 * time.Second

// ownWrites is the cheap half of the stall check, for a host that writes:
// every block, purge and lift this host stores comes back through its own
// watch of the bucket, so a watch that owes one and has delivered nothing
// for ownWriteGrace stalled (after a partition healed, say, with the
// connection up all along): found without asking the servers anything. A
// watch working through a burst delivers, and is left alone.
type ownWrites struct {
	owed  [2]uint64    // the highest sequence stored and not delivered yet
	since [2]time.Time // the watch's last progress while it owed
	prev  [2]uint64    // what it had delivered then
}

// stored notes a record stored at wr.seq that the watch has not delivered.
// Until the watch delivered something in this generation nothing is owed:
// a record stored before it may lie behind the revision it resumed after.
func (o *ownWrites) stored(wr wrote, delivered [2]uint64, now time.Time) {
	i := wr.stall
	if delivered[i] == 0 || wr.seq <= delivered[i] {
		return
	}
	if o.owed[i] == 0 {
		o.since[i], o.prev[i] = now, delivered[i]
	}
	o.owed[i] = max(o.owed[i], wr.seq)
}

// stalled reports a watch that owes a record this host stored and has
// delivered nothing for ownWriteGrace.
func (o *ownWrites) stalled(delivered [2]uint64, now time.Time) bool {
	for i := range o.owed {
		switch {
		case o.owed[i] == 0:
		case delivered[i] >= o.owed[i]:
			o.owed[i] = 0
		case delivered[i] > o.prev[i]:
			o.since[i], o.prev[i] = now, delivered[i]
		case now.Sub(o.since[i]) > ownWriteGrace:
			return true
		}
	}
	return false
}
