package fleet

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// stallCheck is how often the watches are checked against their
// buckets: an ordered consumer whose server was cut off from the cluster
// can stop delivering without the connection dropping (its re-creation
// fails while the streams elect new leaders; after the partition its
// server catches up from a snapshot, which the consumer does not
// deliver), and nothing else would notice. Each check is two stream info
// requests; a stalled watch's generation is made anew within one to
// two checks.
const stallCheck = time.Second

// stallChecker compares the watches of lifts and blocks with their
// buckets' last sequence, now and then, off the watch loop.
type stallChecker struct {
	kvs     [2]jetstream.KeyValue
	results chan [2]uint64
	next    time.Time
	running bool
	// base: the buckets' last sequences at the first check of this
	// generation (what was there before may never be delivered: a purged
	// marker leaves a gap); pending: sequences a check found undelivered;
	// prev: what had been delivered at that check.
	base, pending, prev [2]uint64
	checked             bool
}

func newStallCheck(lifts, blocks jetstream.KeyValue) *stallChecker {
	return &stallChecker{kvs: [2]jetstream.KeyValue{lifts, blocks}, results: make(chan [2]uint64, 1), next: time.Now().Add(stallCheck)}
}

// maybeStart asks the buckets' last sequences when a check is due.
func (s *stallChecker) maybeStart(ctx context.Context, now time.Time) {
	if s.running || now.Before(s.next) {
		return
	}
	s.running, s.next = true, now.Add(stallCheck)
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
